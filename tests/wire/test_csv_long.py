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
