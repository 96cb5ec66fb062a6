"""Reading the Numenta Anomaly Benchmark folder (data, labelled windows, profiles).

The folder layout is NAB's own: ``data/<category>/<name>.csv``,
``labels/combined_windows.json`` and ``config/profiles.json``. The CSV files
have quirks that a naive reader trips on: CRLF line endings, no final
newline, repeated timestamps and one step backwards in time. So rows are
kept in file order (the order NAB scores them in) and timestamps are never
assumed sorted or unique.

Numpy only: the agent side may read NAB files too (a CSV replay).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

PROBATION_PERCENT = 0.15
PROBATION_MAX_ROWS = 750  # 0.15 * 5000, as NAB writes it


@dataclass
class CostProfile:
    """One NAB scoring profile: the reward of a detected window and the costs of mistakes."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0  # carried for completeness; NAB's score does not use it


STANDARD_PROFILES: tuple[CostProfile, ...] = (
    CostProfile("standard", 1.0, 0.11, 1.0),
    CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass
class NabFile:
    """One series with its anomaly windows as row index ranges (inclusive)."""

    key: str  # "<category>/<name>.csv", the key of NAB's label files
    timestamps: np.ndarray  # datetime64[s], file order
    values: np.ndarray  # float64
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def probation(self) -> int:
        return probationary_length(len(self.values))

    def seconds(self) -> np.ndarray:
        """Each row's time in seconds since the epoch (what an agent's messages carry)."""
        return self.timestamps.astype("datetime64[s]").astype(np.float64)

    def labels(self) -> np.ndarray:
        """0/1 per row: inside an anomaly window or not (for the point-wise metrics)."""
        out = np.zeros(len(self.values), dtype=np.int8)
        for a, b in self.windows:
            out[a:b + 1] = 1
        return out


def probationary_length(n_rows: int) -> int:
    """Rows at the start of a file that NAB does not score: a detector learns there."""
    return int(min(np.floor(PROBATION_PERCENT * n_rows), PROBATION_MAX_ROWS))


def default_nab_dir() -> Path:
    """``../shared/datasets/nab`` beside the repository, or ``$EDGEWATCH_DATASETS/nab``."""
    env = os.environ.get("EDGEWATCH_DATASETS")
    if env:
        return Path(env) / "nab"
    return Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab"


def read_series(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values of one NAB CSV, in file order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read NAB file {path}: {exc}") from exc
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].lower().startswith("timestamp"):
        raise BadInput(f"{path} is not a NAB data file: expected a 'timestamp,value' header")
    stamps: list[str] = []
    values: list[float] = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        if len(parts) < 2:
            raise BadInput(f"{path}:{lineno}: expected 'timestamp,value', got {line[:80]!r}")
        stamps.append(parts[0].strip())
        try:
            values.append(float(parts[1]))
        except ValueError as exc:
            raise BadInput(f"{path}:{lineno}: value {parts[1][:40]!r} is not a number") from exc
    try:
        ts = np.array(stamps, dtype="datetime64[s]")
    except ValueError as exc:
        raise BadInput(f"{path}: unreadable timestamp ({exc})") from exc
    return ts, np.asarray(values, dtype=np.float64)


def window_rows(timestamps: np.ndarray, start: np.datetime64, end: np.datetime64) -> tuple[int, int]:
    """Row range of a labelled window: the first row stamped at its start and its end.

    NAB matches window limits to rows by exact timestamp (first occurrence);
    when a limit falls between rows we take the rows inside the limits.
    """
    hit_a = np.flatnonzero(timestamps == start)
    hit_b = np.flatnonzero(timestamps == end)
    inside = np.flatnonzero((timestamps >= start) & (timestamps <= end))
    a = int(hit_a[0]) if hit_a.size else (int(inside[0]) if inside.size else -1)
    b = int(hit_b[0]) if hit_b.size else (int(inside[-1]) if inside.size else -1)
    if a < 0 or b < a:
        raise BadInput(f"anomaly window {start} .. {end} matches no rows")
    return a, b


def _stamp(text: str) -> np.datetime64:
    return np.datetime64(text.replace(" ", "T").split(".")[0], "s")


def read_windows(root: str | os.PathLike[str]) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    path = Path(root) / "labels" / "combined_windows.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read NAB windows {path}: {exc}; is --data the NAB folder "
                       "(with data/, labels/, config/)?") from exc
    return {k: [(_stamp(a), _stamp(b)) for a, b in v] for k, v in raw.items()}


def read_profiles(root: str | os.PathLike[str]) -> tuple[CostProfile, ...]:
    """The folder's ``config/profiles.json``, or NAB's three standard profiles if it has none."""
    path = Path(root) / "config" / "profiles.json"
    if not path.is_file():
        return STANDARD_PROFILES
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return tuple(CostProfile(name, float(p["CostMatrix"]["tpWeight"]), float(p["CostMatrix"]["fpWeight"]),
                                 float(p["CostMatrix"]["fnWeight"]), float(p["CostMatrix"].get("tnWeight", 1.0)))
                     for name, p in raw.items())
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path} is not a NAB profiles file: {exc}") from exc


def load_corpus(root: str | os.PathLike[str], categories: list[str] | None = None) -> list[NabFile]:
    """Every labelled file of a NAB folder (sorted by key), optionally only some categories."""
    root = Path(root)
    if not (root / "data").is_dir():
        raise BadInput(f"{root} has no data/ folder; pass the NAB folder (e.g. ../shared/datasets/nab)")
    windows = read_windows(root)
    files: list[NabFile] = []
    for key in sorted(windows):
        if categories and key.split("/", 1)[0] not in categories:
            continue
        csv = root / "data" / key
        if not csv.is_file():
            continue
        ts, values = read_series(csv)
        rows = [window_rows(ts, a, b) for a, b in windows[key]]
        files.append(NabFile(key, ts, values, rows))
    if not files:
        wanted = f" in categories {categories}" if categories else ""
        raise BadInput(f"no labelled NAB files found under {root}{wanted}")
    return files
