"""Tags logged at several rates (walk-through 7): a 1-s vibration, a 5-s flow and a 60-s bearing temperature,
as a wide export with blanks, a deadband historian's rows written on change, and a long export whose state tag
writes words. Seeded; each test failed before its fix (named in its docstring)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.model import ScoringModel
from edgewatch.contract import PREFIX
from edgewatch.fit.normal_data import read_normal_data
from edgewatch.fit.pipeline import Family, FitOptions, fit_model
from tests.fit.test_fit_drift import replay, run

T0 = datetime(2026, 3, 2, 6, 0, 0, tzinfo=timezone.utc)
TAGS = ("VIB_RMS", "FLOW", "BRG_TEMP")


def _plant(seed: int, n: int, fault: str | None = None) -> dict[str, np.ndarray]:
    """A pump whose load wanders; the bearing temperature follows the load over 15 min."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    load = 75 + 10 * np.sin(2 * np.pi * k / 5400 + rng.uniform(0, 6))
    vib = 1.8 + 0.01 * (load - 75) + rng.normal(0, 0.06, n)
    flow = 40 + 0.5 * load + rng.normal(0, 0.6, n)
    temp = np.empty(n)
    temp[0] = 50 + 0.1 * load[0]
    for i in range(1, n):
        temp[i] = temp[i - 1] + (50 + 0.1 * load[i] - temp[i - 1]) / 900
    temp += rng.normal(0, 0.05, n)
    if fault == "temp":  # the bearing warming 6 °C over 20 min from the middle
        temp[n // 2:] += np.minimum(np.arange(n - n // 2) / 1200, 1) * 6
    if fault == "vib":  # a loosening mount: vibration up 30 % from the middle
        vib[n // 2:] *= 1.3
    return {"VIB_RMS": vib, "FLOW": flow, "BRG_TEMP": temp}


def _stamp(i: float) -> str:
    return (T0 + timedelta(seconds=float(i))).strftime("%Y-%m-%d %H:%M:%S")


def _wide(path: Path, cols: dict[str, np.ndarray], dead_after: int | None = None) -> Path:
    """A historian's wide export: the flow every 5th row, the temperature every 60th, blank between."""
    lines = ["Time," + ",".join(TAGS) + (",SPARE" if dead_after else "")]
    for i in range(len(cols["VIB_RMS"])):
        cells = [f"{cols['VIB_RMS'][i]:.3f}", f"{cols['FLOW'][i]:.2f}" if i % 5 == 0 else "",
                 f"{cols['BRG_TEMP'][i]:.2f}" if i % 60 == 0 else ""]
        if dead_after:  # a tag written every 60 s that stopped early: it must still be left out
            cells.append(f"{i / 1000:.2f}" if i % 60 == 0 and i < dead_after else "")
        lines.append(_stamp(i) + "," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _deadband(path: Path, cols: dict[str, np.ndarray]) -> Path:
    """Rows written on change: a row only when some tag moved past its deadband, the others blank."""
    band = {"VIB_RMS": 0.15, "FLOW": 1.5, "BRG_TEMP": 0.3}
    last: dict[str, float] = {}
    lines = ["Time," + ",".join(TAGS)]
    for i in range(len(cols["VIB_RMS"])):
        cells = []
        for tag in TAGS:
            v = float(cols[tag][i])
            if tag not in last or abs(v - last[tag]) > band[tag]:
                last[tag] = v
                cells.append(f"{v:.3f}")
            else:
                cells.append("")
        if any(cells):
            lines.append(_stamp(i) + "," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _long_with_words(path: Path, cols: dict[str, np.ndarray], seed: int) -> Path:
    """Home Assistant's history: each tag at its own time, a mixer's state written as on/off when it changes."""
    rng = np.random.default_rng(seed)
    n = len(cols["VIB_RMS"])
    rows = []
    for i in range(n):
        rows.append((i, "vib_rms", f"{cols['VIB_RMS'][i]:.3f}"))
        if i % 5 == 0:
            rows.append((i + 0.3, "flow", f"{cols['FLOW'][i]:.2f}"))
        if i % 60 == 0:
            rows.append((i + 0.7, "brg_temp", f"{cols['BRG_TEMP'][i]:.2f}"))
    i, on = 0, True
    while i < n:
        rows.append((i + 0.5, "mixer", "on" if on else "off"))
        i += int(rng.integers(600, 1800))
        on = not on
    lines = ["entity_id,state,last_changed"]
    for at, tag, value in sorted(rows):
        lines.append(f"sensor.{tag},{value},{(T0 + timedelta(seconds=at)).isoformat(timespec='milliseconds')}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_minute_tag_beside_a_second_tag_is_a_feature_and_a_stopped_tag_is_not(tmp_path: Path) -> None:
    """Before: BRG_TEMP, blank in 98 % of the cells of a 1-s file, was left out as 'mostly empty', and the
    bearing warming was not seen. A tag that wrote for the first 5 minutes of 2 h only is still left out."""
    data = read_normal_data([_wide(tmp_path / "n.csv", _plant(1, 7200), dead_after=300)])
    assert data.features == ["VIB_RMS", "FLOW", "BRG_TEMP"]
    assert set(data.notes.mostly_empty) == {"SPARE"}
    assert data.notes.slow["BRG_TEMP"][0] == 60.0


def test_rows_written_on_change_are_one_stretch_not_cut_at_each_silence(tmp_path: Path) -> None:
    """Before: each silence of a deadband export longer than 10 median steps was a gap; 6 h of data kept 44
    min (120 cuts, the rows after each cut dropped until every tag wrote again)."""
    data = read_normal_data([_deadband(tmp_path / "n.csv", _plant(1, 3 * 3600))])
    assert data.notes.on_change and data.notes.gaps == 0 and data.notes.dropped_rows == 0
    assert len(data.segments) == 1 and data.seconds is not None and data.seconds > 2.9 * 3600
    assert "BRG_TEMP" in data.features


def test_the_replay_holds_a_files_blanks_as_fit_filled_them(tmp_path: Path) -> None:
    """Before: the replay held a blank for 3 of its column's intervals, so a deadband export's irregular
    silences made 45 % of its rows stale_feature (1,489 of 3,309; 10 intervals still 14 %), and a 60-s tag's
    first minute 56 rows; fit had filled those blanks from the last value, however old."""
    model = tmp_path / "m.onnx"
    run(tmp_path, "fit", str(_deadband(tmp_path / "n.csv", _plant(1, 3 * 3600))), "--family", "pca", "-q",
        "-o", str(model))
    for name, data in (("d.csv", _deadband(tmp_path / "d.csv", _plant(2, 3 * 3600))),
                       ("w.csv", _wide(tmp_path / "w.csv", _plant(2, 3600)))):
        if name == "w.csv":
            run(tmp_path, "fit", str(_wide(tmp_path / "wn.csv", _plant(1, 7200))), "--family", "pca", "-q",
                "-o", str(model))
        _, log = replay(tmp_path, model, data)
        assert "stale_feature" not in log and "bad 0" in log, log


def test_a_long_export_is_on_its_fastest_tag_and_its_state_words_are_a_state(tmp_path: Path) -> None:
    """Before: on the tags' median step (32 s here) the 1-s vibration kept one value in 32, and the mixer's
    on/off were read as blanks, the tag dropped without a word; the replay could not read it either."""
    normal = _long_with_words(tmp_path / "n.csv", _plant(1, 7200), seed=1)
    data = read_normal_data([normal])
    assert data.step == 1.0 and data.rows > 7000
    assert data.notes.states == {"sensor.mixer": {"off": 0, "on": 1}}
    model = tmp_path / "m.onnx"
    run(tmp_path, "fit", str(normal), "--family", "pca", "-q", "-o", str(model))
    events, log = replay(tmp_path, model, _long_with_words(tmp_path / "d.csv", _plant(2, 7200, "vib"), seed=2))
    starts = [e for e in events if e["event"] == "start"]
    onset = T0.timestamp() + 3600
    assert "messages 7200 " in log and "bad 0" in log, log
    assert len(starts) == 1 and onset <= starts[0]["ts"] <= onset + 60, [json.dumps(e)[:200] for e in starts]


def test_fit_writes_each_tags_logging_step_into_the_card_only_when_tags_are_logged_at_several_rates(
        tmp_path: Path) -> None:
    """Before: the model file did not say that BRG_TEMP was logged every 60 s, so the live agent held its first
    value for three *row* intervals and called it a slow sensor to leave out. The README's form (no flags, torch
    blocked: pca), then ``agent check``; a file with every tag in every row gets no such field (its model file is
    written as before), with flags as well."""
    model = tmp_path / "m.onnx"
    run(tmp_path, "fit", str(_wide(tmp_path / "n.csv", _plant(1, 7200))), "-o", str(model))
    assert ScoringModel(model).card.logged_every == {"VIB_RMS": 1.0, "FLOW": 5.0, "BRG_TEMP": 60.0}
    check = run(tmp_path, "agent", "check", str(model)).stdout
    assert "  logged every  VIB_RMS 1 s, FLOW 5 s, BRG_TEMP 60 s in the normal data" in check, check
    deadband = read_normal_data([_deadband(tmp_path / "d.csv", _plant(1, 3 * 3600))])
    steps = deadband.logged_every(deadband.features)  # rows on change: each tag's own median silence
    assert steps is not None and min(steps.values()) >= deadband.step and steps["BRG_TEMP"] > 100 * 3, steps
    cols = _plant(1, 3600)
    every = tmp_path / "every.csv"
    every.write_text("Time," + ",".join(TAGS) + "\n" + "".join(
        f"{_stamp(i)}," + ",".join(f"{cols[t][i]:.3f}" for t in TAGS) + "\n" for i in range(3600)))
    for flags in ((), ("--family", "pca", "-q")):
        run(tmp_path, "fit", str(every), *flags, "-o", str(tmp_path / "e.onnx"))
        card = ScoringModel(tmp_path / "e.onnx").card
        assert card.logged_every is None and PREFIX + "logged_every" not in card.to_props()


def test_the_conv1d_ae_card_carries_the_logging_steps_too(tmp_path: Path) -> None:
    """Each family's writer builds them into its card (pca above; the autoencoder through its export)."""
    pytest.importorskip("torch")
    fit_model([_wide(tmp_path / "n.csv", _plant(1, 1800))], tmp_path / "c.onnx", FitOptions(family=Family.CONV1D_AE))
    card = ScoringModel(tmp_path / "c.onnx").card
    assert card.family == "conv1d-ae" and card.logged_every == {"VIB_RMS": 1.0, "FLOW": 5.0, "BRG_TEMP": 60.0}
