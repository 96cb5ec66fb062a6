"""wire/csv_table: the CSV files plants export, read without being told how they are written."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.errors import BadInput
from edgewatch.wire.csv_table import iter_rows, read_csv_table, sniff_layout
from edgewatch.wire.csv_times import parse_time, parse_times


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separator_and_time_column_are_sniffed(tmp_path: Path, sep: str) -> None:
    rows = [sep.join(["timestamp", "flow", "pressure"])] + [
        sep.join([f"2024-05-01 08:00:{i:02d}", f"{10 + i * 0.5}", f"{2.5 - i * 0.01}"]) for i in range(20)]
    table = read_csv_table(_write(tmp_path / "a.csv", "\n".join(rows) + "\n"))
    assert table.layout.separator == sep and table.layout.time_column == "timestamp"
    assert list(table.numeric) == ["flow", "pressure"] and table.rows == 20
    assert table.numeric["flow"][3] == pytest.approx(11.5)
    assert np.diff(table.times) == pytest.approx(np.ones(19))


def test_european_export_with_decimal_commas_and_a_byte_order_mark(tmp_path: Path) -> None:
    text = "Zeitstempel;Druck;Temperatur\n01.05.2024 08:00:00;1,25;20,5\n01.05.2024 08:00:01;1,5;20,75\n"
    path = _write(tmp_path / "de.csv", "\ufeff" + text)
    layout = sniff_layout(path)
    assert layout.separator == ";" and layout.decimal == ","
    assert layout.time_column == "Zeitstempel"  # "zeit" in its name, dates in its cells
    table = read_csv_table(path, layout)
    assert table.numeric["Druck"].tolist() == [1.25, 1.5]
    assert table.times[1] - table.times[0] == 1.0


@pytest.mark.parametrize("name", ["Time Stamp", "_time", "DATETIME", "ts"])
def test_time_column_names_plants_use(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / "t.csv", f"{name},x\n1714550400,1\n1714550401,2\n")
    table = read_csv_table(path)
    assert table.layout.time_column == name and table.times.tolist() == [1714550400.0, 1714550401.0]


def test_a_named_time_column_that_is_missing_says_which_columns_there_are(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "when;x\n1;2\n")
    with pytest.raises(BadInput, match=r"no column 'stamp'.*\['when', 'x'\]"):
        sniff_layout(path, time_column="stamp")


def test_text_blank_and_broken_cells(tmp_path: Path) -> None:
    text = ("time,speed,state,temp,anomaly\n"
            "2024-01-01T00:00:00Z,1.0,RUN,20,0\n"
            "2024-01-01T00:00:01Z,,RUN,NaN,0\n"
            "2024-01-01T00:00:02Z,null,STOP,21,1\n"
            "2024-01-01T00:00:03Z,2.0,RUN,err,0\n"
            "2024-01-01T00:00:04Z,3.0,RUN\n"
            "bad time,4.0,RUN,22,0\n")
    table = read_csv_table(_write(tmp_path / "m.csv", text))
    assert table.text_columns == {"state": "RUN"}
    assert list(table.numeric) == ["speed", "temp"] and "anomaly" in table.labels
    assert table.missing == {"speed": 2, "temp": 1} and table.bad == {"temp": 1}
    assert table.ragged == 1 and table.rows == 5 and table.bad_times == 1
    assert math.isnan(table.numeric["temp"][3])


@pytest.mark.parametrize("text, expected", [
    ("2020-03-09 10:14:33", 1583748873.0), ("2020-03-09T10:14:33Z", 1583748873.0),
    ("2020-03-09T11:14:33+01:00", 1583748873.0), ("2020/03/09 10:14:33", 1583748873.0),
    ("09.03.2020 10:14:33", 1583748873.0), ("1583748873", 1583748873.0), ("1583748873500", 1583748873.5),
    ("2020-03-09 10:14:33.250", 1583748873.25)])
def test_time_formats(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected)
    assert parse_times([text, text])[1] == pytest.approx(expected)


def test_unreadable_times_are_nan() -> None:
    assert math.isnan(parse_time("yesterday")) and math.isnan(parse_time(""))
    got = parse_times(["2020-03-09 10:14:33", "soon"])
    assert got[0] == pytest.approx(1583748873.0) and math.isnan(got[1])


def test_empty_and_headless_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="empty"):
        sniff_layout(_write(tmp_path / "e.csv", ""))
    with pytest.raises(BadInput, match="no rows"):
        read_csv_table(_write(tmp_path / "h.csv", "a,b\n"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_any_bytes_either_read_or_refused_with_bad_input(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        table = read_csv_table(path)
    except BadInput:
        return
    assert table.rows >= 1
    for values in table.numeric.values():
        assert len(values) == table.rows


def _rows(n: int = 30, sep: str = ",", time=lambda i: f"2024-03-04 08:00:{i:02d}") -> list[str]:  # noqa: ANN001
    return [sep.join([time(i), f"{4.2 + 0.01 * (i % 3):.2f}", f"{31 + 0.1 * (i % 5):.1f}"]) for i in range(n)]


def test_excel_sep_line_a_title_and_comment_lines_above_the_header(tmp_path: Path) -> None:
    excel = _write(tmp_path / "x.csv", "sep=;\r\n" + "\r\n".join(["time;p;q"] + _rows(sep=";")) + "\r\n")
    historian = _write(tmp_path / "h.csv", "# Exported by PlantHistorian 7.2\nSite: Plant A, Line 3\n\n"
                       + "\n".join(["time,p,q"] + _rows()) + "\n# end of export\n")
    for path, skipped in ((excel, 1), (historian, 2)):
        table = read_csv_table(path)
        assert table.layout.header == ["time", "p", "q"] and table.layout.time_column == "time"
        assert table.rows == 30 and table.ragged == 0 and table.bad_times == 0
        assert table.numeric["p"][1] == pytest.approx(4.21)
        assert f"{skipped} line(s) above the header skipped" in table.layout.describe()


def test_a_row_of_units_under_the_header_is_not_data(tmp_path: Path) -> None:
    head = ["Timestamp,Pressure,Flow", ",bar,m3/h", "Description,Discharge,Main line"]
    path = _write(tmp_path / "u.csv", "\n".join(head + _rows()) + "\n")
    table = read_csv_table(path)
    assert table.layout.unit_rows == 2 and table.layout.units["Pressure"] == "bar, Discharge"
    assert table.rows == 30 and table.bad == {} and table.bad_times == 0 and list(table.numeric) == ["Pressure", "Flow"]
    assert ("2 row(s) of units or descriptions under the header, not data: "  # the rows' labels are no unit
            "Pressure [bar, Discharge], Flow [m3/h, Main line]") in table.layout.describe()


def test_a_latin1_file_is_read_and_said_even_when_its_first_lines_are_ascii(tmp_path: Path) -> None:
    text = "\n".join(["Time;Temp [°C];Vib [µm]"] + _rows(sep=";")) + "\n"
    (tmp_path / "l.csv").write_bytes(text.encode("cp1252"))
    late = "\n".join(["time,p,q"] + _rows(200)) + "\n2024-03-04 08:04:00,1.0,2.0,\n"
    (tmp_path / "late.csv").write_bytes(late.replace(",2.0,", ",2.0,caf\xe9").encode("latin-1"))
    table = read_csv_table(tmp_path / "l.csv")
    assert list(table.numeric) == ["Temp [°C]", "Vib [µm]"] and table.rows == 30
    note = "not UTF-8 (byte 0xb0 on line 1): read as Windows-1252 (Latin-1), where it is '°'"
    assert note in table.layout.describe()
    late_table = read_csv_table(tmp_path / "late.csv")
    assert late_table.rows == 200 and late_table.ragged == 1 and "line 202" in late_table.layout.describe()


@pytest.mark.parametrize("sep, cells, decimal, thousands", [
    (",", ['"1,234.5"', '"12,001.25"'], ".", ","),
    (";", ["1.234,5", "12.001,25"], ",", "."),
])
def test_thousands_marks(tmp_path: Path, sep: str, cells: list[str], decimal: str, thousands: str) -> None:
    lines = [sep.join(["time", "p", "q"])] + [sep.join([f"2024-03-04 08:00:{i:02d}", cells[i % 2], "7"])
                                             for i in range(10)]
    table = read_csv_table(_write(tmp_path / "t.csv", "\n".join(lines) + "\n"))
    assert (table.layout.decimal, table.layout.thousands) == (decimal, thousands)
    assert table.numeric["p"][:2].tolist() == [1234.5, 12001.25] and table.bad == {}


def test_date_and_time_columns_are_joined(tmp_path: Path) -> None:
    lines = ["Date,Time,p"] + [f"2024-03-04,23:59:{58 + i:02d},1" if i < 2 else f"2024-03-05,00:00:{i - 2:02d},1"
                               for i in range(6)]
    table = read_csv_table(_write(tmp_path / "d.csv", "\n".join(lines) + "\n"))
    assert (table.layout.date_column, table.layout.time_column) == ("Date", "Time")
    assert list(table.numeric) == ["p"] and table.text_columns == {}
    assert np.diff(table.times).tolist() == [1.0] * 5
    assert "time from the columns 'Date' and 'Time'" in table.layout.describe()


@pytest.mark.parametrize("first, order, guessed", [
    (lambda i: f"13/03/2024 23:59:{i:02d}", "day-first", False),
    (lambda i: f"03/13/2024 11:59:{i:02d} PM", "month-first", False),
    (lambda i: f"03/04/2024 08:00:{i:02d} AM", "month-first", True),  # AM/PM: the US order
    (lambda i: f"03/04/2024 08:00:{i:02d}", "day-first", True),
])
def test_slash_dates_day_or_month_first_as_the_file_tells(tmp_path: Path, first, order: str,  # noqa: ANN001
                                                          guessed: bool) -> None:
    table = read_csv_table(_write(tmp_path / "s.csv", "\n".join(["Timestamp,p,q"] + _rows(time=first)) + "\n"))
    assert table.layout.date_order.value == order and table.layout.date_order_guessed is guessed
    assert table.bad_times == 0 and np.diff(table.times).tolist() == [1.0] * 29
    day = {"day-first": 3, "month-first": 4}[order] if guessed else 13  # 03/04: 3 April or March 4
    assert datetime.fromtimestamp(table.times[0], timezone.utc).day == day


def test_a_date_late_in_the_file_decides_the_order(tmp_path: Path) -> None:
    rows = _rows(100, time=lambda i: f"{i // 60 + 1:02d}/03/2024 00:{i % 60:02d}:00")
    rows += _rows(1, time=lambda i: "13/03/2024 00:00:00")
    layout = sniff_layout(_write(tmp_path / "l.csv", "\n".join(["time,p,q"] + rows) + "\n"))
    assert layout.date_order.value == "day-first"


def test_a_daylight_saving_fall_back_in_wall_clock_times_runs_on(tmp_path: Path) -> None:
    clock = [f"2024-10-27 02:{m:02d}:00" for m in (*range(30, 60, 5), *range(0, 30, 5))]
    table = read_csv_table(_write(tmp_path / "d.csv", "\n".join(["time,p,q"] + _rows(12, time=lambda i: clock[i]))
                                  + "\n"))
    assert table.clock_changes == 1 and np.diff(table.times).tolist() == [300.0] * 11
    zoned = [c.replace(" ", "T") + ("+02:00" if i < 6 else "+01:00") for i, c in enumerate(clock)]
    table = read_csv_table(_write(tmp_path / "z.csv", "\n".join(["time,p,q"] + _rows(12, time=lambda i: zoned[i]))
                                  + "\n"))
    assert table.clock_changes == 0 and np.diff(table.times).tolist() == [300.0] * 11


def test_at_hourly_sampling_the_repeated_hour_is_a_time_written_twice_at_night_in_a_file_that_does_not_do_so(
        tmp_path: Path) -> None:
    hours = [f"2024-10-2{6 + h // 24} {h % 24:02d}:00:00" for h in range(20, 27)] + [
        f"2024-10-27 {h:02d}:00:00" for h in range(2, 6)]  # 20:00 .. 02:00, 02:00 .. 05:00
    table = read_csv_table(_write(tmp_path / "h.csv", "\n".join(["time,p,q"] + _rows(11, time=lambda i: hours[i]))
                                  + "\n"))
    assert table.clock_changes == 1 and np.diff(table.times).tolist() == [3600.0] * 10
    assert table.fall_backs == (datetime(2024, 10, 27, 2, tzinfo=timezone.utc).timestamp(),)
    twice = [h for h in hours for _ in range(2)]  # two rows a time from the start: a file that writes times twice
    table = read_csv_table(_write(tmp_path / "t.csv", "\n".join(["time,p,q"] + _rows(22, time=lambda i: twice[i]))
                                  + "\n"))
    assert table.clock_changes == 0 and table.times[-1] - table.times[0] == 9 * 3600.0


def test_trailing_separators_and_blank_or_repeated_names(tmp_path: Path) -> None:
    lines = ["time;Value;Value;;Current;"] + [f"2024-03-04 08:00:{i:02d};1;2;3;4;" for i in range(5)]
    table = read_csv_table(_write(tmp_path / "r.csv", "\n".join(lines) + "\n"))
    assert table.layout.header == ["time", "Value", "Value_2", "column 4", "Current"]
    assert table.numeric["Value_2"].tolist() == [2.0] * 5 and table.ragged == 0
    assert "'Value' -> 'Value_2'" in table.layout.describe()


def test_a_time_column_named_in_part_with_epoch_milliseconds(tmp_path: Path) -> None:
    lines = ["t_stamp,Pressure"] + [f"{1709539200000 + 1000 * i},{4.2 + 0.01 * i:.2f}" for i in range(20)]
    table = read_csv_table(_write(tmp_path / "ignition.csv", "\n".join(lines) + "\n"))
    assert table.layout.time_column == "t_stamp" and list(table.numeric) == ["Pressure"]
    assert table.times[0] == 1709539200.0 and np.diff(table.times).tolist() == [1.0] * 19
    plain = read_csv_table(_write(tmp_path / "counter.csv", "step,Pressure\n" + "".join(f"{i},1\n" for i in range(5))))
    assert plain.layout.time_column is None  # a number column is a time only when its name says so


@pytest.mark.parametrize("cell, decimal, value", [("0,125", ",", 0.125), ("1,250", ",", 1.25), ("12.345", ".", 12.345)])
def test_three_decimals_are_not_taken_for_thousands(tmp_path: Path, cell: str, decimal: str, value: float) -> None:
    lines = ["time;p"] + [f"2024-03-04 08:00:{i:02d};{cell}" for i in range(10)]
    table = read_csv_table(_write(tmp_path / "d.csv", "\n".join(lines) + "\n"))
    assert (table.layout.decimal, table.layout.thousands) == (decimal, None)
    assert table.numeric["p"][0] == value


def test_a_header_one_name_short_stays_the_header(tmp_path: Path) -> None:
    lines = ["time,p,q"] + [f"2024-03-04 08:00:{i:02d},1,2,3" for i in range(10)]
    with pytest.raises(BadInput, match="no rows"):  # every row is ragged: said, not read under data as names
        read_csv_table(_write(tmp_path / "short.csv", "\n".join(lines) + "\n"))


@pytest.mark.parametrize("sep, cell", [(",", "{:.8f}"), (";", "{:.8f}")])
def test_excel_serial_days_in_a_time_column(tmp_path: Path, sep: str, cell: str) -> None:
    days = [45355.5 + i / 86400 for i in range(10)]  # 2024-03-04 12:00:00 and on, a second apart
    texts = [cell.format(d) if sep == "," else cell.format(d).replace(".", ",") for d in days]
    lines = [f"Datum{sep}p"] + [f"{t}{sep}{'1,5' if sep == ';' else '1.5'}" for t in texts]
    table = read_csv_table(_write(tmp_path / "x.csv", "\n".join(lines) + "\n"))
    assert table.layout.time_column == "Datum" and table.layout.excel_days
    assert table.times[0] == pytest.approx(1709553600.0, abs=1e-3) and list(table.numeric) == ["p"]
    assert np.diff(table.times) == pytest.approx(np.ones(9), abs=1e-3)


@pytest.mark.parametrize("text, expected", [
    ("2024-03-04 08:00:00 UTC", 1709539200.0), ("2024-10-27 02:30:00 CEST", 1729989000.0),
    ("2024-10-27 02:30:00 CET", 1729992600.0), ("03/13/2024 11:59:59 PM EST", 1710392399.0),
    ("2024.03.04 08:00:00", 1709539200.0), ("04.03.2024 08:00:00,250", 1709539200.25),
    ("04-Mar-2024 08:00:00", 1709539200.0), ("03/13/24 11:59 PM", 1710374340.0)])
def test_more_time_formats_plants_write(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected)


def test_zone_names_are_not_wall_clock_times(tmp_path: Path) -> None:
    stamps = [f"2024-10-27 02:{m:02d}:00 CEST" for m in range(30, 60, 10)] + [f"2024-10-27 02:{m:02d}:00 CET"
                                                                          for m in range(0, 30, 10)]
    table = read_csv_table(_write(tmp_path / "z.csv", "time,p\n" + "".join(f"{s},1\n" for s in stamps)))
    assert not table.layout.naive_times and table.clock_changes == 0
    assert np.diff(table.times).tolist() == [600.0] * 5


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_epoch_seconds_milli_micro_and_nanoseconds(tmp_path: Path, scale: int) -> None:
    # InfluxDB 1.x writes nanoseconds: before, they were read as milliseconds (a row every 1,000 s, year 55000)
    t0 = 1709539200
    text = "time,flow,pressure\n" + "".join(f"{(t0 + i) * scale},{120 + i},{4 + i}\n" for i in range(20))
    table = read_csv_table(_write(tmp_path / "epoch.csv", text))
    assert table.layout.time_column == "time" and table.times[0] == pytest.approx(t0)
    assert np.diff(table.times) == pytest.approx(np.ones(19))
    assert parse_time(str(t0 * scale)) == pytest.approx(t0)
    named = read_csv_table(_write(tmp_path / "t_stamp.csv", text.replace("time,", "t_stamp,")))
    assert named.layout.time_column == "t_stamp" and "t_stamp" not in named.numeric


def test_a_unit_written_after_each_number_is_dropped(tmp_path: Path) -> None:
    # Grafana's "formatted data" CSV: before, every column was text and fit had no feature left
    text = '"Time","flow","pressure","load"\n' + "".join(
        f'"2024-03-04 08:00:{i:02d}","{120 + i}.5 m³/h","{4 + i / 100:.2f} bar","{40 + i} %"\n' for i in range(20))
    table = read_csv_table(_write(tmp_path / "grafana.csv", text))
    assert table.layout.cell_units == {"flow": "m³/h", "pressure": "bar", "load": "%"}
    assert list(table.numeric) == ["flow", "pressure", "load"] and table.bad == {}
    assert table.numeric["flow"][2] == 122.5 and table.numeric["load"][19] == 59
    assert "a unit after the numbers in 3 column(s), dropped: flow [m³/h]" in table.layout.describe()
    de = read_csv_table(_write(tmp_path / "de.csv", "Zeit;Druck\n" + "".join(
        f"04.03.2024 08:00:{i:02d};{4 + i},5 bar\n" for i in range(20))))
    assert de.layout.decimal == "," and de.numeric["Druck"][1] == 5.5


def test_numbers_in_scientific_notation_keep_their_exponent(tmp_path: Path) -> None:
    # a totaliser logged with %g: one exponent in every cell was taken for a unit ('e+05'), values 1e5 times off
    text = "time,total,flow\n" + "".join(f"2024-03-04 08:00:{i:02d},{120340 + 7 * i:.4e},{1.5e-3 * (1 + i % 3):g}\n"
                                         for i in range(20))
    table = read_csv_table(_write(tmp_path / "g.csv", text))
    assert table.layout.cell_units == {} and table.bad == {}
    assert table.numeric["total"][0] == 120340.0 and table.numeric["flow"][1] == 0.003


def test_javas_date_to_string_is_a_time(tmp_path: Path) -> None:
    # Ignition's system.dataset.toCSV writes Date.toString(): before, the column was text and the file had no time
    text = "t_stamp,flow\n" + "".join(f"Mon Mar 04 08:00:{i:02d} CET 2024,{120 + i}\n" for i in range(20))
    table = read_csv_table(_write(tmp_path / "ignition.csv", text))
    assert table.layout.time_column == "t_stamp" and not table.layout.naive_times
    assert table.times[0] == datetime(2024, 3, 4, 7, 0, tzinfo=timezone.utc).timestamp()
    pst = datetime(2021, 1, 5, 19, 29, 49, tzinfo=timezone.utc).timestamp()
    assert parse_time("Tue Jan 05 11:29:49 PST 2021") == pst


def test_the_date_order_is_read_from_the_days_a_log_runs_through(tmp_path: Path) -> None:
    # a US Excel log of 4 to 6 March at one row a minute: no day above 12 tells; read day-first (the guess) its
    # times jumped a month at each midnight (3 April, 3 May...) and fit cut the data at each jump
    cells = [datetime(2024, 3, 4, 20, 0) + (datetime(2024, 1, 1, 0, 30) - datetime(2024, 1, 1)) * i for i in range(80)]
    text = "Date/Time,flow\n" + "".join(f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d},{i}\n"
                                        for i, t in enumerate(cells))
    table = read_csv_table(_write(tmp_path / "us.csv", text))
    assert table.layout.date_order.value == "month-first" and not table.layout.date_order_guessed
    assert np.diff(table.times).tolist() == [1800.0] * 79
    one_day = "Date/Time,flow\n" + "".join(f"3/4/2024 8:{i:02d},{i}\n" for i in range(20))
    assert read_csv_table(_write(tmp_path / "one.csv", one_day)).layout.date_order_guessed  # nothing tells


def test_a_milliseconds_column_is_part_of_the_time(tmp_path: Path) -> None:
    # FactoryTalk's Date, Time, Millitm at 200 ms: before, Millitm was a feature and five rows shared each time
    text = "Date,Time,Millitm,flow\n" + "".join(f"2024-03-04,08:00:{i // 5:02d},{i % 5 * 200},{i}\n" for i in range(20))
    table = read_csv_table(_write(tmp_path / "ft.csv", text))
    assert table.layout.ms_column == "Millitm" and list(table.numeric) == ["flow"]
    assert np.diff(table.times) == pytest.approx([0.2] * 19)
    assert "with the milliseconds in 'Millitm'" in table.layout.describe()
    speed = "Date,Time,flow,MS\n" + "".join(f"2024-03-04,08:00:{i:02d},{i},{900 + i}\n" for i in range(20))
    table = read_csv_table(_write(tmp_path / "speed.csv", speed))  # a motor speed 'MS', not beside the time
    assert table.layout.ms_column is None and list(table.numeric) == ["flow", "MS"]


def _flows(n: int, low: int = 960, high: int = 1040) -> list[int]:
    return [low + (i * 37) % (high - low) for i in range(n)]


def test_a_dot_in_a_file_of_decimal_commas_groups_thousands(tmp_path: Path) -> None:
    """987 and 1.012 l/h beside 2,5 bar: 1012, not 1.012 (the flow read a thousand times off, 1 .. 999)."""
    flows = _flows(40)
    lines = ["Zeit;Flow;Druck"] + [f"01.05.2024 08:00:{i % 60:02d};{f // 1000}.{f % 1000:03d};2,5" if f >= 1000
                                   else f"01.05.2024 08:00:{i % 60:02d};{f};2,5" for i, f in enumerate(flows)]
    table = read_csv_table(_write(tmp_path / "de.csv", "\n".join(lines) + "\n"))
    assert (table.layout.decimal, table.layout.thousands) == (",", ".")
    assert table.numeric["Flow"].tolist() == flows and table.numeric["Druck"][0] == 2.5


def test_integers_and_dotted_thousands_alone_are_one_range(tmp_path: Path) -> None:
    """No comma anywhere and a flow straddling 1000 (written 987, 1.012): the reading under which it is one range."""
    flows = _flows(40)
    lines = ["Zeit;Flow;Hub"] + [f"2024-05-01 08:00:{i % 60:02d};{f // 1000}.{f % 1000:03d};7" if f >= 1000
                                 else f"2024-05-01 08:00:{i % 60:02d};{f};7" for i, f in enumerate(flows)]
    table = read_csv_table(_write(tmp_path / "ints.csv", "\n".join(lines) + "\n"))
    assert table.layout.thousands == "." and table.numeric["Flow"].tolist() == flows


def test_the_marks_are_read_from_the_whole_file_when_the_first_rows_do_not_tell(tmp_path: Path) -> None:
    lines = ["Zeit;Flow;Hub"] + [f"2024-05-01 08:{i // 60:02d}:{i % 60:02d};{990 + i % 9};7" for i in range(200)]
    lines += ["2024-05-01 09:00:00;1.003;7", "2024-05-01 09:00:01;2,5;7"]
    table = read_csv_table(_write(tmp_path / "late.csv", "\n".join(lines) + "\n"))
    assert (table.layout.decimal, table.layout.thousands) == (",", ".")
    assert table.numeric["Flow"][-2:].tolist() == [1003.0, 2.5]


def test_three_decimals_everywhere_are_a_guess_and_said_so(tmp_path: Path) -> None:
    lines = ["time;p;q"] + [f"2024-03-04 08:00:{i:02d};1.{200 + i:03d};4" for i in range(30)]
    table = read_csv_table(_write(tmp_path / "guess.csv", "\n".join(lines) + "\n"))
    assert (table.layout.decimal, table.layout.thousands) == (".", None) and table.numeric["p"][0] == 1.2
    assert "'.' read as the decimal mark" in table.layout.describe() and "no number in the file tells" in \
        table.layout.describe()


@pytest.mark.parametrize("names, good, bad", [
    (["FIC101", "Quality", "PT102", "Quality"], "Good", "Bad"),  # PI DataLink: the value's attributes beside it
    (["FIC101 Value", "FIC101 Quality", "PT102 Value", "PT102 Quality"], "Good", "Bad Input"),
    (["FIC101", "FIC101.Q", "PT102", "PT102.Q"], "192", "0"),  # OPC DA quality codes
])
def test_a_quality_column_beside_each_value_blanks_bad_values(tmp_path: Path, names: list[str], good: str,
                                                               bad: str) -> None:
    """A value of bad quality (written 0 by the export) is a blank, held as any blank; qualities are no features."""
    lines = ["Timestamp," + ",".join(names)]
    for i in range(40):
        flow, q = ("0", bad) if i % 10 == 5 else (f"{1000 + i}.5", good)
        lines.append(f"2024-05-01 08:00:{i:02d},{flow},{q},2.5,{good}")
    path = _write(tmp_path / "q.csv", "\n".join(lines) + "\n")
    table = read_csv_table(path)
    assert list(table.numeric) == ["FIC101", "PT102"] and table.text_columns == {}  # the tags (see below)
    assert np.isnan(table.numeric["FIC101"][5]) and table.numeric["FIC101"][4] == 1004.5
    assert "a quality column beside 2 value column(s)" in table.layout.describe()
    assert ("renamed" in table.layout.describe()) is (names[0] != "FIC101")
    replayed = [row[1] for _, row in iter_rows(table.layout)]  # the replay's rows: the same blank
    assert replayed[5] == "" and replayed[4] == "1004.5"


def test_a_state_or_a_count_beside_a_value_is_no_quality(tmp_path: Path) -> None:
    lines = ["time,Flow,Status,Current,Q"] + [
        f"2024-05-01 08:00:{i:02d},{10 + i},{'Run' if i % 7 else 'Stop'},3,{i % 2}" for i in range(30)]
    table = read_csv_table(_write(tmp_path / "s.csv", "\n".join(lines) + "\n"))
    assert table.layout.quality == {} and list(table.numeric) == ["Flow", "Current", "Q"]
    assert "Status" in table.text_columns


@pytest.mark.parametrize("order", [("desc", "tag", "unit"), ("unit", "tag"), ("tag", "desc", "unit")])
def test_the_row_naming_the_time_column_names_the_columns(tmp_path: Path, order: tuple[str, ...]) -> None:
    """Historians write a tag row, a description row and a unit row in any order: the tags name the features
    (an MQTT topic carries the tag), whichever row comes first; the other rows are units and descriptions."""
    rows = {"tag": "Timestamp,FIC101,PT102", "desc": "Description,Discharge flow,Discharge pressure",
            "unit": "Units,l/h,bar"}
    lines = [rows[k] for k in order] + [f"2024-05-01 08:00:{i:02d},{1000 + i}.5,2.5" for i in range(20)]
    table = read_csv_table(_write(tmp_path / "h.csv", "\n".join(lines) + "\n"))
    assert table.layout.time_column == "Timestamp" and list(table.numeric) == ["FIC101", "PT102"]
    assert table.rows == 20 and table.numeric["FIC101"][0] == 1000.5
    assert table.layout.units["PT102"].endswith("bar") and "Timestamp" not in table.layout.units


def _pump_lines(n: int, start: int = 0, flow: float = 10.0) -> list[str]:
    return [f"2024-05-01 08:{(start + i) // 60:02d}:{(start + i) % 60:02d},{flow + i % 3},2.5" for i in range(n)]


@pytest.mark.parametrize("appended, rows", [
    (["", "Alarm log", "Timestamp,Tag,Message", "2024-05-01 08:00:05,PT102,high"], 30),  # another table
    (["", "Timestamp,Flow,Pressure", *_pump_lines(30, flow=50.0)], 30),  # another machine, the same columns
    (["", "Timestamp,Flow,Pressure", *_pump_lines(30, start=30)], 60),  # the next day's export joined: read on
    (["Timestamp,Flow,Pressure", *_pump_lines(30, start=30)], 60),
    (["", "Average,11.0,2.5", "Max,12.0,2.5"], 30),  # summary rows after a blank line: no measurements
])
def test_a_table_appended_to_the_file_is_not_read_as_data(tmp_path: Path, appended: list[str], rows: int) -> None:
    """Before: the alarm list's lines were ragged rows, and a second machine's rows were sorted into the first's
    (its times overlap: taken for a clock change), each row counted as the replay's stale or not_number."""
    path = _write(tmp_path / "two.csv", "\n".join(["Timestamp,Flow,Pressure", *_pump_lines(30), *appended]) + "\n")
    table = read_csv_table(path)
    assert table.rows == rows and table.ragged == 0 and table.bad == {} and table.bad_times == 0
    assert np.nanmax(table.numeric["Flow"]) == 12.0 and (np.diff(table.times) > 0).all()
    replayed = list(iter_rows(table.layout))
    assert len(replayed) == rows
    said = "the data ends on line 33" in table.layout.describe()
    assert said == (rows == 30)


