"""Reading a multivariate series from a CSV file with a header row.

Every column is a numeric feature except a time column named
``timestamp``, ``time``, ``ts``, ``datetime`` or ``date`` (any case) and the
label columns ``anomaly`` and ``changepoint`` (SKAB's), which are ignored:
models see values only, in row order. The separator is ``,`` unless the
header holds ``;`` and no ``,`` (a SKAB file as it is).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

TIME_COLUMNS = frozenset({"timestamp", "time", "ts", "datetime", "date"})
LABEL_COLUMNS = frozenset({"anomaly", "changepoint"})


@dataclass
class Series:
    features: list[str]
    values: np.ndarray  # [T, F] float32
    source: str


def read_series_csv(path: str | os.PathLike[str], max_rows: int | None = None) -> Series:
    """Read feature columns as float32 ``[T, F]``; fail clearly on text, NaN or an empty file."""
    src = Path(path)
    if not src.is_file():
        raise BadInput(f"data file {src} does not exist (record one with 'edgewatch simulate --record {src}')")
    with src.open(newline="") as fh:
        first = fh.readline()
    sep = ";" if ";" in first and "," not in first else ","
    header = next(csv.reader([first], delimiter=sep), None)
    if not header:
        raise BadInput(f"{src} is empty; expected a header row of feature names")
    names = [h.strip() for h in header]
    keep = [i for i, n in enumerate(names) if n.lower() not in TIME_COLUMNS | LABEL_COLUMNS]
    if not keep:
        raise BadInput(f"{src} has no feature columns besides time (header: {names})")
    try:
        values = np.loadtxt(src, delimiter=sep, skiprows=1, usecols=keep, dtype=np.float32,
                            max_rows=max_rows, ndmin=2)
    except ValueError as exc:
        raise BadInput(f"{src}: feature columns {[names[i] for i in keep]} must be numeric: {exc}") from exc
    if len(values) == 0:
        raise BadInput(f"{src} has a header but no rows")
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).any(axis=1).sum())
        raise BadInput(f"{src}: {bad} rows hold NaN or inf values; clean or drop them first")
    return Series([names[i] for i in keep], values, str(src))
