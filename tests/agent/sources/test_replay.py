"""``replay:`` reads the files ``edgewatch fit`` reads, with no query options: separator, decimal comma and time
column sniffed (wire/csv_table.py), the model's features taken by name; an error about columns names the fix."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks.memory import MemorySink
from edgewatch.agent.sources import make_source
from edgewatch.contract import Scaler
from edgewatch.errors import BadInput
from tests.modelkit import make_card, write_model
from tests.plantkit import pump_rows, write_pump_csv

FEATURES = ["Pressure", "Current", "Volume Flow RateRMS"]  # fit left Accelerometer1RMS out


def _skab_like(path: Path, rows: int = 40, decimal_comma: bool = False) -> Path:
    head = "datetime;Accelerometer1RMS;Current;Pressure;Temperature;Volume Flow RateRMS;anomaly;changepoint"
    lines = [head]
    for i in range(rows):
        cells = ["0.027", "0.87", "0.054711" if i != 20 else "4.5", "75.5", "32.0"]
        if decimal_comma:
            cells = [c.replace(".", ",") for c in cells]
        lines.append(f"2020-03-09 10:{14 + i // 60:02d}:{i % 60:02d};" + ";".join(cells) + ";0;0")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(tmp_path: Path, url: str) -> tuple[Agent, MemorySink]:
    card = make_card(window=3, features=FEATURES, threshold=1.0, k=1, n=1,
                     scaler=Scaler("standard", [0.054711, 0.87, 32.0], [1.0, 1.0, 1.0]))  # normal rows score 0
    agent = Agent(ScoringModel(write_model(tmp_path / "m.onnx", card)), [sink := MemorySink()],
                  AgentOptions(stride=1, drift_every=0))
    agent.add_source(make_source(url, FEATURES))
    agent.run(duration=30)
    return agent, sink


@pytest.mark.parametrize("decimal_comma", [False, True])
def test_a_semicolon_file_with_a_datetime_column_replays_with_no_query(tmp_path: Path, decimal_comma: bool) -> None:
    csv = _skab_like(tmp_path / "1.csv", decimal_comma=decimal_comma)
    agent, sink = _run(tmp_path, f"replay:{csv}")
    assert agent.summary.messages == 40 and agent.summary.bad == {}
    assert agent.summary.windows == 38
    start = next(e for e in sink.events if e["event"] == "start")
    assert start["ts"] == pytest.approx(1583748860.0, abs=0.5)  # 2020-03-09 10:14:20 UTC: the time column was read
    assert start["top_features"][0]["feature"] == "Pressure"  # by name, not by position


def test_the_sniffing_can_be_overruled_on_the_url(tmp_path: Path) -> None:
    csv = _skab_like(tmp_path / "1.csv")
    agent, _ = _run(tmp_path, f"replay:{csv}?sep=;&time=datetime")
    assert agent.summary.messages == 40 and agent.summary.bad == {}


def test_a_european_plant_export_replays_with_no_query(tmp_path: Path) -> None:
    x = pump_rows(30, seed=1)
    csv = write_pump_csv(tmp_path / "pump.csv", x, european=True, blanks=True)  # ';', 1,5, 'Time Stamp', blanks
    features = ["flow", "pressure", "current"]
    card = make_card(window=3, features=features, offset=0.0, threshold=1e9)
    agent = Agent(ScoringModel(write_model(tmp_path / "p.onnx", card)), [], AgentOptions(stride=1, drift_every=0))
    agent.add_source(make_source(f"replay:{csv}", features))
    summary = agent.run(duration=30)
    # pressure is blank two rows in three: held from the row above (one second old, its interval three)
    assert summary.messages == 30 and summary.bad == {} and summary.windows == 28


def test_an_error_about_columns_names_what_the_model_wants_what_the_file_has_and_the_fix(tmp_path: Path) -> None:
    csv = tmp_path / "other.csv"
    csv.write_text("datetime;Pressure;Current;Flow\n2020-03-09 10:14:33;1;2;3\n")
    with pytest.raises(BadInput) as err:
        make_source(f"replay:{csv}", FEATURES)
    text = str(err.value)
    assert "['datetime', 'Pressure', 'Current', 'Flow']" in text  # what the file has, split by its ';'
    assert str(FEATURES) in text and "['Volume Flow RateRMS'] are not among them" in text
    # the fix in full, in the model's order: the columns it found by name, the missing one to fill in
    assert f"replay:{csv}?columns=Pressure,Current,<column for Volume Flow RateRMS>);" in text and "?sep=" in text
    agent, _ = _run(tmp_path, f"replay:{csv}?columns=Pressure,Current,Flow")  # the fix it names works
    assert agent.summary.messages == 1 and agent.summary.bad == {}
    with pytest.raises(BadInput, match=r"\?columns= must name 3 of its columns"):
        make_source(f"replay:{csv}?columns=Pressure,Flow", FEATURES)


def test_two_columns_that_both_match_a_feature_are_refused_with_the_fix(tmp_path: Path) -> None:
    """Another export of the plant's historian: 'Pressure [bar]' and 'Pressure [psi]' both match 'Pressure'."""
    csv = tmp_path / "two.csv"
    csv.write_text("datetime,Pressure [bar],Pressure [psi],Current,Volume Flow RateRMS\n"
                   "2020-03-09 10:14:33,0.054711,0.79,0.87,32.0\n")
    with pytest.raises(BadInput, match=r"\['Pressure \[bar\]', 'Pressure \[psi\]'\] all match .*'Pressure'.*"
                                       r"\?columns="):
        make_source(f"replay:{csv}", FEATURES)
    # an exact header among them wins, as on live sources
    csv.write_text("datetime,Pressure [psi],Pressure,Current,Volume Flow RateRMS\n"
                   "2020-03-09 10:14:33,0.79,0.054711,0.87,32.0\n")
    agent, sink = _run(tmp_path, f"replay:{csv}")
    assert agent.summary.messages == 1 and agent.summary.bad == {} and not sink.events


