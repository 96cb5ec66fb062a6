"""Running a family over SKAB by the benchmark's protocol, through the agent's own scoring path.

For every experiment file: the family is fitted on the first 400 rows
(scaler and model, nothing else), exported to an edgewatch model file with
its card, and that file scores the whole file exactly as ``edgewatch agent
run`` would: strided windows through the ONNX graph, the card's
post-process, the threshold, the k-of-n episodes. A row is predicted
anomalous when it lies inside an episode (from the episode's first window
over the threshold to the row where the agent ends it). Only the test rows
(after the 400th) are scored, with SKAB's metrics (:mod:`edgewatch.eval.skab_score`).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgewatch.data.skab import TRAIN_ROWS, SkabFile
from edgewatch.errors import BadInput
from edgewatch.eval.skab_families import SkabFamily
from edgewatch.eval.skab_score import Binary, nab_scores, seconds_of
from edgewatch.files import replacing

# the published leaderboard (SKAB README, all 34 files): F1, FAR %, MAR %
LEADERBOARD: list[tuple[str, float, float, float]] = [
    ("Conv-AE", 0.78, 13.55, 28.02), ("MSET", 0.78, 39.73, 14.13), ("T-squared+Q (PCA)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92), ("T-squared", 0.66, 19.21, 42.6), ("LSTM-VAE", 0.56, 9.13, 55.03),
    ("Vanilla LSTM", 0.54, 12.54, 59.53), ("Vanilla AE", 0.39, 2.59, 75.15), ("Isolation forest", 0.29, 2.56, 82.89),
]
SCORE_BATCH = 512


@dataclass
class FileRun:
    key: str
    predicted: np.ndarray  # [test rows] int8
    truth: np.ndarray
    scores: np.ndarray  # [all rows] float64, NaN where the agent scores nothing
    threshold: float
    seconds: float


@dataclass
class FamilyResult:
    family: str
    runs: list[FileRun] = field(default_factory=list)
    nab: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def binary(self, group: str | None = None) -> Binary:
        total = Binary(0, 0, 0, 0)
        for r in self.runs:
            if group is None or r.key.split("/")[0] == group:
                total = total + Binary.of(r.predicted, r.truth)
        return total

    @property
    def groups(self) -> list[str]:
        return sorted({r.key.split("/")[0] for r in self.runs}, key=lambda g: (g != "valve1", g))


def agent_flags(model_path: str | os.PathLike[str], values: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Run a model file over one stream through the agent's runtime: (in-episode 0/1, score, threshold).

    Rows the agent does not score (before the first full window, between
    strides) have a NaN score; their flag is the episode state the agent
    holds at that row.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime

    runtime = load_runtime(model_path, Overrides(), drift_settings=DriftSettings(every=0))
    model = runtime.model
    x = np.ascontiguousarray(values, dtype=np.float32)
    n, w = len(x), runtime.window
    flags = np.zeros(n, dtype=np.int8)
    scores = np.full(n, np.nan)
    threshold = float(runtime.threshold)
    if n < w:
        return flags, scores, threshold
    ends = np.arange(w - 1, n, runtime.stride)
    windows = sliding_window_view(x, w, axis=0).transpose(0, 2, 1)[ends - (w - 1)]
    batches = [model.score_many(windows[a:a + SCORE_BATCH]) for a in range(0, len(windows), SCORE_BATCH)]
    raw = np.concatenate([b.scores for b in batches])
    aux = None if batches[0].aux is None else np.concatenate([b.aux for b in batches])
    s = np.asarray(runtime.post.update_many(np.zeros(len(raw), dtype=np.int64), raw, aux), dtype=np.float64)
    tracker = runtime.tracker
    start = None
    for seq, score in zip(ends.tolist(), s.tolist()):
        tr = tracker.update(0, score > threshold, score, float(seq), seq)
        if tr is None:
            continue
        if tr.kind == "start":
            start = tr.episode.start_seq
        else:
            flags[start:tr.episode.end_seq] = 1
            start = None
    if start is not None:  # the agent closes an open episode when the stream ends
        flags[start:] = 1
    scores[ends] = s
    return flags, scores, threshold


def run_family(files: Sequence[SkabFile], family: SkabFamily, seed: int = 0, progress: bool = True,
               models_dir: Path | None = None) -> FamilyResult:
    """Fit, export and run ``family`` on every file; the model files go to ``models_dir`` (else a temp dir)."""
    from tqdm import tqdm

    family.check_available()
    result = FamilyResult(family.name)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewatch-skab-") as tmp:
        base = Path(models_dir) if models_dir else Path(tmp)
        for f in tqdm(files, desc=f"SKAB {family.name}", unit="file", disable=not progress):
            split = f.split(TRAIN_ROWS)
            out = base / f.group / f"{f.name}.onnx"
            out.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            family.fit(f.values[:split], f.features, out, seed, f.key)
            flags, scores, thr = agent_flags(out, f.values)
            result.runs.append(FileRun(f.key, flags[split:], f.anomaly[split:].copy(), scores, thr,
                                       time.perf_counter() - started))
    result.seconds = time.perf_counter() - t0
    by_key = {f.key: f for f in files}
    result.nab = nab_scores([(seconds_of(by_key[r.key].datetimes[TRAIN_ROWS:]), by_key[r.key].changepoint[TRAIN_ROWS:],
                              r.predicted) for r in result.runs])
    return result


def write_predictions(directory: str | os.PathLike[str], files: Sequence[SkabFile], result: FamilyResult) -> list[Path]:
    """``DIR/<group>/<n>.csv``: header ``datetime;anomaly``, one 0/1 row per test row, datetimes as in the input."""
    by_key = {r.key: r for r in result.runs}
    written = []
    for f in files:
        run = by_key.get(f.key)
        if run is None:
            raise BadInput(f"no predictions for {f.key}")
        stamps = f.datetimes[TRAIN_ROWS:]
        if len(stamps) != len(run.predicted):
            raise BadInput(f"{f.key}: {len(run.predicted)} predictions for {len(stamps)} test rows")
        path = Path(directory) / f.group / f"{f.name}.csv"
        lines = ["datetime;anomaly"] + [f"{t};{int(p)}" for t, p in zip(stamps, run.predicted)]
        with replacing(path, suffix=".csv") as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written


def read_predictions(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """A predictions file back as (datetimes, 0/1); the format an outside scorer reads."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "datetime;anomaly":
        raise BadInput(f"{path} is not a predictions file (header must be 'datetime;anomaly')")
    rows = [ln.rsplit(";", 1) for ln in lines[1:] if ln]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows], dtype=np.int8)


