"""edgewatch fit: a plant's CSV of normal operation to a checked model file, as the README runs it and with flags."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.agent.model import ScoringModel
from edgewatch.cli import main
from edgewatch.fit.pipeline import Family, FitOptions, fit_model
from edgewatch.fit.screening import Drifting, operating_modes, screen_features, trend_statistic
from tests.plantkit import FEATURES, pump_rows, write_pump_csv
from tests.agent.test_without_torch import BLOCKER

FAULT = (1500, 1700)


@pytest.fixture
def plant(tmp_path: Path) -> dict[str, Path]:
    """An hour of normal operation as a European export, and a later hour with one fault, as a plain CSV."""
    normal = write_pump_csv(tmp_path / "normal.csv", pump_rows(3600, seed=1), european=True, blanks=True)
    today = write_pump_csv(tmp_path / "today.csv", pump_rows(2400, seed=2, fault=FAULT, start_row=3600),
                           start_row=3600)
    return {"normal": normal, "today": today, "dir": tmp_path}


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _replay(model: Path, data: Path, cwd: Path, *flags: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``agent run --model MODEL --source replay:DATA`` as the README runs it, torch blocked: the process and
    the events it wrote."""
    alerts = cwd / "alerts.jsonl"
    run = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "run", "--model", str(model), "--source",
                          f"replay:{data}", "--sink", f"jsonl:{alerts}", *flags],
                         capture_output=True, text=True, timeout=120, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return run, _events(alerts)


def test_fit_in_the_default_form_with_torch_blocked_then_the_agent_raises_one_episode(plant: dict[str, Path]) -> None:
    out = plant["dir"] / "pump.onnx"
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "fit", str(plant["normal"]), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=plant["dir"])
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr
    report = proc.stdout
    assert "separator ';', decimal comma, time column 'Time Stamp'" in report
    assert "filled 2,400 pressure blank cell(s) from the last value" in report
    assert "rate      temperature" in report and "drifts through the normal data" in report
    assert "left out  state" in report and "text, not a number" in report
    assert "0 false episodes in the held-out last 15 min (900 rows)" in report
    assert "cannot see" in report and f"wrote     {out}" in report
    card = ScoringModel(out).card
    assert card.features == ["flow", "pressure", "current", "vibration", "temperature", "voltage"]
    assert card.trained_on["rates"] == ["temperature"] and "temperature" not in card.training_range
    assert (card.window, card.decision.k, card.decision.n, card.decision.m) == (10, 5, 10, 60)
    _, events = _replay(out, plant["today"], plant["dir"], "-q")
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert len(starts) == len(ends) == 1, events
    assert FAULT[0] <= starts[0]["seq"] <= FAULT[0] + 10
    assert FAULT[1] - 1 <= ends[0]["episode"]["last_over_seq"] <= FAULT[1] + 10
    assert starts[0]["top_features"][0]["feature"] in ("flow", "current")
    assert not [e for e in events if e["event"] == "drift"]


def test_fit_with_flags(plant: dict[str, Path]) -> None:
    pytest.importorskip("cryptography")
    from edgewatch.agent.lifecycle.signing import generate_keypair, load_trust_keys, verify_bytes

    key = generate_keypair(plant["dir"] / "release.key")
    out = plant["dir"] / "flags.onnx"
    res = CliRunner().invoke(main, ["fit", str(plant["normal"]), "-o", str(out), "--columns",
                                    "flow,current,temperature,pressure", "--ignore", "pressure", "--fill", "drop",
                                    "--drifting", "leave-out", "--window", "6", "--time-column", "Time Stamp",
                                    "--key", str(plant["dir"] / "release.key"), "--signer", "test"])
    assert res.exit_code == 0, res.output
    card = ScoringModel(out).card
    assert card.features == ["flow", "current"] and card.window == 6 and card.decision.k == 3
    assert "left out  temperature" in res.output and "left out  pressure                 --ignore" in res.output
    assert "signed by 'test'" in res.output
    assert verify_bytes(out.read_bytes(), load_trust_keys([key.source])).signature.signer == "test"
    quiet = CliRunner().invoke(main, ["fit", str(plant["normal"]), "-o", str(out), "-q"])
    assert quiet.exit_code == 0 and quiet.output.startswith(f"wrote {out}") and "features" not in quiet.output