def test_a_marker_line_between_days_does_not_end_the_data(tmp_path: Path) -> None:
    lines = ["Timestamp,Flow,Pressure", *_pump_lines(30), "", "Day 2", *_pump_lines(30, start=30)]
    table = read_csv_table(_write(tmp_path / "days.csv", "\n".join(lines) + "\n"))
    assert table.layout.table_end is None and table.rows == 60 and table.ragged == 1  # the marker, counted


def test_excel_text_formulas_and_error_values(tmp_path: Path) -> None:
    """``="2024-05-01 08:00:00"`` (a time kept from Excel's conversion) is the time; ``#DIV/0!`` in a computed
    column is a blank, held as any blank (before: the file had no time; the replay refused each such row)."""
    lines = ['="Timestamp",Flow,Efficiency'] + [f'="2024-05-01 08:00:{i:02d}",{10 + i},'
                                                + ("#DIV/0!" if i % 7 == 3 else f"0.{50 + i}") for i in range(30)]
    table = read_csv_table(_write(tmp_path / "x.csv", "\n".join(lines) + "\n"))
    assert table.layout.time_column == "Timestamp" and table.bad_times == 0 and table.times[1] - table.times[0] == 1
    assert table.bad == {} and table.missing["Efficiency"] == 4 and np.isnan(table.numeric["Efficiency"][3])
    assert [row[0] for _, row in iter_rows(table.layout)][:2] == ["2024-05-01 08:00:00", "2024-05-01 08:00:01"]


