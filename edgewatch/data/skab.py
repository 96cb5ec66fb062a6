"""Reading the Skoltech Anomaly Benchmark folder (SKAB v0.9) as the benchmark defines it.

Layout: ``data/<group>/<n>.csv``, ``;``-separated, header
``datetime;<8 sensors>;anomaly;changepoint``. Each file is one experiment;
by the benchmark's protocol (SKAB ``core/utils.py``) its first 400 rows are
the training part and the rest the test part. ``anomaly-free/`` holds a
run without faults and is not scored. The ``datetime`` strings are kept
exactly as written, so a predictions file can repeat them.

NumPy only (the agent may replay these files).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

TRAIN_ROWS = 400
LABEL_COLUMNS = ("anomaly", "changepoint")
TIME_COLUMN = "datetime"
FREE_GROUP = "anomaly-free"


@dataclass
class SkabFile:
    group: str
    name: str  # "<n>" without .csv
    features: list[str]
    datetimes: list[str]  # as written in the file
    values: np.ndarray  # [T, F] float32
    anomaly: np.ndarray  # [T] int8
    changepoint: np.ndarray  # [T] int8
    path: Path

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"

    def split(self, train_rows: int = TRAIN_ROWS) -> int:
        """Where the test part starts; fails when the file has no test rows."""
        if len(self.values) <= train_rows:
            raise BadInput(f"SKAB file {self.path} has {len(self.values)} rows, none after the {train_rows} "
                           "training rows")
        return train_rows


def default_skab_dir() -> Path:
    """``../shared/datasets/skab`` beside the repository, or ``$EDGEWATCH_DATASETS/skab``."""
    env = os.environ.get("EDGEWATCH_DATASETS")
    if env:
        return Path(env) / "skab"
    return Path(__file__).resolve().parents[3] / "shared" / "datasets" / "skab"


def read_skab_file(path: str | os.PathLike[str], group: str | None = None) -> SkabFile:
    """One experiment file; fails with :class:`BadInput` on a missing column, text or NaN in a sensor."""
    src = Path(path)
    try:
        with src.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter=";"))
    except OSError as exc:
        raise BadInput(f"cannot read SKAB file {src}: {exc}") from exc
    if not rows or TIME_COLUMN not in rows[0]:
        raise BadInput(f"{src} is not a SKAB file: expected a ';'-separated header with '{TIME_COLUMN}'")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if r]
    t_col = header.index(TIME_COLUMN)
    label = {c: header.index(c) if c in header else None for c in LABEL_COLUMNS}
    feat = [i for i, h in enumerate(header) if i != t_col and h not in LABEL_COLUMNS]
    bad = next((j for j, r in enumerate(body) if len(r) != len(header)), None)
    if bad is not None:
        raise BadInput(f"{src} row {bad + 2} has {len(body[bad])} fields, the header {len(header)}")
    try:
        values = np.array([[float(r[i]) for i in feat] for r in body], dtype=np.float32).reshape(len(body), len(feat))
        labels = {c: (np.array([float(r[i]) for r in body]) > 0.5).astype(np.int8) if i is not None
                  else np.zeros(len(body), np.int8) for c, i in label.items()}
    except ValueError as exc:
        raise BadInput(f"{src}: a sensor or label value is not a number: {exc}") from exc
    if not np.isfinite(values).all():
        raise BadInput(f"{src}: sensor values hold NaN or inf")
    return SkabFile(group or src.parent.name, src.stem, [header[i] for i in feat], [r[t_col] for r in body],
                    values, labels["anomaly"], labels["changepoint"], src)


def _order(p: Path) -> tuple[int, str]:
    return (int(p.stem), "") if p.stem.isdigit() else (1 << 30, p.stem)


def load_skab(root: str | os.PathLike[str], groups: list[str] | None = None) -> list[SkabFile]:
    """Every labelled experiment under ``root/data`` (or ``root`` itself), grouped and in numeric order.

    The anomaly-free run is left out (the benchmark scores only the
    experiments). Fails when the folder holds no experiment.
    """
    base = Path(root)
    data = base / "data" if (base / "data").is_dir() else base
    if not data.is_dir():
        raise BadInput(f"SKAB folder {base} does not exist (expected data/<group>/<n>.csv)")
    found = sorted(d.name for d in data.iterdir() if d.is_dir() and d.name != FREE_GROUP)
    if groups:
        missing = sorted(set(groups) - set(found))
        if missing:
            raise BadInput(f"SKAB groups {missing} are not in {data} (it has {found})")
        found = [g for g in found if g in groups]
    files = [read_skab_file(p, g) for g in found for p in sorted((data / g).glob("*.csv"), key=_order)]
    if not files:
        raise BadInput(f"no SKAB experiment files under {data} (expected data/<group>/<n>.csv)")
    return files