@pytest.mark.parametrize("setup, message", [
    (lambda d: [d / "missing.csv"], "does not exist"),
    (lambda d: [write_pump_csv(d / "short.csv", pump_rows(40, seed=3))], "too few for"),
    (lambda d: [d / "text.csv"], "no numeric feature column"),
    (lambda d: [d / "clock.csv"], "the time column 'Time' holds a time of day alone (e.g. '08:00:00'), with no date"),
    (lambda d: [d / "ticks.csv"], "no time in the time column 'Time' could be read (e.g. 'tick 0')"),
    (lambda d: [write_pump_csv(d / "a.csv", pump_rows(500, seed=3)),
                write_pump_csv(d / "b.csv", pump_rows(500, seed=3)[:, :4])], "lacks the numeric columns"),
])
def test_fit_refuses_what_it_cannot_use_with_the_reason(tmp_path: Path, setup, message: str) -> None:  # noqa: ANN001
    (tmp_path / "text.csv").write_text("time,state\n2024-01-01 00:00:00,RUN\n2024-01-01 00:00:01,STOP\n")
    (tmp_path / "clock.csv").write_text("Time,p,q\n" + "".join(f"08:00:{i:02d},1,{i}\n" for i in range(60)))
    (tmp_path / "ticks.csv").write_text("Time,p,q\n" + "".join(f"tick {i},1,{i}\n" for i in range(60)))
    res = CliRunner().invoke(main, ["fit", *map(str, setup(tmp_path)), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 4, res.output
    assert message in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_fit_reads_a_folder_and_keeps_windows_inside_each_file(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    write_pump_csv(folder / "1-monday.csv", pump_rows(1200, seed=4), start_row=0)
    write_pump_csv(folder / "2-tuesday.csv", pump_rows(1200, seed=5, start_row=90000), start_row=90000)
    lines: list[str] = []
    report = fit_model([folder], tmp_path / "m.onnx", echo=lines.append)
    text = "\n".join(lines)
    # the two read alike: one line (eighth walk-through; it was a line a file)
    assert "2 files, 1-monday.csv .. 2-tuesday.csv: 2,400 rows (1,200 each)" in text, text
    assert report.rows == 2400
    assert ScoringModel(tmp_path / "m.onnx").card.trained_on["data"] == ["1-monday.csv", "2-tuesday.csv"]


def test_labelled_rows_are_not_normal_operation(tmp_path: Path) -> None:
    x = pump_rows(1200, seed=6, fault=(600, 700))
    labels = np.zeros(1200)
    labels[600:700] = 1
    path = write_pump_csv(tmp_path / "l.csv", x, labels=labels)
    lines: list[str] = []
    report = fit_model([path], tmp_path / "m.onnx", echo=lines.append)
    assert report.rows == 1100
    assert any("its 100 rows marked anomalous were left out" in line for line in lines)


def test_a_drifting_feature_is_found_by_its_own_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(400.0)
    steady = 5 + rng.normal(0, 1, 400)
    warming = 60 + 0.01 * t + rng.normal(0, 0.02, 400)  # moves 2.7, its noise is 0.02
    assert trend_statistic([steady]) < 1.0
    assert trend_statistic([warming]) > 50
    choices = screen_features(["a", "w", "c", "n"], [np.stack([steady, warming, np.full(400, 3.0), t], axis=1)])
    assert [c.use.value for c in choices] == ["level", "rate", "left out", "left out"]
    assert "constant" in choices[2].reason and "counter" in choices[3].reason
    kept = screen_features(["w"], [warming[:, None]], Drifting.KEEP)
    assert kept[0].use.value == "level"


def test_two_operating_points_are_warned_about(tmp_path: Path) -> None:
    x = np.concatenate([pump_rows(1500, seed=7), pump_rows(1500, seed=8, operating_point=0.5, start_row=1500)])
    path = write_pump_csv(tmp_path / "two.csv", x)
    report = fit_model([path], tmp_path / "m.onnx")
    assert report.modes is not None and "two distinct operating points" in report.warnings[0]
    assert report.modes.features[0] in ("flow", "current")
    one = fit_model([write_pump_csv(tmp_path / "one.csv", pump_rows(3000, seed=7))], tmp_path / "n.onnx")
    assert one.modes is None


def test_no_operating_points_found_in_noise() -> None:
    rng = np.random.default_rng(1)
    assert operating_modes(["a", "b"], [rng.normal(size=(2000, 2))], 10) is None


def test_the_held_out_part_counts_the_episodes_a_changed_end_would_raise(tmp_path: Path) -> None:
    x = pump_rows(3000, seed=9)
    x[2400:, 3] += 0.05  # the vibration level steps up for the last fifth of the "normal" data
    report = fit_model([write_pump_csv(tmp_path / "step.csv", x)], tmp_path / "m.onnx")
    assert report.holdout.episodes >= 1 and "vibration" in report.holdout.features
    assert any("held-out last quarter" in w for w in report.warnings)


def test_smallest_change_in_the_report_is_where_the_score_crosses_the_threshold(plant: dict[str, Path]) -> None:
    out = plant["dir"] / "m.onnx"
    report = fit_model([plant["normal"]], out)
    model = ScoringModel(out)
    card = model.card
    centre = np.asarray(card.scaler.offset, dtype=np.float64)
    for fr in report.ranges:
        if fr.use.value != "level":
            continue
        j = card.features.index(fr.name)
        base = np.broadcast_to(centre, (card.window, len(centre))).copy()
        offset = model.score_many(base[None].astype(np.float32)).scores[0]
        shifted = base.copy()
        shifted[:, j] += fr.smallest_change
        score = model.score_many(shifted[None].astype(np.float32)).scores[0]
        # the centre of the training windows is the mean row; the change alone adds the threshold
        assert score - offset == pytest.approx(card.threshold, rel=0.02, abs=0.02 * card.threshold)


def test_one_feature_gets_the_univariate_detector_when_it_is_quiet_on_the_normal_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_pump_csv(tmp_path / "uni.csv", 5.0 + 0.1 * rng.standard_normal((3000, 1)), text=False)
    lines: list[str] = []
    fit_model([path], tmp_path / "u.onnx", echo=lines.append)
    card = ScoringModel(tmp_path / "u.onnx").card
    assert card.family == "novelty-levels" and card.features == ["flow"]
    assert any("one feature" in line for line in lines)
    assert any("0 false episodes in all 50 min (3,000 rows) of the normal data" in line for line in lines)


def test_one_feature_keeps_the_univariate_detector_says_what_it_raised_and_pca_is_the_quiet_choice(
        tmp_path: Path) -> None:
    """Issue 29: fit picks the univariate detector for one feature; its episodes on the normal data are reported,
    and ``--family pca`` (named in the warning) gives the window-level model, quiet on that data."""
    path = write_pump_csv(tmp_path / "uni.csv", pump_rows(800, seed=10)[:, :1], text=False)
    out = tmp_path / "u.onnx"
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert ScoringModel(out).card.family == "novelty-levels"
    assert "false episode(s) in all" in res.output and "--family pca" in res.output, res.output
    # 800 s of data is all the stream's first day: each of its episodes is one a quiet start would hold
    raised = int(res.output.split("the detector raised ")[1].split()[0])
    assert f"{raised} of them came on the stream's first day" in " ".join(res.output.split()), res.output
    quiet = tmp_path / "p.onnx"
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(quiet), "--family", "pca"])
    assert res.exit_code == 0, res.output
    assert ScoringModel(quiet).card.family == "pca"
    assert _replay(quiet, path, tmp_path, "-q")[1] == []


def _european_historian(path: Path, x: np.ndarray) -> Path:
    """Windows-1252, Excel's sep line, Date and Time columns, a units row, decimal commas, thousands dots."""
    lines = ["sep=;", "Datum;Zeit;Durchfluss;Druck;Strom;Vibration;Temperatur;Spannung", ";;m³/h;bar;A;mm/s;°C;V"]
    for i, row in enumerate(x):
        when = datetime(2024, 3, 13, 23, 50) + timedelta(seconds=i)
        cells = [f"{row[0] * 10:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")]
        cells += [f"{v:.5f}".replace(".", ",") for v in row[1:]]
        lines.append(";".join([when.strftime("%d.%m.%Y"), when.strftime("%H:%M:%S"), *cells]))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