def test_a_time_of_day_written_with_dots_beside_its_date(tmp_path: Path) -> None:
    """Finnish, Danish and Italian exports write the clock 08.00.00: before, it was read as a date (8 January
    2000 in a row with 00 seconds, else nothing) and 2,280 rows in 3,000 were dropped."""
    lines = ["Date;Time;Flow"] + [f"2024/05/01;08.{i // 60:02d}.{i % 60:02d};{10 + i % 3},5" for i in range(90)]
    table = read_csv_table(_write(tmp_path / "fi.csv", "\n".join(lines) + "\n"))
    assert (table.layout.date_column, table.layout.time_column) == ("Date", "Time") and table.bad_times == 0
    assert table.times[0] == datetime(2024, 5, 1, 8, tzinfo=timezone.utc).timestamp()
    assert np.diff(table.times).tolist() == [1.0] * 89 and list(table.numeric) == ["Flow"]
    dated = read_csv_table(_write(tmp_path / "d.csv", "Datum;Wert\n01.05.24;1\n02.05.24;2\n"))
    assert dated.layout.time_column == "Datum" and dated.layout.date_column is None  # a dotted date stays a date


@pytest.mark.parametrize("name, hours", [("Time (UTC+01:00)", 1.0), ("Zeit [UTC+2]", 2.0), ("Time (GMT-5)", -5.0),
                                         ("Timestamp [UTC]", 0.0), ("TimeStampUTC", 0.0)])
