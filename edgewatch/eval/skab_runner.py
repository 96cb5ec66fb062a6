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
from edgewatch.eval.episode_score import EpisodeCounts, score_episodes
from edgewatch.eval.skab_families import SkabFamily
from edgewatch.eval.skab_score import Binary, nab_scores, seconds_of
from edgewatch.files import replacing

# the published leaderboard (SKAB README, all 34 files): F1, FAR %, MAR %
LEADERBOARD: list[tuple[str, float, float, float]] = [
    ("Conv-AE", 0.78, 13.55, 28.02), ("MSET", 0.78, 39.73, 14.13), ("T-squared+Q (PCA)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92), ("T-squared", 0.66, 19.21, 42.6), ("LSTM-VAE", 0.56, 9.13, 55.03),
    ("Vanilla LSTM", 0.54, 12.54, 59.53), ("Vanilla AE", 0.39, 2.59, 75.15), ("Isolation forest", 0.29, 2.56, 82.89),
]


@dataclass
class FileRun:
    key: str
    predicted: np.ndarray  # [test rows] int8
    truth: np.ndarray
    scores: np.ndarray  # [all rows] float64, NaN where the agent scores nothing
    threshold: float
    seconds: float
    episodes: EpisodeCounts = field(default_factory=EpisodeCounts)


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

    def episodes(self, group: str | None = None) -> EpisodeCounts:
        total = EpisodeCounts()
        for r in self.runs:
            if group is None or r.key.split("/")[0] == group:
                total = total + r.episodes
        return total

    @property
    def groups(self) -> list[str]:
        return sorted({r.key.split("/")[0] for r in self.runs}, key=lambda g: (g != "valve1", g))


def agent_flags(model_path: str | os.PathLike[str], values: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Run a model file over one stream through the agent's runtime: (in-episode 0/1, score, threshold).

    A row is flagged from an episode's first window over the threshold to
    its last one (the ``last_over_seq`` of the agent's ``end`` event; with a
    1-of-1 card that is where the agent ends it). Rows the agent does not
    score (before the first full window, between strides) have a NaN score.
    """
    run = agent_run(model_path, values)
    return run.flags(len(values)), run.scores, run.threshold


def agent_run(model_path: str | os.PathLike[str], values: np.ndarray, times: np.ndarray | None = None,
              features: list[str] | None = None):  # noqa: ANN201 - agent.offline.SeriesRun
    """The agent's episodes and scores for one stream (drift checks off: they raise no episodes).

    ``features`` names the columns of ``values``; the model reads its own
    features among them by name (as the replay source does), so a model that
    left some out still runs on the whole file.
    """
    from edgewatch.agent.offline import run_series
    from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime

    runtime = load_runtime(model_path, Overrides(), drift_settings=DriftSettings(every=0))
    if features is not None and runtime.features != features:
        missing = [f for f in runtime.features if f not in features]
        if missing:
            raise BadInput(f"{model_path} reads {missing}, which the data does not have (it has {features})")
        values = values[:, [features.index(f) for f in runtime.features]]
    return run_series(runtime, values, times)


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
            family.fit(f, split, out, seed)
            times = seconds_of(f.datetimes)
            run = agent_run(out, f.values, times, f.features)
            flags = run.flags(len(f.values))
            counts = score_episodes([(e.start_seq, e.last_over_seq) for e in run.episodes], f.anomaly, times, split)
            result.runs.append(FileRun(f.key, flags[split:], f.anomaly[split:].copy(), run.scores, run.threshold,
                                       time.perf_counter() - started, counts))
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
    lines += format_episodes(results)
    lines.append("-" * len(head))
    lines.append("published leaderboard (SKAB README, all 34 files incl. held-back valve2):")
    for name, f1, far, mar in LEADERBOARD:
        lines.append(f"{name:28s} {'total':8s} {f1:5.2f} {far:7.2f} {mar:7.2f}")
    return "\n".join(lines)


def format_episodes(results: Sequence[FamilyResult]) -> list[str]:
    """Per group: faults caught, false episodes per hour of normal test rows, episodes per fault, delay."""
    head = (f"{'episodes':28s} {'group':8s} {'caught':>11s} {'inside':>6s} {'false':>5s} {'per h':>6s} "
            f"{'ep/fault':>8s} {'delay s':>7s}")
    lines = [head]
    for res in results:
        for g in res.groups + [None]:
            e = res.episodes(g)
            lines.append(f"{res.family if g is None else '':28s} {g or 'total':8s} "
                         f"{f'{e.caught}/{e.faults}':>6s} {100 * e.caught_share:3.0f}% {e.opened_inside:6d} "
                         f"{e.false_episodes:5d} {e.false_per_hour:6.2f} {e.episodes_per_fault:8.2f} "
                         f"{e.median_delay:7.0f}")
    lines.append("(caught: an episode overlaps the fault; inside: one opened within it; false: episodes overlapping "
                 "no fault, per hour of normal test rows; delay: median from the fault's start to the first "
                 "overlapping episode)")
    return lines