def _us_scada(path: Path, x: np.ndarray) -> Path:
    """A title, a units row, US times with AM/PM, quoted thousands, a separator at each line's end, a comment."""
    lines = ["Line 3 pump report", "Timestamp,Flow,Pressure,Current,Vibration,Temperature,Voltage,",
             ",gpm,psi,A,in/s,F,V,"]
    for i, row in enumerate(x):
        when = datetime(2024, 3, 13, 23, 50) + timedelta(seconds=i)
        cells = [f'"{row[0] * 10:,.2f}"'] + [f"{v:.5f}" for v in row[1:]]
        lines.append(",".join([when.strftime("%m/%d/%Y %I:%M:%S %p"), *cells, ""]))
    path.write_text("\n".join(lines) + "\n# end of export\n")
    return path


@pytest.mark.parametrize("write, says", [
    (_european_historian, ["time from the columns 'Datum' and 'Zeit'", "thousands mark '.'", "Windows-1252",
                           "1 line(s) above the header skipped", "Durchfluss [m³/h]"]),
    (_us_scada, ["time column 'Timestamp' (dates month-first)", "thousands mark ','",
                 "1 line(s) above the header skipped", "Flow [gpm]"]),
])
def test_exports_as_plants_write_them_fit_and_replay_in_the_default_form(tmp_path: Path, write,  # noqa: ANN001
                                                                         says: list[str]) -> None:
    path = write(tmp_path / "export.csv", pump_rows(1200, seed=12))
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    for text in says:
        assert text in res.output, res.output
    assert "normal    1,200 rows (20 min at one row every 1 s)" in res.output
    assert "text in numeric columns" not in res.output and "left out" not in res.output.split("model")[0]
    assert len(ScoringModel(out).card.features) == 6
    run, events = _replay(out, path, tmp_path)
    assert "messages 1200 " in run.stderr + run.stdout and "bad 0" in run.stderr + run.stdout
    assert events == []