def test_the_zone_in_the_time_column_s_name(tmp_path: Path, name: str, hours: float) -> None:
    """Naive times under ``Time (UTC+01:00)`` are an hour ahead of UTC: before, read as UTC (every alert an hour
    off) and run through the clock-change rules of local wall-clock times, which a fixed offset has none of."""
    lines = [f"{name},Flow"] + [f"01.05.2024 08:00:{i:02d},{10 + i}" for i in range(20)]
    table = read_csv_table(_write(tmp_path / "z.csv", "\n".join(lines) + "\n"))
    utc = datetime(2024, 5, 1, 8, tzinfo=timezone.utc).timestamp() - 3600.0 * hours
    assert table.times[0] == utc and not table.layout.naive_times
    row = next(iter_rows(table.layout))[1]
    assert parse_time(table.layout.time_text(row), table.layout.date_order) == utc  # the replay's reading
    assert "from the column's name" in table.layout.describe()


def test_swiss_thousands_marks(tmp_path: Path) -> None:
    """1'008.25 (Switzerland, Liechtenstein): before, the column was text and left out."""
    lines = ["Zeit;Flow;Druck"] + [f"01.05.2024 08:00:{i:02d};1'0{10 + i}.25;2.5" for i in range(20)]
    table = read_csv_table(_write(tmp_path / "ch.csv", "\n".join(lines) + "\n"))
    assert (table.layout.decimal, table.layout.thousands) == (".", "'") and table.numeric["Flow"][0] == 1010.25


