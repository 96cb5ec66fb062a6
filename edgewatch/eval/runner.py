"""Running a detector online over a NAB folder and scoring what it says.

A detector here is anything with ``score_series(values, key, times) ->
scores`` (``times``: each row's timestamp in seconds, or None) that scores
row ``i`` from rows ``<= i`` only (the built-in ones, or an
edgewatch model file run exactly as the agent runs it: windows through the
ONNX graph, then the card's post-process per stream). The runner does not
trust that promise blindly: :func:`check_online` tests it on a prefix.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from edgewatch.wire.json import finite
from edgewatch.data.nab import CostProfile, NabFile, load_corpus, read_profiles
from edgewatch.errors import BadInput
from edgewatch import accuracy as metrics
from edgewatch.eval.false_episodes import FalseEpisodes, false_episodes
from edgewatch.eval.nab_score import ProfileResult, nab_score
from edgewatch.files import replacing


class Detector(Protocol):
    name: str

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        """Scores of every row, each computed from that row and the ones before it (and their times)."""
        ...


class ModelDetector:
    """An edgewatch model file run like the agent runs it (graph, then post-process).

    It goes through the agent's :class:`~edgewatch.agent.runtime.ModelRuntime`,
    so a file the agent would refuse is refused here with the same reason,
    and the post-process is the very object the agent would build. Rows
    before the first full window get no score from the agent; here they get
    0, the lowest score, so they never count as detections.
    """

    def __init__(self, path: str | os.PathLike[str], stride: int = 1) -> None:
        from edgewatch.agent.model import ScoringModel
        from edgewatch.agent.runtime import DriftSettings, ModelRuntime, Overrides

        model = ScoringModel(path)
        card = model.card
        if not card.is_time_series or card.n_features != 1:
            raise BadInput(f"{path} is a {card.family} model with sample shape {card.sample_shape}; "
                           "NAB needs a time-series model of one feature (window, 1)")
        self.runtime = ModelRuntime.build(model, Overrides(stride=max(int(stride), 1)), DriftSettings(every=0))
        self.model = model
        self.name = f"model:{Path(path).name}"
        self.window = self.runtime.window
        self.stride = self.runtime.stride

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        """As the agent scores a stream; each scored row's time goes to the post-process, as the agent's does."""
        return self.post_scores(values, self.graph_outputs(values), times)

    def graph_outputs(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The rows the agent scores and the graph's ``score`` and ``aux`` there (the agent's own
        :func:`~edgewatch.agent.offline.graph_outputs`); kept apart so that post-processes can be compared on
        one graph run."""
        from edgewatch.agent.offline import graph_outputs

        return graph_outputs(self.model, np.asarray(values).reshape(-1, 1), self.window, self.stride)

    def post_scores(self, values: np.ndarray, outputs: tuple[np.ndarray, np.ndarray, np.ndarray | None],
                    times: np.ndarray | None = None) -> np.ndarray:
        """Every row's decision score from graph outputs (possibly another file's with the same graph),
        through the post-process the agent would build from this file's card (``times``: each row's, or None)."""
        ends, raw, aux = outputs
        n, w = len(values), self.window
        out = np.zeros(n)
        if not len(ends):
            return out
        # each series starts from an empty state, like a new stream
        post = self.runtime.fresh().post
        at = None if times is None else np.asarray(times, dtype=np.float64)[ends]
        out[ends] = post.update_many(np.zeros(len(raw), dtype=np.int64), raw, aux, at)
        if self.stride > 1:  # hold each score until the next scored row, as an operator sees it
            idx = np.maximum.accumulate(np.where(np.isin(np.arange(n), ends), np.arange(n), 0))
            out = out[idx]
            out[: w - 1] = 0.0
        return out


class MaxEnsemble:
    """Several detectors on the same stream, combined by the maximum of their scores.

    Why the maximum: with model files that share one alert level it is
    exactly "alert when any of them alerts", which the agent gives by
    running each file beside the others; nothing new is needed on the device.
    """

    def __init__(self, name: str, members: Sequence[Detector]) -> None:
        if not members:
            raise BadInput("an ensemble needs at least one detector")
        self.name = name
        self.members = list(members)

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        return np.max([np.asarray(m.score_series(values, key, times), dtype=np.float64) for m in self.members],
                      axis=0)