def test_fit_options_default_is_the_principle() -> None:
    assert FitOptions().drifting is Drifting.RATE and FitOptions().window is None
    assert FEATURES[4] == "temperature"


def test_the_torch_rule_needs_fewer_false_episodes_and_a_margin_of_faults() -> None:
    from edgewatch.fit.torch_family import Trial, better

    pca, days = Trial("pca", 0, 14, 20), 3.5 * 86400  # held out long enough for 0 against 0 to be a tie
    assert better(Trial("conv1d-ae", 0, 16, 20), pca, days)
    assert not better(Trial("conv1d-ae", 0, 15, 20), pca, days)  # 1 of 20 is not measurably better
    assert not better(Trial("conv1d-ae", 1, 20, 20), pca, days)  # more false episodes
    assert not better(Trial("conv1d-ae", 0, 0, 0), Trial("pca", 0, 0, 0), days)


def test_auto_trains_no_conv1d_ae_where_a_short_hold_out_could_not_tell_it_from_pca(tmp_path: Path) -> None:
    """With torch installed and 5,000 rows the conv1d-ae is tried only where it could win: pca raised no false
    episode in the held-out 21 min, and as few from the conv1d-ae would not tell them apart on so short a part
    (docs/fit.md, "The torch candidate"; the air handler of tests/fit/test_family_choice.py is trained and kept)."""
    pytest.importorskip("torch")
    from edgewatch.fit import torch_family

    path = write_pump_csv(tmp_path / "long.csv", pump_rows(torch_family.MIN_ROWS, seed=11))
    report = fit_model([path], tmp_path / "m.onnx")
    assert report.family_note == (" (conv1d-ae not trained: pca raised no false episode in the held-out last 21 min, "
                                  "and so short a part cannot show that the conv1d-ae raises as few: that takes 3 "
                                  "days held out, 12 days of normal data)"), report.family_note
    assert report.family == "pca" == ScoringModel(tmp_path / "m.onnx").card.family
    short = fit_model([write_pump_csv(tmp_path / "s.csv", pump_rows(1200, seed=11))], tmp_path / "s.onnx")
    assert "conv1d-ae not tried: 1,200 rows" in short.family_note and short.family == "pca"