def test_a_time_column_beside_each_tag_is_merged_on_the_times(tmp_path: Path) -> None:
    """PI DataLink's compressed data of two tags side by side, each on its own times: before, the second tag's
    values were read beside the first tag's times (its 3rd value, taken at 08:00:10, beside 08:00:02)."""
    flow = [("04-Mar-2024 08:00:00", "10"), ("04-Mar-2024 08:00:01", "11"), ("04-Mar-2024 08:00:02", "12"),
            ("04-Mar-2024 08:00:05", "13")]
    level = [("04-Mar-2024 08:00:00", "1.5"), ("04-Mar-2024 08:00:04", "1.6"), ("04-Mar-2024 08:00:10", "1.7")]
    lines = ["Flow Time,Flow,Level Time,Level"]
    for k in range(len(flow)):
        lines.append(",".join([*flow[k], *(level[k] if k < len(level) else ("", ""))]))
    table = read_csv_table(_write(tmp_path / "pi.csv", "\n".join(lines) + "\n"))
    t0 = datetime(2024, 3, 4, 8, tzinfo=timezone.utc).timestamp()
    assert (table.times - t0).tolist() == [0, 1, 2, 4, 5, 10] and list(table.numeric) == ["Flow", "Level"]
    assert table.numeric["Flow"].tolist() == [10, 11, 12, 12, 13, 13]
    assert table.numeric["Level"].tolist() == [1.5, 1.5, 1.5, 1.6, 1.6, 1.7]
    assert "a time column beside each of 2 tags" in table.layout.describe()
    rows = [row for _, row in iter_rows(table.layout)]  # the replay's rows
    assert rows[3] == ["2024-03-04T08:00:04", "12", "1.6"]
    assert parse_time(table.layout.time_text(rows[3]), table.layout.date_order) == t0 + 4