class QuietStart:
    """A detector that says nothing (0) for each series' first ``seconds`` of its own time.

    It is what the agent's ``--quiet-start`` sends for a card that opens an
    episode on one window over (k = n = 1, as NAB's default): a held
    window counts as under, and after the quiet start the tracker is a
    fresh one (:mod:`edgewatch.agent.episodes`). Scores of NAB's detectors
    lie in [0, 1], so 0 is under every threshold the scorer tries.
    """

    def __init__(self, detector: Detector, seconds: float) -> None:
        if not 0 <= seconds < float("inf"):
            raise BadInput(f"a quiet start of {seconds} s: give 0 or more seconds")
        self.detector, self.seconds = detector, float(seconds)
        self.name = f"{detector.name}, quiet start {seconds:g} s"

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        scores = np.array(self.detector.score_series(values, key, times), dtype=np.float64)
        if times is None:
            raise BadInput(f"{key}: a quiet start needs the rows' times")
        t = np.asarray(times, dtype=np.float64)
        scores[t - t[0] < self.seconds] = 0.0
        return scores


def check_online(detector: Detector, values: np.ndarray, key: str = "", cut: int | None = None,
                 times: np.ndarray | None = None) -> bool:
    """True when scoring a prefix gives the same scores as scoring the whole series."""
    values = np.asarray(values)
    cut = len(values) // 2 if cut is None else cut
    whole = np.asarray(detector.score_series(values, key, times))[:cut]
    part = np.asarray(detector.score_series(values[:cut], key, None if times is None else times[:cut]))
    return bool(np.allclose(whole, part, rtol=1e-5, atol=1e-6))


@dataclass
class PointMetrics:
    """Point-wise figures on the scored rows of all files (labels = inside a NAB window)."""

    auc_pr: float
    vus_pr: float
    f1: float
    f1_threshold: float
    precision: float
    recall: float
    pa_f1: float


@dataclass
class EvalResult:
    detector: str
    files: int
    rows: int
    windows: int
    seconds: float
    profiles: list[ProfileResult]
    points: PointMetrics | None = None
    categories: dict[str, dict[str, int]] = field(default_factory=dict)  # files, windows per category
    false_episodes: FalseEpisodes | None = None  # at the standard profile's threshold

    def to_json(self) -> str:
        """Strict JSON: a threshold of +inf (never fire) or a NaN category score becomes null."""
        return json.dumps(finite(asdict(self)), indent=1, allow_nan=False)


def point_metrics(files: Sequence[NabFile], scores: Sequence[np.ndarray]) -> PointMetrics | None:
    """AUC-PR, VUS-PR, best F1 and PA-F1 over the rows NAB scores (after each probation)."""
    s = np.concatenate([np.asarray(sc, dtype=np.float64)[f.probation:] for f, sc in zip(files, scores)])
    y = np.concatenate([f.labels()[f.probation:] for f in files])
    if not y.any():
        return None
    b = metrics.best_f1(s, y)
    rep = metrics.f1_report(s, y, threshold=b.threshold)
    return PointMetrics(metrics.auc_pr(s, y), metrics.vus_pr(s, y), b.f1, b.threshold, b.precision, b.recall,
                        rep.pa_f1)


def score_corpus(files: Sequence[NabFile], scores: Sequence[np.ndarray], profiles: Sequence[CostProfile],
                 detector: str, seconds: float) -> EvalResult:
    """NAB scores per profile plus the point-wise metrics, as one result."""
    for f, sc in zip(files, scores):
        if len(sc) != len(f.values):
            raise BadInput(f"{f.key}: {len(sc)} scores for {len(f.values)} rows")
    prof = nab_score([f.key for f in files], scores, [f.windows for f in files], profiles)
    cats: dict[str, dict[str, int]] = {}
    for f in files:
        c = cats.setdefault(f.category, {"files": 0, "windows": 0})
        c["files"] += 1
        c["windows"] += len(f.windows)
    standard = next((p for p in prof if p.profile == "standard"), prof[0])
    return EvalResult(detector, len(files), sum(len(f.values) for f in files), sum(len(f.windows) for f in files),
                      seconds, prof, point_metrics(files, scores), cats,
                      false_episodes(files, scores, standard.threshold))