def test_family_conv1d_ae_on_request_runs_in_the_agent(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = write_pump_csv(tmp_path / "n.csv", pump_rows(1500, seed=12))
    report = fit_model([path], tmp_path / "c.onnx", FitOptions(family=Family.CONV1D_AE))
    card = ScoringModel(tmp_path / "c.onnx").card
    assert report.family == card.family == "conv1d-ae" and card.decision.m == 60 and card.window == 32
    assert card.trained_on["ignore"] == ["temperature"]  # scored by its rate in pca: the autoencoder leaves it out
    out = tmp_path / "a.jsonl"
    today = write_pump_csv(tmp_path / "t.csv", pump_rows(900, seed=13, fault=(500, 600), start_row=1500),
                           start_row=1500)
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(tmp_path / "c.onnx"), "--source",
                                    f"replay:{today}", "--sink", f"jsonl:{out}", "-q"])
    assert res.exit_code == 0, res.output
    starts = [e for e in _events(out) if e["event"] == "start"]
    assert len(starts) >= 1 and any(480 <= e["seq"] <= 620 for e in starts)


def test_a_column_exported_twice_is_left_out_as_a_copy(tmp_path: Path) -> None:
    x = pump_rows(1200, seed=13)
    path = write_pump_csv(tmp_path / "twice.csv", np.concatenate([x, x[:, 1:2]], axis=1), text=False)
    text = path.read_text().replace("temperature,voltage\n", "temperature,voltage,pressure_copy\n", 1)
    path.write_text(text)
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert "left out  pressure_copy            a copy of pressure (the same value in every row)" in res.output
    assert "pressure_copy" not in ScoringModel(tmp_path / "m.onnx").card.features


def test_a_historians_long_export_is_pivoted_one_column_per_tag_and_replays_the_same(tmp_path: Path) -> None:
    x = pump_rows(900, seed=14)
    path = tmp_path / "history.csv"
    lines = ["Tag,Timestamp,Value,Quality"] + [
        f"P1.{name},2024-03-04 08:{i // 60:02d}:{i % 60:02d},{x[i, j]:.5f},192"
        for j, name in enumerate(FEATURES) for i in range(900) if not (name == "pressure" and i % 3)]
    path.write_text("\n".join(lines) + "\n")  # tag after tag, pressure logged every third second
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert ("a long export (one row per tag and time): one column per 'Tag' (6), values from 'Value', one row per "
            "time (900)") in res.output
    assert "filled 600 P1.pressure blank cell(s) from the last value" in res.output
    assert ScoringModel(out).card.features == [f"P1.{n}" for n in sorted(FEATURES)]
    run, events = _replay(out, path, tmp_path)
    assert "messages 900 " in run.stderr + run.stdout and "bad 0" in run.stderr + run.stdout
    assert events == []


def test_counters_too_fine_for_float32_are_left_out_with_the_figures(tmp_path: Path) -> None:
    x = pump_rows(1200, seed=15)
    hours = 12345.0 + np.arange(1200) / 3600.0
    energy = 1234567.8 + np.cumsum(np.abs(x[:, 2]) * 0.4 / 3600.0)
    path = write_pump_csv(tmp_path / "meters.csv", x, text=False)
    lines = path.read_text().splitlines()
    lines = [lines[0] + ",RunHours,Energy_kWh"] + [f"{row},{h:.2f},{e:.1f}"
                                                   for row, h, e in zip(lines[1:], hours, energy)]
    path.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output  # kept, these columns failed the export's parity check (exit 3)
    for name in ("RunHours", "Energy_kWh"):
        assert f"left out  {name:24s} too fine for the agent's 32-bit numbers" in res.output
    assert ScoringModel(tmp_path / "m.onnx").card.features == FEATURES