def _dotted_only(path: Path, extra: str = "") -> Path:
    """A ';' file whose only marked numbers are 1.234: nothing in it tells a decimal point from a thousands mark."""
    lines = ["time;Flow;Hub"] + [f"2024-03-04 08:00:{i:02d};1.{200 + i:03d};7" for i in range(30)]
    return _write(path, "\n".join(lines) + "\n" + extra)


def test_the_guess_names_the_option_that_says_otherwise(tmp_path: Path) -> None:
    layout = sniff_layout(_dotted_only(tmp_path / "guess.csv"))
    assert layout.decimal == "." and not layout.decimal_told
    assert "edgewatch fit --decimal ," in layout.describe() and "replay:FILE?decimal=," in layout.describe()


@pytest.mark.parametrize("decimal, flow, thousands", [(",", 1200.0, "."), (".", 1.2, ",")])
def test_a_given_decimal_mark_reads_what_the_file_cannot_tell(tmp_path: Path, decimal: str, flow: float,
                                                              thousands: str) -> None:
    path = _dotted_only(tmp_path / "told.csv")
    table = read_csv_table(path, sniff_layout(path, decimal=decimal))
    assert (table.layout.decimal, table.layout.thousands) == (decimal, thousands)
    assert table.numeric["Flow"][0] == flow and table.numeric["Hub"][0] == 7
    assert table.layout.decimal_note is None and "(as given)" in table.layout.describe()
    assert read_csv_table(path).numeric["Flow"][0] == 1.2  # not given: found from the file, the guess