def test_a_historians_no_value_states_are_held_as_blanks_not_rows_skipped(tmp_path: Path) -> None:
    """PI writes 'I/O Timeout', 'Shutdown' in a number cell when a tag has no value: the row's other tags go on
    (fit reads the same cells as blanks); other text in a number cell still refuses its row."""
    lines = ["datetime,Pressure,Current,Volume Flow RateRMS"]
    for i in range(20):
        pressure = "I/O Timeout" if 5 <= i < 12 else "Shutdown" if i == 12 else "0.054711"
        lines.append(f"2020-03-09 10:14:{i:02d},{pressure},0.87,{'on' if i == 15 else '32.0'}")
    csv = tmp_path / "pi.csv"
    csv.write_text("\n".join(lines) + "\n")
    agent, _ = _run(tmp_path, f"replay:{csv}?max_age=60s")
    assert agent.summary.messages == 20 and agent.summary.bad == {"not_number": 1}
    assert agent.summary.windows == 19 - 2  # every row but the 'on' one makes a window (window 3)


def test_a_column_logged_slower_than_the_rows_is_held_without_live_feed_advice(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Fit fills the blanks of a slow column from its last reading, so the model saw it held: no slow-sensor line."""
    lines = ["datetime,Pressure,Current,Volume Flow RateRMS"]
    for i in range(120):
        lines.append(f"2020-03-09 10:{14 + i // 60:02d}:{i % 60:02d},0.054711,0.87,{'32.0' if i % 10 == 0 else ''}")
    csv = tmp_path / "slow.csv"
    csv.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
        agent, _ = _run(tmp_path, f"replay:{csv}")
    # held from its last reading however old, as fit filled it: before, rows 4-9 waited for its second reading
    # (held for three row intervals until then), 6 stale_feature
    assert agent.summary.messages == 120 and agent.summary.bad == {}
    assert agent.summary.windows == 120 - 2
    assert "reports every" not in caplog.text


def _exports() -> dict[str, tuple[str, str]]:
    """Exports fit reads since the walk-through of session 4: (text, encoding), 24 rows of p and q each."""
    rows = [(f"2024-03-04 08:00:{i:02d}", 4.2 + 0.01 * i, 1200.5 + i) for i in range(24)]
    clock = [f"2024-10-27 02:{m:02d}:00" for m in range(0, 60, 5)] * 2  # the fall-back repeats 02:00..02:55
    hours = [f"2024-10-2{6 + (20 + h) // 24} {(20 + h) % 24:02d}:00:00" for h in range(7)]  # 20:00 to 02:00
    hourly = hours + [f"2024-10-27 {h:02d}:00:00" for h in range(2, 19)]  # at a row an hour, 02:00 twice

    def lines(header: str, fmt, sep: str = ",") -> str:  # noqa: ANN001
        return "\n".join([header] + [sep.join(fmt(i, t, p, q)) for i, (t, p, q) in enumerate(rows)]) + "\n"

    return {
        "excel sep line, decimal comma": ("sep=;\r\n" + lines("Zeit;p;q", lambda i, t, p, q: [
            t, f"{p:.2f}".replace(".", ","), f"{q:.1f}".replace(".", ",")], ";").replace("\n", "\r\n"), "utf-8"),
        "title and units rows": ("Line 3 export\n" + lines("time,p,q\n,bar,l/h", lambda i, t, p, q: [
            t, f"{p:.2f}", f"{q:.1f}"]), "utf-8"),
        "latin-1": (lines("Zeit;p [°C];q [µm]", lambda i, t, p, q: [t, f"{p:.2f}", f"{q:.1f}"], ";"), "cp1252"),
        "thousands": (lines("time,p,q", lambda i, t, p, q: [t, f"{p:.2f}", f'"{q:,.1f}"']), "utf-8"),
        "date and time columns": (lines("Date,Time,p,q", lambda i, t, p, q: [
            t[:10], t[11:], f"{p:.2f}", f"{q:.1f}"]), "utf-8"),
        "US dates": (lines("Timestamp,p,q", lambda i, t, p, q: [
            f"03/13/2024 11:{i:02d}:00 PM", f"{p:.2f}", f"{q:.1f}"]), "utf-8"),
        "Excel serial days": (lines("Datum;p;q", lambda i, t, p, q: [
            f"{45355 + (8 * 3600 + i) / 86400:.8f}".replace(".", ","), f"{p:.2f}".replace(".", ","),
            f"{q:.1f}".replace(".", ",")], ";"), "utf-8"),
        "month names": (lines("Timestamp,p,q", lambda i, t, p, q: [f"04-Mar-2024 08:00:{i:02d}", f"{p:.2f}",
                                                                   f"{q:.1f}"]), "utf-8"),
        "daylight saving": (lines("time,p,q", lambda i, t, p, q: [clock[i], f"{p:.2f}", f"{q:.1f}"]), "utf-8"),
        "daylight saving, hourly": (lines("time,p,q", lambda i, t, p, q: [hourly[i], f"{p:.2f}", f"{q:.1f}"]),
                                    "utf-8"),
        "trailing separators, # comment": (lines("time;p;q;", lambda i, t, p, q: [
            t, f"{p:.2f}", f"{q:.1f}", ""], ";") + "# end of export\n", "utf-8"),
        # the second walk-through (wire/csv_files.py, epoch units, units in cells)
        "gzip": (lines("time,p,q", lambda i, t, p, q: [t, f"{p:.2f}", f"{q:.1f}"]), "gzip"),
        "zip of one csv": (lines("time,p,q", lambda i, t, p, q: [t, f"{p:.2f}", f"{q:.1f}"]), "zip"),
        "epoch microseconds": (lines("time,p,q", lambda i, t, p, q: [
            str((1709539200 + i) * 1_000_000), f"{p:.2f}", f"{q:.1f}"]), "utf-8"),
        "epoch nanoseconds": (lines("time,p,q", lambda i, t, p, q: [
            str((1709539200 + i) * 1_000_000_000), f"{p:.2f}", f"{q:.1f}"]), "utf-8"),
        "milliseconds column": ("Date,Time,Millitm,p,q\n" + "".join(
            f"03/04/2024,08:00:{i // 5:02d},{i % 5 * 200},{p:.2f},{q:.1f}\n" for i, (t, p, q) in enumerate(rows)),
            "utf-8"),
        "units in cells": (lines("Time,p,q", lambda i, t, p, q: [t, f"{p:.2f} bar", f'"{q:.1f} m³/h"']), "utf-8"),
    }


def _packed(text: str, encoding: str) -> bytes:
    import gzip
    import io
    import zipfile

    if encoding == "gzip":
        return gzip.compress(text.encode())
    if encoding == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("export.csv", text)
        return buf.getvalue()
    return text.encode(encoding)


@pytest.mark.parametrize("name", list(_exports()))
def test_the_replay_reads_each_export_as_fit_reads_it(tmp_path: Path, name: str) -> None:
    import queue

    from edgewatch.agent.sources.base import Kind
    from edgewatch.wire.csv_table import read_csv_table

    text, encoding = _exports()[name]
    path = tmp_path / "export.csv"
    path.write_bytes(_packed(text, encoding))
    table = read_csv_table(path)
    features = list(table.numeric)
    assert [f[0] for f in features] == ["p", "q"] and table.rows == 24 and table.bad_times == 0 and table.bad == {}
    source = make_source(f"replay:{path}", features)
    q: queue.Queue = queue.Queue()
    source.start(q)
    source.join(10)
    items = [q.get_nowait() for _ in range(q.qsize())]
    rows = [i.payload for i in items if i.kind == Kind.MEASUREMENT]
    assert [i for i in items if i.kind == Kind.BAD] == []
    assert np.array([r.values for r in rows]) == pytest.approx(np.stack([table.numeric[f] for f in features], 1))
    assert [r.ts for r in rows] == pytest.approx(table.times.tolist())
    assert np.all(np.diff(table.times) > 0)


def _long_exports() -> dict[str, str]:
    """Long exports of the second walk-through: the tags on their own times (Home Assistant) and FactoryTalk's
    tag indices named from its (Tagname).csv file."""
    hass = ["entity_id,state,last_changed"] + [
        f"sensor.{tag},{'unknown' if i == 9 else v + i},2024-03-04T08:{i // 6:02d}:{i % 6 * 10 + lag:04.1f}Z"
        for tag, v, lag in (("p", 4, 1.5), ("q", 1200, 7.25)) for i in range(24)]
    ftalk = ["Date,Time,Millitm,TagIndex,Value,Status,Marker"] + [
        f"03/04/2024,08:00:{i:02d},0,{k},{v + i},," for i in range(24) for k, v in enumerate((4, 1200))]
    return {"own times": "\n".join(hass) + "\n", "tag indices": "\n".join(ftalk) + "\n"}


@pytest.mark.parametrize("name", list(_long_exports()))
def test_the_replay_pivots_each_long_export_as_fit_does(tmp_path: Path, name: str) -> None:
    import queue

    from edgewatch.agent.sources.base import Kind
    from edgewatch.fit.normal_data import read_normal_data

    path = tmp_path / "log.csv"
    path.write_text(_long_exports()[name])
    (tmp_path / "log (Tagname).csv").write_text("Tagname,TTagIndex,TType,TDataType\np,0,1,2\nq,1,1,2\n")
    data = read_normal_data([path])
    assert [f.split(".")[-1] for f in data.features] == ["p", "q"] and data.notes.long_exports
    source = make_source(f"replay:{path}", data.features)
    q: queue.Queue = queue.Queue()
    source.start(q)
    source.join(10)
    items = [q.get_nowait() for _ in range(q.qsize())]
    rows = [i.payload for i in items if i.kind == Kind.MEASUREMENT]
    assert len(rows) == data.rows == 24
    assert [r.ts for r in rows] == pytest.approx(np.concatenate(data.times).tolist())
    held = np.array([[np.nan if v is None else v for v in r.values] for r in rows], dtype=float)
    ok = np.isfinite(held).all(axis=1)
    assert ok.sum() >= 22 and held[ok] == pytest.approx(data.values()[ok])


def _thousands_only(path: Path, extra: str = "") -> Path:
    """Pressure in mbar written 1.234 (a thousands mark) in every row, the others integers: nothing in the file
    tells the '.' from a decimal point. Row 20 is the fault (4.500 mbar)."""
    lines = ["datetime;Pressure;Current;Volume Flow RateRMS"]
    lines += [f"2020-03-09 10:14:{i:02d};{'4.500' if i == 20 else '1.200'};3;32" for i in range(40)]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _run_mbar(tmp_path: Path, url: str) -> tuple[Agent, MemorySink]:
    card = make_card(window=3, features=FEATURES, threshold=1.0, k=1, n=1,
                     scaler=Scaler("standard", [1200.0, 3.0, 32.0], [1.0, 1.0, 1.0]))  # fitted on 1200 mbar
    agent = Agent(ScoringModel(write_model(tmp_path / "m.onnx", card)), [sink := MemorySink()],
                  AgentOptions(stride=1, drift_every=0))
    agent.add_source(make_source(url, FEATURES))
    agent.run(duration=30)
    return agent, sink


def test_the_decimal_mark_given_on_the_url_reads_what_the_file_cannot_tell(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The model was fitted on 1200 mbar (fit --decimal ,). Guessed, 1.200 is 1.2 and every window alerts from
    the first; given, the one alert is at the fault (row 20)."""
    csv = _thousands_only(tmp_path / "mbar.csv")
    with caplog.at_level(logging.WARNING, logger="edgewatch.agent.sources"):
        _, guessed = _run_mbar(tmp_path, f"replay:{csv}")
    assert "'.' read as the decimal mark" in caplog.text and "?decimal=," in caplog.text  # the guess, said
    first = next(e for e in guessed.events if e["event"] == "start")
    assert first["ts"] == pytest.approx(1583748842.0, abs=0.5)  # 10:14:02, the first full window
    agent, told = _run_mbar(tmp_path, f"replay:{csv}?decimal=,")
    assert agent.summary.messages == 40 and agent.summary.bad == {}
    starts = [e for e in told.events if e["event"] == "start"]
    assert len(starts) == 1 and starts[0]["ts"] == pytest.approx(1583748860.0, abs=0.5)  # 10:14:20: the fault


def test_a_decimal_mark_the_file_contradicts_or_no_mark_is_refused(tmp_path: Path) -> None:
    csv = _thousands_only(tmp_path / "mbar.csv", "2020-03-09 10:15:00;12.5;3;32\n")
    with pytest.raises(BadInput, match=r"line 42: '12\.5' in the column 'Pressure'"):
        make_source(f"replay:{csv}?decimal=,", FEATURES)
    with pytest.raises(BadInput, match=r"decimal is '\.' or ','"):
        make_source(f"replay:{csv}?decimal=;", FEATURES)


def test_a_value_beside_its_quality_is_replayed_as_its_tag(tmp_path: Path) -> None:
    """'FIC101 Value','FIC101 Quality': the model's feature is the tag FIC101 (as fit names it, and as the plant's
    topics plant/{stream}/FIC101 name it); a value of bad quality is a blank, held."""
    lines = ["Timestamp,FIC101 Value,FIC101 Quality,PT102 Value,PT102 Quality"]
    lines += [f"2024-05-01 08:00:{i:02d},{'0' if i == 5 else '12.5'},{'Bad' if i == 5 else 'Good'},2.5,Good"
              for i in range(20)]
    csv = tmp_path / "q.csv"
    csv.write_text("\n".join(lines) + "\n")
    features = ["FIC101", "PT102"]
    card = make_card(window=3, features=features, threshold=1.0, k=1, n=1,
                     scaler=Scaler("standard", [12.5, 2.5], [1.0, 1.0]))  # a 0 read as a value would alert
    agent = Agent(ScoringModel(write_model(tmp_path / "q.onnx", card)), [sink := MemorySink()],
                  AgentOptions(stride=1, drift_every=0))
    agent.add_source(make_source(f"replay:{csv}", features))
    summary = agent.run(duration=30)
    assert summary.messages == 20 and summary.bad == {} and summary.windows == 18 and not sink.events


def test_a_looping_replay_with_a_time_column_scores_every_pass(tmp_path: Path) -> None:
    """``?loop=1`` plays the file again from its first time: the second pass's values are older than the first's,
    and were all counted stale_feature (out of order), so a looped replay scored its first pass only."""
    csv = tmp_path / "loop.csv"
    csv.write_text("timestamp,a,b,c,d\n" + "".join(f"{1_700_000_000 + i},0.5,0.5,0.5,0.5\n" for i in range(20)))
    model = write_model(tmp_path / "m.onnx", make_card(window=4, features=["a", "b", "c", "d"]))
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                          "--source", f"replay:{csv}?loop=1", "--max-messages", "100"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "messages 100 " in run.stderr and "bad 0," in run.stderr and "windows scored 97" in run.stderr


def test_a_last_line_cut_off_inside_its_last_value_is_bad_input_not_a_row(tmp_path: Path) -> None:
    """Replaying a file the logger was still writing: before, its last line ``...;32.`` (of ``...;32.25``) was read
    as a flow of 32. The same reader as ``fit`` (docs/fit.md, "Torn lines") skips it as ``bad_reply``; every
    other row replays, and a file that only lacks its final line end replays whole."""
    csv = tmp_path / "1.csv"
    head = "datetime;Pressure;Current;Volume Flow RateRMS"
    lines = [head] + [f"2020-03-09 10:{14 + i // 60:02d}:{i % 60:02d};0.054711;0.87;32.25" for i in range(120)]
    csv.write_text("\n".join(lines)[:-3])  # the last value cut to "32." with no line end
    agent, _ = _run(tmp_path, f"replay:{csv}")
    assert agent.summary.messages == 120 and agent.summary.bad == {"bad_reply": 1}, agent.summary
    csv.write_text("\n".join(lines))  # no final line end, nothing cut: every row
    agent, _ = _run(tmp_path, f"replay:{csv}")
    assert agent.summary.messages == 120 and agent.summary.bad == {}, agent.summary
