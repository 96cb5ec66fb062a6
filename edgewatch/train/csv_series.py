"""Reading a multivariate series from a CSV file for the ``train`` and ``export`` commands.

The file is read by :mod:`edgewatch.wire.csv_table`, as ``edgewatch fit``
reads it: the separator, decimal mark and time column are sniffed, label
columns (``anomaly``, ``changepoint``) are never features. Every numeric
column is a feature, in file order; text columns are left out and blank
cells take the last value of their column, both said in ``notes`` for the
command to print (the training commands refused them before, so a plant's
export failed at the first text column or blank). Rows before every
column has a value are dropped. Models see values only, in row order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.wire.csv_table import fill_forward, read_csv_table


@dataclass
class Series:
    features: list[str]
    values: np.ndarray  # [T, F] float32
    source: str
    notes: list[str] = field(default_factory=list)  # what reading did that the user should know


def read_series_csv(path: str | os.PathLike[str], max_rows: int | None = None) -> Series:
    """Feature columns as float32 ``[T, F]``; fails clearly when no numeric column or no complete row is left."""
    src = Path(path)
    if not src.is_file():
        raise BadInput(f"data file {src} does not exist (record one with 'edgewatch simulate --record {src}')")
    table = read_csv_table(src, max_rows=max_rows)
    features = list(table.numeric)
    if not features:
        raise BadInput(f"{src} has no numeric feature column (header: {table.layout.header}; text: "
                       f"{sorted(table.text_columns) or 'none'})")
    notes = [f"left out text column {name!r} (e.g. {example!r})" for name, example in table.text_columns.items()]
    x, filled = fill_forward(np.stack([table.numeric[f] for f in features], axis=1))
    if filled.any():
        notes.append("filled " + ", ".join(f"{n:,} {f}" for f, n in zip(features, filled.tolist()) if n)
                     + " blank cell(s) from the last value")
    complete = ~np.isnan(x).any(axis=1)
    if not complete.any():
        raise BadInput(f"{src}: no row has a value in every feature column {features}")
    if not complete.all():
        notes.append(f"dropped {int((~complete).sum()):,} row(s) before every column had a value")
    return Series(features, x[complete].astype(np.float32), str(src), notes)