def _home_assistant(path: Path, x: np.ndarray, seed: int, start_row: int = 0) -> Path:
    """Home Assistant's history CSV: entity_id, state, last_changed; each sensor's state written at its own time
    (jittered around a 2-s step), 'unavailable' now and then."""
    rng = np.random.default_rng(seed)
    lines = ["entity_id,state,last_changed"]
    for j, name in enumerate(FEATURES):
        for i in range(len(x)):
            when = START_HA + timedelta(seconds=2 * (start_row + i) + float(rng.uniform(0, 1.5)))
            state = "unavailable" if rng.random() < 0.003 else f"{x[i, j]:.4f}"
            lines.append(f"sensor.pump_{name},{state},{when.isoformat(timespec='milliseconds')}Z")
    path.write_text("\n".join(lines) + "\n")
    return path


START_HA = datetime(2024, 3, 4, 8, 0, 0)


def test_a_home_assistant_history_fits_in_the_default_form_and_the_replay_raises_the_fault(tmp_path: Path) -> None:
    # before: no two sensors share a time, the file was not seen as a long export, and fit made a one-feature
    # model of 'state' mixing every sensor
    normal = _home_assistant(tmp_path / "history.csv", pump_rows(2400, seed=21), seed=1)
    today = _home_assistant(tmp_path / "today.csv", pump_rows(1800, seed=22, fault=(900, 1100), start_row=2400),
                            seed=2, start_row=2400)
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["fit", str(normal), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "one column per 'entity_id' (6), values from 'state'" in res.output
    assert "the tags have their own times, so each is held on a grid of the fastest tag's step" in res.output
    card = ScoringModel(out).card
    assert card.features == [f"sensor.pump_{n}" for n in sorted(FEATURES)]
    _, events = _replay(out, today, tmp_path, "-q")
    starts = [e for e in events if e["event"] == "start"]
    fault_ts = (START_HA + timedelta(seconds=2 * (2400 + 900))).replace(tzinfo=timezone.utc).timestamp()
    assert len(starts) == 1 and fault_ts - 4 <= starts[0]["ts"] <= fault_ts + 40, events


def test_many_constant_columns_are_reported_on_one_line(tmp_path: Path) -> None:
    # a wide export of 40 spare channels at one value each: before, 40 'left out' lines buried the features
    x = pump_rows(600, seed=23)
    spare = [f"AUX_{j:03d}" for j in range(40)]
    lines = [",".join(["timestamp", *FEATURES, *spare])] + [
        ",".join([f"2024-03-04 08:{i // 60:02d}:{i % 60:02d}", *(f"{v:.5f}" for v in row),
                  *(f"{j + 0.5}" for j in range(40))]) for i, row in enumerate(x)]
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert ("left out  40 constant columns (one value each in the normal data: no normal spread to learn): "
            "AUX_000, AUX_001") in res.output and "(32 more)" in res.output
    assert "AUX_039" not in res.output.split("model")[0]
    assert ScoringModel(tmp_path / "m.onnx").card.features == FEATURES


def test_a_folder_of_daily_exports_some_rotated_into_gzip_is_read_whole(tmp_path: Path) -> None:
    import gzip

    folder = tmp_path / "exports"
    write_pump_csv(folder / "1-monday.csv", pump_rows(900, seed=4), start_row=0)
    tuesday = write_pump_csv(folder / "2-tuesday.csv", pump_rows(900, seed=5, start_row=90000), start_row=90000)
    (folder / "2-tuesday.csv.gz").write_bytes(gzip.compress(tuesday.read_bytes()))
    tuesday.unlink()
    lines: list[str] = []
    report = fit_model([folder], tmp_path / "m.onnx", echo=lines.append)
    assert "2-tuesday.csv.gz: 900 rows" in "\n".join(lines) and "gzip-compressed" in "\n".join(lines)
    assert report.rows == 1800