def test_with_a_given_decimal_point_a_comma_groups_thousands(tmp_path: Path) -> None:
    lines = ["time;Flow"] + [f"2024-03-04 08:00:{i:02d};{'1,2' if i % 2 else '9'}{i:02d}{'.5' if i % 3 else ''}"
                             for i in range(30)]
    path = _write(tmp_path / "us.csv", "\n".join(lines) + "\n")
    table = read_csv_table(path, sniff_layout(path, decimal="."))
    assert table.numeric["Flow"][:4].tolist() == [900, 1201.5, 902.5, 1203]


@pytest.mark.parametrize("decimal, cell, column", [(",", "12.5", "Flow"), (".", "12,5", "Hub")])
def test_a_given_decimal_mark_the_file_contradicts_is_refused_naming_the_cell_and_its_line(
        tmp_path: Path, decimal: str, cell: str, column: str) -> None:
    """12.5 cannot be a thousands group: read with a decimal comma it would be text, the column left out."""
    row = f"2024-03-04 08:01:00;{cell};7\n" if column == "Flow" else f"2024-03-04 08:01:00;1.300;{cell}\n"
    path = _dotted_only(tmp_path / "mixed.csv", row)
    with pytest.raises(BadInput, match=rf"line 32: '{re.escape(cell)}' in the column '{column}' .*'{decimal}'"):
        sniff_layout(path, decimal=decimal)
    assert sniff_layout(path).decimal == ("." if decimal == "," else ",")  # found from the file, it reads


