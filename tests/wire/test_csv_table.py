"""wire/csv_table: the CSV files plants export, read without being told how they are written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.errors import BadInput
from edgewatch.wire.csv_table import parse_time, parse_times, read_csv_table, sniff_layout


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
    assert layout.time_column == "Zeitstempel" and not layout.time_named  # found by its dates
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
