"""Reading the two batches a drift report compares: a numeric table or a set of images."""

from __future__ import annotations

import csv
import enum
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

IMAGE_SUFFIXES = (".gz", ".npy", ".idx", "-ubyte")


class InputKind(str, enum.Enum):
    TABLE = "table"
    IMAGES = "images"


@dataclass
class Batch:
    kind: InputKind
    values: np.ndarray  # [n, n_features] for a table, [n, rows, cols] pixels 0-255 for images
    features: list[str]
    source: str


def kind_of(path: str | os.PathLike[str]) -> InputKind:
    """CSV files are tables; idx (``.gz``, ``-ubyte``) and ``.npy`` files are images."""
    name = Path(path).name.lower()
    if name.endswith(".csv"):
        return InputKind.TABLE
    if name.endswith(IMAGE_SUFFIXES):
        return InputKind.IMAGES
    raise BadInput(f"cannot tell what {path} holds: use a .csv table, or images as idx (.gz) or .npy")


def read_table(path: str | os.PathLike[str]) -> Batch:
    """A CSV with a header; keeps the columns that are numeric in every row.

    Non-numeric columns (timestamps, labels as text) are dropped and named in
    the error if nothing numeric remains. Empty cells make a column non-numeric.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"table {p} does not exist")
    with open(p, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise BadInput(f"{p} needs a header line and at least one row")
    header, body = rows[0], [r for r in rows[1:] if r]
    if any(len(r) != len(header) for r in body):
        raise BadInput(f"{p}: some rows do not have {len(header)} cells like the header")
    keep, cols = [], []
    for j, name in enumerate(header):
        try:
            col = np.array([float(r[j]) for r in body])
        except ValueError:
            continue
        if np.isfinite(col).all():
            keep.append(name.strip())
            cols.append(col)
    if not cols:
        raise BadInput(f"{p} has no numeric column (columns: {', '.join(header)})")
    return Batch(InputKind.TABLE, np.stack(cols, axis=1), keep, str(p))


def read_images(path: str | os.PathLike[str]) -> Batch:
    from edgewatch.data.images import load_images

    x = load_images(path)
    return Batch(InputKind.IMAGES, x, [f"px{i}" for i in range(x.shape[1] * x.shape[2])], str(path))


def read_batch(path: str | os.PathLike[str]) -> Batch:
    return read_table(path) if kind_of(path) is InputKind.TABLE else read_images(path)


def align(reference: Batch, current: Batch) -> tuple[Batch, Batch]:
    """Check the two batches can be compared; for tables keep the columns both have."""
    if reference.kind is not current.kind:
        raise BadInput(f"cannot compare {reference.kind.value} ({reference.source}) with "
                       f"{current.kind.value} ({current.source})")
    if reference.kind is InputKind.IMAGES:
        if reference.values.shape[1:] != current.values.shape[1:]:
            raise BadInput(f"image sizes differ: {reference.values.shape[1:]} and {current.values.shape[1:]}")
        return reference, current
    common = [f for f in reference.features if f in set(current.features)]
    if not common:
        raise BadInput(f"{reference.source} and {current.source} share no numeric column")
    ri = [reference.features.index(f) for f in common]
    ci = [current.features.index(f) for f in common]
    return (Batch(reference.kind, reference.values[:, ri], common, reference.source),
            Batch(current.kind, current.values[:, ci], common, current.source))