def format_table(results: Sequence[FamilyResult], files: int, rows: int) -> str:
    """Per group and total F1 / FAR / MAR of each family beside the leaderboard and the flag-everything baseline."""
    head = f"{'detector':28s} {'group':8s} {'F1':>5s} {'FAR %':>7s} {'MAR %':>7s}   NAB std / lowFP / lowFN"
    lines = [f"SKAB outlier detection: {files} files, {rows:,} test rows (first {TRAIN_ROWS} rows of each file "
             "train, point-wise binary metric over all test rows)", head, "-" * len(head)]
    for res in results:
        for g in res.groups + [None]:
            b = res.binary(g)
            nab = ("   " + " / ".join(f"{res.nab[p]:.2f}" for p in ("standard", "low FP", "low FN"))) if g is None else ""
            lines.append(f"{res.family if g is None else '':28s} {g or 'total':8s} {b.f1:5.3f} {b.far:7.2f} {b.mar:7.2f}{nab}")
        lines.append(f"{'':28s} (ran {res.seconds:.1f} s)")
    if results:
        truth = np.concatenate([r.truth for r in results[0].runs])
        every = Binary.of(np.ones_like(truth), truth)
        lines.append(f"{'flag every row':28s} {'total':8s} {every.f1:5.3f} {every.far:7.2f} {every.mar:7.2f}")
    lines.append("-" * len(head))
    lines.append("published leaderboard (SKAB README, all 34 files incl. held-back valve2):")
    for name, f1, far, mar in LEADERBOARD:
        lines.append(f"{name:28s} {'total':8s} {f1:5.2f} {far:7.2f} {mar:7.2f}")
    return "\n".join(lines)
