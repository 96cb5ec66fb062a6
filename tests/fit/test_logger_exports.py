"""Exports of loggers and tools the eighth walk-through met first (docs/fit.md, "eighth walk-through").

Each file is what the tool writes, made small and seeded here, and read in the default form (``fit_model`` with
no options, ``read_csv_table``, the replay through the agent). What each test pins failed before its fix:

* Onset's HOBOware: a "Plot Title" line, a ``#`` column, ``Date Time, GMT-05:00`` over ``11/01/26 01:00:00 PM``
  (refused: "no time in the time column ... could be read"; with the zone read, its dates went day-first);
* a Campbell Scientific TOA5 file of eight columns: its first line (station, logger, ...) is as wide as the
  header and was listed as a row of descriptions (``RECORD [CT1, RN]``);
* a drive's trace, ``Time [ms]`` from 0: no time column (a counter left out; no durations in the report);
* a historian's quality beside a text state (``FDV101 Value``, ``FDV101 Quality``): the quality was a text
  column left out and the state kept the name ``FDV101 Value`` beside ``TT101``;
* a recorder's ``+Over`` in a belt scale's column: fit held it, the replay dropped each row holding one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from edgewatch.fit.pipeline import fit_model
from edgewatch.wire.csv_table import read_csv_table
from edgewatch.wire.csv_times import DateOrder
from tests.agent.test_without_torch import BLOCKER

SN = "LGR S/N: 20812345, SEN S/N: 20812345"


def _hobo(path: Path, rows: int = 1200, seed: int = 1) -> Path:
    """A HOBO U12 with two current transducers and two temperatures, every 5 min from 1 Nov 2026 00:00 local
    (GMT-05:00), exported by HOBOware with its default US dates."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 11, 1)
    lines = ['"Plot Title: Chiller plant"',
             f'"#","Date Time, GMT-05:00","CH1 Current, Amps ({SN})","CH2 Current, Amps ({SN})",'
             f'"CHWS Temp, °F ({SN})","CHWR Temp, °F ({SN})","Coupler Attached (LGR S/N: 20812345)",'
             '"Stopped (LGR S/N: 20812345)","End Of File (LGR S/N: 20812345)"']
    for i in range(rows):
        load = 0.5 + 0.3 * np.sin(i / 288 * 2 * np.pi) + rng.normal(0, 0.02)
        supply = 44 + rng.normal(0, 0.2)
        events = ["Logged" if i == 0 else "", "Logged" if i == rows - 1 else "", "Logged" if i == rows - 1 else ""]
        lines.append(",".join([str(i + 1), (t0 + timedelta(minutes=5 * i)).strftime("%m/%d/%y %I:%M:%S %p"),
                               f"{120 * load + rng.normal(0, 2):.3f}", f"{max(0.0, 120 * (load - 0.6)):.3f}",
                               f"{supply:.3f}", f"{supply + 10 * load + rng.normal(0, 0.2):.3f}", *events]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path


def test_a_hobo_export_is_read_with_its_zone_its_us_dates_and_its_row_number_column(tmp_path: Path) -> None:
    table = read_csv_table(_hobo(tmp_path / "hobo.csv"))
    lay = table.layout
    assert lay.time_column == "Date Time, GMT-05:00" and lay.zone == "UTC-05:00"
    assert lay.date_order is DateOrder.MONTH_FIRST and not lay.date_order_guessed
    first = datetime(2026, 11, 1, 5, tzinfo=timezone.utc).timestamp()  # midnight at GMT-05:00
    assert table.times[0] == first and np.all(np.diff(table.times) == 300.0)  # never a month's jump
    assert lay.header[0] == "#" and "renamed" not in lay.describe()
    # the label and its unit; the logger's serial numbers (a '/' in a name splits an MQTT topic level) dropped
    assert lay.header[2:] == ["CH1 Current", "CH2 Current", "CHWS Temp", "CHWR Temp", "Coupler Attached", "Stopped",
                              "End Of File"]
    assert lay.units["CH1 Current"] == "Amps" and lay.units["CHWS Temp"] == "°F"
    assert f"'CH1 Current, Amps ({SN})' is 'CH1 Current [Amps]'" in lay.describe()

    report = "\n".join(fit_model([tmp_path / "hobo.csv"], tmp_path / "hobo.onnx").lines())
    assert "gap(s) in time" not in report and "4.2 days at one row every 300 s" in report, report
    assert "left out  #" in report and "a counter" in report, report
    # the logger's events on one line, not as three text columns and two blank ones
    assert "left out  3 HOBOware event columns ('Logged' where the logger saw it happen), not measurements: " \
           "Coupler Attached, Stopped, End Of File" in report, report
    assert "text, not a number (e.g. 'Logged')" not in report and "anything in #, Coupler" not in report, report


def test_hobo_names_that_only_their_serial_numbers_tell_apart_are_kept_whole(tmp_path: Path) -> None:
    text = _hobo(tmp_path / "h.csv", rows=50).read_text(encoding="utf-8-sig")
    text = text.replace(f"CHWR Temp, °F ({SN})", "CHWS Temp, °F (LGR S/N: 20812345, SEN S/N: 20812399)")
    lay = read_csv_table(_write(tmp_path / "two.csv", text)).layout
    assert f"CHWS Temp, °F ({SN})" in lay.header and "CHWS Temp" not in lay.header


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _toa5(path: Path, rows: int = 600, seed: int = 3) -> Path:
    """A CR1000X table of eight columns at 10 min: the TOA5 line, names, units, processing."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 6, 1)
    lines = ['"TOA5","CT-North","CR1000X","38112","CR1000X.Std.06.01","CPU:tower.CR1X","51763","Table10"',
             '"TIMESTAMP","RECORD","WetBulb_C","ColdWater_C","HotWater_C","FanSpeed_pct","Flow_m3h","BattV_Min"',
             '"TS","RN","Deg C","Deg C","Deg C","%","m3/h","Volts"',
             '"","","Avg","Avg","Avg","Avg","Avg","Min"']
    for i in range(rows):
        wb = 15 + 3 * np.sin(i / 144 * 2 * np.pi) + rng.normal(0, 0.2)
        cells = [f"{wb:.2f}", f"{wb + 4 + rng.normal(0, 0.1):.2f}", f"{wb + 10 + rng.normal(0, 0.2):.2f}",
                 f"{60 + 20 * np.sin(i / 144 * 2 * np.pi):.1f}", f"{310 + rng.normal(0, 3):.1f}",
                 f"{12.9 + rng.normal(0, 0.01):.2f}"]
        if i == 100:
            cells[1] = '"NAN"'
        lines.append(",".join([f'"{t0 + timedelta(minutes=10 * i):%Y-%m-%d %H:%M:%S}"', str(i), *cells]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_toa5_files_first_line_is_the_loggers_not_a_row_of_descriptions(tmp_path: Path) -> None:
    table = read_csv_table(_toa5(tmp_path / "tower.csv"))
    lay = table.layout
    assert lay.header[:3] == ["TIMESTAMP", "RECORD", "WetBulb_C"] and lay.time_column == "TIMESTAMP"
    assert lay.header_row == 1 and lay.unit_rows == 2  # the TOA5 line above; units and processing under
    assert lay.units["WetBulb_C"] == "Deg C, Avg" and lay.units["RECORD"] == "RN"
    assert table.rows == 600 and table.missing["ColdWater_C"] == 1  # "NAN"
    assert "CT-North" not in lay.describe() and "CR1000X" not in lay.describe()
    assert lay.logger == "TOA5"

    fitted = fit_model([tmp_path / "tower.csv"], tmp_path / "tower.onnx")
    report = "\n".join(fitted.lines())
    assert "left out  BattV_Min                the logger's own supply voltage" in report, report
    used = {c.name for c in fitted.choices}
    assert "BattV_Min" not in used and "WetBulb_C" in used


def test_a_battery_column_outside_a_toa5_file_is_the_plants_and_is_kept(tmp_path: Path) -> None:
    text = _toa5(tmp_path / "t.csv").read_text().split("\n", 1)[1]  # no TOA5 line: another export
    fitted = fit_model([_write(tmp_path / "plain.csv", text)], tmp_path / "plain.onnx")
    assert "BattV_Min" in {c.name for c in fitted.choices if c.use.name != "LEFT_OUT"}, fitted.lines()


def _trace(path: Path, rows: int = 6000, seed: int = 5, time_name: str = "Time [ms]", start: float = 0.0,
           step: float = 100.0, jitter: float = 0.0) -> Path:
    """A drive's trace: setpoint steps, output frequency, current and torque, written with decimal commas."""
    rng = np.random.default_rng(seed)
    sp = np.repeat(rng.choice([25.0, 35.0, 50.0], rows // 600 + 1), 600)[:rows]
    f = sp + rng.normal(0, 0.03, rows)
    torque = 30 + 0.012 * f ** 2 + rng.normal(0, 1.0, rows)
    current = 6 + 0.22 * torque + rng.normal(0, 0.15, rows)
    t = start + np.arange(rows) * step + (rng.uniform(0, jitter, rows) if jitter else 0)
    lines = [f"{time_name};Frequency setpoint [Hz];Output frequency [Hz];Motor current [A];Motor torque [%]"]
    lines += [f"{t[k]:.{1 if jitter else 0}f};{sp[k]:.2f};{f[k]:.2f};{current[k]:.2f};{torque[k]:.1f}".replace(".", ",")
              for k in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_drive_trace_in_milliseconds_since_its_start_is_its_time(tmp_path: Path) -> None:
    table = read_csv_table(_trace(tmp_path / "trace.csv", rows=3000))
    assert table.layout.time_column == "Time [ms]" and table.layout.elapsed == 0.001
    assert table.times[0] == 0.0 and np.allclose(np.diff(table.times), 0.1)
    assert "Time [ms]" not in table.numeric

    report = "\n".join(fit_model([tmp_path / "trace.csv"], tmp_path / "trace.onnx").lines())
    assert "time column 'Time [ms]' (time elapsed since the recording started" in report, report
    assert "5 min at one row every 0.1 s" in report and "a counter" not in report, report
    assert "10 rows (1 s)" in report, report  # the window in time, which a row count alone did not say


@pytest.mark.parametrize("name, step, jitter, elapsed", [("t (s)", 0.01, 0.0, 1.0), ("Time_s", 0.5, 0.2, 1.0),
                                                          ("Zeit [min]", 1.0, 0.0, 60.0)])
def test_other_elapsed_time_columns(tmp_path: Path, name: str, step: float, jitter: float, elapsed: float) -> None:
    table = read_csv_table(_trace(tmp_path / "t.csv", rows=700, time_name=name, step=step, jitter=jitter))
    assert table.layout.time_column == name and table.layout.elapsed == elapsed
    assert name not in table.numeric  # an irregular one (jitter) used to become a rising feature


def test_a_trace_with_its_pre_trigger_part_starts_before_zero(tmp_path: Path) -> None:
    table = read_csv_table(_trace(tmp_path / "t.csv", rows=700, start=-5000.0))  # 5 s before the trigger
    assert table.layout.time_column == "Time [ms]" and table.times[0] == -5.0
    assert np.allclose(np.diff(table.times), 0.1)


def test_a_traces_trigger_time_above_the_header_dates_its_elapsed_times(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.csv", rows=700)
    trace.write_text("Trace export;SINAMICS G120\nTrigger time;07.12.2026 10:14:33.123\n\n" + trace.read_text())
    table = read_csv_table(trace)
    start = datetime(2026, 12, 7, 10, 14, 33, 123000, tzinfo=timezone.utc).timestamp()
    assert table.times[0] == pytest.approx(start) and np.allclose(np.diff(table.times), 0.1)  # before: 1970
    assert "'Trigger time 07.12.2026 10:14:33.123'" in table.layout.describe()

    firing = _firing(tmp_path / "f.csv", minutes=120)
    firing.write_text("Kiln 2 firing log\nStart: 2026-11-03 07:12\n" + firing.read_text())
    table = read_csv_table(firing)
    assert table.times[0] == datetime(2026, 11, 3, 7, 12, tzinfo=timezone.utc).timestamp()
    assert table.times[-1] - table.times[0] == 119 * 60


def test_epoch_times_in_a_column_named_with_a_unit_stay_epoch_times(tmp_path: Path) -> None:
    table = read_csv_table(_trace(tmp_path / "t.csv", rows=700, time_name="Time [ms]", start=1.7e12))
    assert table.layout.time_column == "Time [ms]" and table.layout.elapsed == 0.0
    assert table.times[0] == pytest.approx(1.7e9) and np.allclose(np.diff(table.times), 0.1)


def _pasteuriser(path: Path, rows: int = 4000, seed: int = 7) -> Path:
    """A historian's wide export with a quality beside every value, the flow diversion valve's value a word."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 12, 1, 6)
    forward = (np.arange(rows) // 400) % 4 != 3
    hold = np.where(forward, 72.8, 60.0) + rng.normal(0, 0.05, rows)
    flow = np.where(forward, 12.0, 12.0) + rng.normal(0, 0.15, rows)
    lines = ["Timestamp,TT101 Value,TT101 Quality,FT101 Value,FT101 Quality,FDV101 Value,FDV101 Quality"]
    for k in range(rows):
        valve, q = ("Forward" if forward[k] else "Divert"), "Good"
        if k % 997 == 500:
            valve, q = "Fault", "Bad (Comm Failure)"  # a word of bad quality: no state, held
        lines.append(",".join([f"{t0 + timedelta(seconds=10 * k):%Y-%m-%d %H:%M:%S}", f"{hold[k]:.2f}", "Good",
                               f"{flow[k]:.2f}", "Uncertain (Last Usable Value)" if k % 301 == 5 else "Good",
                               valve, q]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_quality_beside_a_text_state_is_its_quality_and_the_state_is_named_after_its_tag(tmp_path: Path) -> None:
    table = read_csv_table(_pasteuriser(tmp_path / "htst.csv"))
    lay = table.layout
    assert lay.quality == {"TT101": "TT101 Quality", "FT101": "FT101 Quality", "FDV101": "FDV101 Quality"}
    assert lay.header == ["Timestamp", "TT101", "TT101 Quality", "FT101", "FT101 Quality", "FDV101",
                          "FDV101 Quality"]
    assert set(table.text_values["FDV101"]) == {"Divert", "Forward"}  # 'Fault' had bad quality: a blank

    report = "\n".join(fit_model([tmp_path / "htst.csv"], tmp_path / "htst.onnx").lines())
    assert "state     FDV101 " in report and "Divert=0, Forward=1" in report, report
    assert "left out  FDV101 Quality" not in report and "FDV101 [FDV101 Quality]" in report, report


def _conveyor(path: Path, hours: float = 1.0, seed: int = 9, fault_from: int | None = None) -> Path:
    """A belt scale of range 0..500 t/h, its logger writing ``+Over`` beyond it, beside current and speed."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    load = 380 + np.convolve(rng.normal(0, 1, n), np.ones(60) / 60 ** 0.5, mode="same") * 40
    load += np.convolve((rng.random(n) < 1 / 600).astype(float), np.hanning(120) * 200, mode="same")
    current = 42 + 0.085 * load + rng.normal(0, 0.8, n)
    if fault_from is not None:
        current[fault_from:] += 6.0
    t0 = datetime(2026, 12, 1, 6)
    lines = ["Date,Time,CH001 Belt load,CH002 Belt speed,CH003 Motor current", ",,t/h,m/s,A"]
    for k in range(n):
        t = t0 + timedelta(seconds=k)
        lines.append(",".join([f"{t:%Y/%m/%d}", f"{t:%H:%M:%S}", "+Over" if load[k] > 500 else f"{load[k]:.1f}",
                               f"{2.5 + rng.normal(0, 0.01):.3f}", f"{current[k]:.2f}"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_over_range_mark_is_said_by_fit_and_held_alike_by_the_replay(tmp_path: Path) -> None:
    normal = _conveyor(tmp_path / "belt.csv")
    table = read_csv_table(normal)
    over = table.beyond["CH001 Belt load"]["+Over"]
    assert over > 20 and "CH001 Belt load" not in table.bad and table.missing["CH001 Belt load"] == over

    report = fit_model([normal], tmp_path / "belt.onnx").lines()
    line = next((x for x in report if "'+Over'" in x), None)
    assert line is not None and f"CH001 Belt load: {over:,} '+Over' ({over / table.rows:.1%} of the rows)" in line
    assert "beyond its range" in line, report
    assert not any("text in numeric columns" in x for x in report), report

    run = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "run", "--model", str(tmp_path / "belt.onnx"),
                          "--source", f"replay:{normal}", "--sink", f"jsonl:{tmp_path / 'a.jsonl'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = next(x for x in run.stderr.splitlines() if x.startswith("messages "))
    assert summary.startswith(f"messages {table.rows} ") and "bad 0," in summary, summary  # no row dropped
    events = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()] \
        if (tmp_path / "a.jsonl").exists() else []
    assert not [e for e in events if e["event"] == "start"], events


def _firing(path: Path, minutes: int = 1800, name: str = "Elapsed Time", seed: int = 11, start: int = 0) -> Path:
    """A kiln controller's log of one firing: h:mm since the start, a segment word, setpoint, temperature, output."""
    rng = np.random.default_rng(seed)
    lines = [f"{name},Segment,Setpoint (°C),Temperature (°C),Output (%)"]
    for i in range(start, start + minutes):
        sp = min(20 + i, 1000)
        h, m = divmod(i, 60)
        lines.append(f"{h}:{m:02d},{'Ramp' if i < 980 else 'Hold'},{sp},{sp + rng.normal(0, 1.5):.1f},"
                     f"{20 + 0.05 * sp + rng.normal(0, 2):.1f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_kiln_firings_elapsed_hours_and_minutes_past_a_day_are_its_time(tmp_path: Path) -> None:
    table = read_csv_table(_firing(tmp_path / "firing.csv"))
    assert table.layout.time_column == "Elapsed Time" and table.layout.elapsed == 1.0
    assert table.times[-1] == 29 * 3600 + 59 * 60 and np.all(np.diff(table.times) == 60.0)
    report = "\n".join(fit_model([tmp_path / "firing.csv"], tmp_path / "kiln.onnx").lines())
    assert "30.0 h at one row every 60 s" in report and "left out  Elapsed Time" not in report, report


def test_a_column_named_a_duration_is_elapsed_under_a_day_and_times_of_day_are_not(tmp_path: Path) -> None:
    table = read_csv_table(_firing(tmp_path / "d.csv", minutes=600, name="Duration"))
    assert table.layout.time_column == "Duration" and table.times[-1] == 599 * 60
    day = _firing(tmp_path / "clock.csv", minutes=600, name="Time", start=480)  # 08:00 to 17:59: a clock
    assert read_csv_table(day).layout.elapsed == 0.0


@pytest.mark.parametrize("mark", ["+Over", "-Over", "Over Range", "Under Range", "Overrange"])
def test_a_live_sources_over_range_mark_is_a_missing_value_held_as_fit_holds_it(mark: str) -> None:
    from edgewatch.agent.sources.rows import BEYOND, MISSING, cell_value
    assert cell_value(mark) is BEYOND  # before: not_number, the message (or the row) refused; held as a blank is,
    assert cell_value("") is MISSING  # its age refreshed (tests/agent/sources/test_over_range_live.py)
    assert cell_value("Overheat") is not MISSING and cell_value("OL") is not MISSING  # a starter's "OL": a state


def test_files_read_alike_make_one_read_line_and_a_file_read_otherwise_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "firings"
    folder.mkdir()
    for k in range(4):
        _firing(folder / f"firing_{k + 1:02d}.csv", minutes=900, seed=30 + k)
    report = fit_model([folder], tmp_path / "k.onnx").lines()
    read = [x for x in report if x.startswith("read  ")]
    assert read == ["read      4 files, firing_01.csv .. firing_04.csv: 3,600 rows (900 each); separator ',', "
                    "time column 'Elapsed Time' (time elapsed since the recording started, printed as from "
                    "1970-01-01 00:00), 5 columns"], read  # before: four lines of the same words

    text = (folder / "firing_04.csv").read_text()
    (folder / "firing_04.csv").write_text(text.replace(",", ";"))  # one export made with another separator
    read = [x for x in fit_model([folder], tmp_path / "k2.onnx").lines() if x.startswith("read  ")]
    assert len(read) == 2 and read[0].startswith("read      3 files, firing_01.csv .. firing_03.csv: 2,700 rows (900 "
                                                 "each)")
    assert read[1].startswith("read      firing_04.csv: 900 rows; separator ';'"), read


def test_the_close_time_of_slow_rows_is_said_in_minutes(tmp_path: Path) -> None:
    report = "\n".join(fit_model([_toa5(tmp_path / "tower.csv")], tmp_path / "t.onnx").lines())
    assert "ends after 10 windows (100 min) in a row under it" in report, report  # before: (6000 s)