def test_a_given_decimal_mark_leaves_dotted_dates_alone(tmp_path: Path) -> None:
    lines = ["Datum;Zeit;Flow"] + [f"04.03.2024;08:00:{i:02d};1.{200 + i:03d}" for i in range(30)]
    path = _write(tmp_path / "de.csv", "\n".join(lines) + "\n")
    table = read_csv_table(path, sniff_layout(path, decimal=","))
    assert table.numeric["Flow"][0] == 1200 and table.bad_times == 0


def test_a_decimal_mark_other_than_a_point_or_a_comma_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"the decimal mark is '\.' or ','"):
        sniff_layout(_dotted_only(tmp_path / "x.csv"), decimal=";")


@pytest.mark.parametrize("names, features", [
    (["FIC101 Value", "FIC101 Quality", "PT102.Val", "PT102.Q"], ["FIC101", "PT102"]),
    (["FIC101 Value", "Quality", "PT102_Value", "Quality"], ["FIC101", "PT102"]),
    (["FIC101.PV", "FIC101.Q", "PT102.PV", "PT102.Q"], ["FIC101.PV", "PT102.PV"]),  # PV: the DCS's parameter
    (["FIC101 Value", "FIC101 Quality", "FIC101", "Quality"], ["FIC101 Value", "FIC101"]),  # the tag is taken
])
def test_a_value_beside_its_quality_is_the_feature_named_after_its_tag(tmp_path: Path, names: list[str],
                                                                      features: list[str]) -> None:
    """'FIC101 Value' + 'FIC101 Quality' are two attributes of the tag FIC101, the name the plant's MQTT topics
    and OPC UA nodes give it (the feature was 'FIC101 Value', which the topic plant/FIC101 never matched)."""
    lines = ["Timestamp," + ",".join(names)]
    lines += [f"2024-05-01 08:00:{i:02d},{1000 + i}.5,Good,2.5,Good" for i in range(20)]
    lines += ["Timestamp," + ",".join(names)]  # a repeat of the header (exports joined) is still no row
    lines += [f"2024-05-01 08:01:{i:02d},{1000 + i}.5,Good,2.5,Good" for i in range(20)]
    table = read_csv_table(_write(tmp_path / "q.csv", "\n".join(lines) + "\n"))
    assert list(table.numeric) == features and table.rows == 40 and table.bad_times == 0
    if features[0] != names[0]:
        assert f"'{names[0]}' -> '{features[0]}'" in table.layout.describe()


def test_the_value_of_a_time_value_pair_is_named_after_its_tag(tmp_path: Path) -> None:
    lines = ["FIC101 Time,FIC101 Value,PT102 Time,PT102 Value"]
    lines += [f"2024-03-04 08:00:{i:02d},{10 + i},2024-03-04 08:00:{i:02d},{1.5 + i}" for i in range(10)]
    table = read_csv_table(_write(tmp_path / "pi.csv", "\n".join(lines) + "\n"))
    assert list(table.numeric) == ["FIC101", "PT102"] and table.numeric["PT102"][2] == 3.5


def test_in_a_comma_separated_file_a_given_decimal_point_is_checked_against_its_quoted_cells(tmp_path: Path) -> None:
    lines = ["time,Flow"] + [f'2024-03-04 08:00:{i:02d},"1,{200 + i:03d}.5"' for i in range(30)]
    path = _write(tmp_path / "us.csv", "\n".join(lines) + "\n")
    assert read_csv_table(path, sniff_layout(path, decimal=".")).numeric["Flow"][0] == 1200.5
    path = _write(tmp_path / "us.csv", "\n".join(lines) + '\n2024-03-04 08:01:00,"12,5"\n')
    with pytest.raises(BadInput, match=r"line 32: '12,5' in the column 'Flow'"):
        sniff_layout(path, decimal=".")