def run_nab(root: str | os.PathLike[str], detector: Detector, categories: list[str] | None = None,
            progress: bool = True) -> tuple[EvalResult, dict[str, np.ndarray]]:
    """Score every file of the folder with the detector, then the whole corpus."""
    return run_files(load_corpus(root, categories), read_profiles(root), detector, progress)


def run_files(files: Sequence[NabFile], profiles: Sequence[CostProfile], detector: Detector,
              progress: bool = True) -> tuple[EvalResult, dict[str, np.ndarray]]:
    """Score the given files (a corpus, or a perturbed copy of one) with the detector, then as one corpus."""
    from tqdm import tqdm

    scores: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for f in tqdm(files, desc=f"NAB {detector.name}", unit="file", disable=not progress):
        sc = np.asarray(detector.score_series(f.values, f.key, f.seconds()), dtype=np.float64)
        if sc.shape != f.values.shape or not np.all(np.isfinite(sc)):
            raise BadInput(f"detector {detector.name} gave {sc.shape} scores (finite: "
                           f"{bool(np.all(np.isfinite(sc)))}) for {len(f.values)} rows of {f.key}")
        scores[f.key] = sc
    seconds = time.perf_counter() - t0
    return score_corpus(files, [scores[f.key] for f in files], profiles, detector.name, seconds), scores


def format_table(result: EvalResult) -> str:
    """The per-category and total table, as printed by ``edgewatch eval nab``."""
    names = [p.profile for p in result.profiles]
    short = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}
    head = f"{'category':24s} {'files':>5s} {'windows':>7s} " + " ".join(f"{short.get(n, n)[:10]:>10s}" for n in names)
    lines = [f"NAB score of {result.detector}: {result.files} files, {result.rows:,} rows, "
             f"{result.windows} windows, detector ran {result.seconds:.1f} s", head, "-" * len(head)]
    for cat, c in sorted(result.categories.items()):
        cells = []
        for p in result.profiles:
            v = p.per_category.get(cat, float("nan"))
            if np.isnan(v):
                raw = sum(s for k, s in p.per_file.items() if k.startswith(cat + "/"))
                cells.append(f"{'FP ' + format(raw, '.2f'):>10s}")
            else:
                cells.append(f"{v:10.2f}")
        lines.append(f"{cat:24s} {c['files']:5d} {c['windows']:7d} " + " ".join(cells))
    lines.append("-" * len(head))
    lines.append(f"{'total':24s} {result.files:5d} {result.windows:7d} "
                 + " ".join(f"{p.score:10.2f}" for p in result.profiles))
    lines.append(f"{'threshold':38s} " + " ".join(f"{p.threshold:10.4g}" for p in result.profiles))
    lines.append("(categories without windows show their raw false-positive cost; 0 is best)")
    if result.points:
        m = result.points
        lines.append(f"point-wise, scored rows: AUC-PR {m.auc_pr:.3f}  VUS-PR {m.vus_pr:.3f}  "
                     f"F1 {m.f1:.3f} (P {m.precision:.3f} R {m.recall:.3f})  point-adjusted F1 {m.pa_f1:.3f}")
    if result.false_episodes:
        fe = result.false_episodes
        lines.append(fe.line(f" (standard threshold {fe.threshold:.4g}, probation included)"))
    return "\n".join(lines)


def save_scores(path: str | os.PathLike[str], scores: dict[str, np.ndarray]) -> None:
    """Scores per file as an ``.npz`` (keys are NAB file keys); written atomically."""
    with replacing(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **scores)


def load_scores(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read scores {path}: {exc}; write them with 'edgewatch eval nab --scores-out'") from exc
