"""A historian's long export (Tag, Timestamp, Value) pivoted to one column per tag (edgewatch/wire/csv_long.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgewatch.wire.csv_long import LongFormat, long_format, read_long
from edgewatch.wire.csv_table import read_csv_table


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_long_export_is_found_and_pivoted_whatever_its_row_order(tmp_path: Path) -> None:
    cells = [(tag, f"2024-03-04 08:00:{i:02d}", f"{v + i}") for i in range(20) for tag, v in (("a", 1), ("b", 100))]
    tables = []
    for name, order in (("time-major", cells), ("tag-blocks", sorted(cells))):
        kept = [c for c in order if (c[0], c[1][-2:]) != ("b", "05")]  # b has no value at 08:00:05
        text = "TagName,DateTime,Value\n" + "".join(f"{t},{s},{v}\n" for t, s, v in kept)
        path = _write(tmp_path / f"{name}.csv", text)
        table = read_csv_table(path)
        long = long_format(table)
        assert long == LongFormat("TagName", "Value", ["a", "b"])
        tables.append(read_long(table.layout, long))
    for wide in tables:
        assert wide.rows == 20 and np.diff(wide.times).tolist() == [1.0] * 19
        assert wide.numeric["a"].tolist() == [1.0 + i for i in range(20)]
        assert math.isnan(wide.numeric["b"][5]) and wide.missing == {"a": 0, "b": 1}
    status = _write(tmp_path / "status.csv", "time,p,state\n" + "".join(
        f"2024-03-04 08:00:{i:02d},{i},{'ON' if i % 2 else 'OFF'}\n" for i in range(20)))
    assert long_format(read_csv_table(status)) is None  # one row per time: a state column, not tags


def _wide(path: Path) -> tuple[LongFormat | None, object]:
    table = read_csv_table(path)
    long = long_format(table)
    return long, (read_long(table.layout, long) if long is not None else table)


def test_influxdb2_annotated_csv_is_pivoted_by_its_field_column(tmp_path: Path) -> None:
    # the #group/#datatype/#default rows are as wide as the header: before, '#group' was taken as the header
    head = ("#group,false,false,true,true,false,false,true,true\n#datatype,string,long,dateTime:RFC3339,"
            "dateTime:RFC3339,dateTime:RFC3339,double,string,string\n#default,_result,,,,,,,\n"
            ",result,table,_start,_stop,_time,_value,_field,_measurement\n")
    rows = "".join(f",,{k},2024-03-04T08:00:00Z,2024-03-04T09:00:00Z,2024-03-04T08:00:{i:02d}Z,{v + i},{f},pump\n"
                   for k, (f, v) in enumerate((("flow", 120), ("pressure", 4))) for i in range(20))
    long, wide = _wide(_write(tmp_path / "influx.csv", head + rows + "\n"))
    assert long is not None and (long.tag_column, long.value_column) == ("_field", "_value")
    assert list(wide.numeric) == ["flow", "pressure"] and wide.rows == 20
    assert wide.numeric["pressure"][3] == 7.0


def test_wincc_and_kepware_long_logs_with_more_numeric_columns_are_pivoted(tmp_path: Path) -> None:
    # WinCC: Validity and Time_ms are numeric too; before, VarValue became one feature mixing every tag
    wincc = '"VarName";"TimeString";"VarValue";"Validity";"Time_ms"\n' + "".join(
        f'"{tag}";"04.03.2024 08:00:{i:02d}";{v + i},5;1;{45355333333 + 11 * i},3333\n'
        for i in range(20) for tag, v in (("Flow", 120), ("Pressure", 4))) + '"$RT_OFF$";"";"";"";""\n'
    long, wide = _wide(_write(tmp_path / "wincc.csv", wincc))
    assert long is not None and (long.tag_column, long.value_column) == ("VarName", "VarValue")
    assert list(wide.numeric) == ["Flow", "Pressure"] and wide.numeric["Flow"][2] == 122.5 and wide.rows == 20
    kep = "_NAME,_NUMERICID,_VALUE,_TIMESTAMP,_QUALITY\n" + "".join(
        f"Ch1.Pump.{tag},{k},{v + i},2024-03-04 08:00:{i:02d}.000,192\n"
        for i in range(20) for k, (tag, v) in enumerate((("flow", 120), ("pressure", 4), ("current", 30))))
    long, wide = _wide(_write(tmp_path / "kepware.csv", kep))
    assert long is not None and long.value_column == "_VALUE"
    assert list(wide.numeric) == ["Ch1.Pump.current", "Ch1.Pump.flow", "Ch1.Pump.pressure"] and wide.rows == 20


def test_tags_on_their_own_times_are_put_on_a_grid_of_their_step(tmp_path: Path) -> None:
    # Home Assistant writes each state when it came: no two tags share a time, and before they were one feature
    lines = ["entity_id,state,last_changed"]
    for tag, v, lag in (("sensor.flow", 120, 1.3), ("sensor.pressure", 4, 6.7)):
        lines += [f"{tag},{'unavailable' if i == 7 else v + i},2024-03-04T08:{i // 6:02d}:{i % 6 * 10 + lag:04.1f}Z"
                  for i in range(30)]
    long, wide = _wide(_write(tmp_path / "history.csv", "\n".join(lines) + "\n"))
    assert long is not None and (long.tag_column, long.value_column) == ("entity_id", "state")
    assert wide.grid_step == 10.0 and wide.rows == 30 and np.diff(wide.times).tolist() == [10.0] * 29
    assert wide.numeric["sensor.flow"][:3].tolist() == [120, 121, 122] and math.isnan(wide.numeric["sensor.flow"][7])
    assert wide.numeric["sensor.pressure"][29] == 33


def test_factorytalk_tag_indices_are_named_from_the_tagname_file_beside_the_log(tmp_path: Path) -> None:
    log = "Date,Time,Millitm,TagIndex,Value,Status,Marker\n" + "".join(
        f"03/04/2024,08:00:{i:02d},0,{k},{v + i},,\n" for i in range(20) for k, v in enumerate((120, 4)))
    path = _write(tmp_path / "log.csv", log)
    long, wide = _wide(path)
    assert long is not None and (long.tag_column, long.value_column) == ("TagIndex", "Value")
    assert list(wide.numeric) == ["TagIndex 0", "TagIndex 1"] and wide.numeric["TagIndex 1"][5] == 9
    _write(tmp_path / "log (Tagname).csv",
           "Tagname,TTagIndex,TType,TDataType\nPump\\Flow,0,1,2\nPump\\Pressure,1,1,2\n")
    long, wide = _wide(path)
    assert list(wide.numeric) == ["Pump\\Flow", "Pump\\Pressure"] and wide.rows == 20


def test_a_wide_export_with_a_name_and_a_value_column_is_not_pivoted(tmp_path: Path) -> None:
    # a batch log: the product's name, a 'Value' and a pressure measured every row; pivoted on 'Name', the
    # pressure would be lost and the values split by product
    text = "Timestamp,Name,Value,Pressure\n" + "".join(
        f"2024-03-04 08:00:{i:02d},{'A' if i < 10 else 'B'},{i},{4 + i / 10}\n" for i in range(20))
    assert long_format(read_csv_table(_write(tmp_path / "batch.csv", text))) is None


def test_an_hourly_long_export_through_the_night_is_no_clock_change(tmp_path: Path) -> None:
    # every time has a row per tag: the second tag's row at 02:00 is not the autumn repeat of a wide hourly file
    text = "Tag,Timestamp,Value\n" + "".join(f"{tag},2024-06-0{1 + h // 24} {h % 24:02d}:00:00,{v + h}\n"
                                              for h in range(48) for tag, v in (("a", 1), ("b", 100)))
    table = read_csv_table(_write(tmp_path / "night.csv", text))
    wide = read_long(table.layout, long_format(table))
    assert wide.clock_changes == 0 and wide.rows == 48 and np.diff(wide.times).tolist() == [3600.0] * 47
