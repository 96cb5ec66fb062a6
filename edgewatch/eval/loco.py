"""Leave-one-category-out (LOCO) and leave-one-file-out (LOFO) choice of the NAB detector's settings.

Why: the NAB folder here holds 4 of NAB's 7 categories, and the other 3
are scored outside the project. A setting chosen because it scores best
on these 25 files can be a choice of which few files to get right (the
first default gained 8 points from four files and lost them on the held
back categories). LOCO asks what the *choice* is worth on a category it
never saw: for each category, the settings and the alert threshold are
chosen on the other three, then that category is scored with them; the
four held-out parts are summed and normalised like one NAB corpus. The
figure printed beside the in-sample one is that sum, so a grid that only
fits the folder shows a gap.

Each fold's held-out part is also normalised on its own, so the worst
held-out category (or file) is reported beside the pooled and mean
figures: a design that wins on average by one category's files shows it.

When it fails: with four categories a fold can pick a setting because of
one category's few windows, so read the chosen settings per fold, not
only the total; a grid of many near-equal points makes the in-sample
figure optimistic and the LOCO figure noisy (a 180-point grid scored
73.6 in-sample and 65 LOCO; docs/eval.md).
"""

from __future__ import annotations

import enum
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgewatch.data.nab import CostProfile, NabFile
from edgewatch.eval.nab_score import RowRewards, file_score, normalise, row_rewards, sweep


class Grouping(str, enum.Enum):
    """What one fold holds out: a NAB category (LOCO) or one file (LOFO)."""

    CATEGORY = "category"
    FILE = "file"

    def of(self, f: NabFile) -> str:
        return f.category if self is Grouping.CATEGORY else f.key


@dataclass
class Fold:
    """One held-out group: what was chosen on the others and what it scored there (raw and normalised NAB points).

    ``score`` is NaN for a group without windows (only false positives can be scored there; ``raw`` says
    what they cost)."""

    held_out: str
    chosen: str
    threshold: float
    raw: float
    windows: int = 0
    score: float = math.nan


@dataclass
class LocoProfile:
    """One NAB profile: the in-sample choice and score beside the cross-validated one."""

    profile: str
    in_sample_choice: str
    in_sample: float  # normalised, settings and threshold chosen on all groups
    loco: float  # normalised sum of the held-out parts
    folds: list[Fold] = field(default_factory=list)

    @property
    def worst(self) -> Fold | None:
        """The held-out group with windows that scored lowest (normalised), or None."""
        scored = [f for f in self.folds if f.windows]
        return min(scored, key=lambda f: f.score) if scored else None

    @property
    def fold_mean(self) -> float:
        """Mean of the held-out groups' normalised scores (groups with windows), beside the pooled figure."""
        scored = [f.score for f in self.folds if f.windows]
        return float(np.mean(scored)) if scored else math.nan


@dataclass
class LocoResult:
    candidates: dict[str, dict[str, float]]  # name -> profile -> in-sample normalised score
    profiles: list[LocoProfile]


def _best(names: Sequence[str], scores: Mapping[str, Sequence[np.ndarray]], idx: Sequence[int],
          rewards: Sequence[RowRewards], profile: CostProfile) -> tuple[str, float, float]:
    """The candidate and threshold with the highest raw NAB score on the files ``idx`` (first wins ties)."""
    best: tuple[str, float, float] | None = None
    for name in names:
        thr, raw = sweep([scores[name][i] for i in idx], [rewards[i] for i in idx], profile).best()
        if best is None or raw > best[2]:
            best = (name, thr, raw)
    assert best is not None
    return best


def choose(files: Sequence[NabFile], scores: Mapping[str, Sequence[np.ndarray]],
           profiles: Sequence[CostProfile], grouping: Grouping = Grouping.CATEGORY) -> LocoResult:
    """Leave-one-group-out over candidates whose per-file scores are given (``scores[name][i]`` for ``files[i]``).

    A candidate is a whole detector (settings); the threshold is part of the
    choice, as an operator would have to fix it before seeing the held-out
    category (LOCO) or file (LOFO).
    """
    if not scores:
        raise ValueError("no candidates to choose from")
    names = list(scores)
    for name in names:
        if len(scores[name]) != len(files):
            raise ValueError(f"candidate {name}: {len(scores[name])} score series for {len(files)} files")
    rewards = [row_rewards(len(f.values), f.windows) for f in files]
    n_windows = sum(r.n_windows for r in rewards)
    every = list(range(len(files)))
    groups = sorted({grouping.of(f) for f in files})
    table = {name: {} for name in names}
    out = []
    for p in profiles:
        for name in names:
            _, raw = sweep(scores[name], rewards, p).best()
            table[name][p.name] = normalise(raw, n_windows, p)
        in_name, _, in_raw = _best(names, scores, every, rewards, p)
        folds = []
        for group in groups:
            train = [i for i in every if grouping.of(files[i]) != group]
            test = [i for i in every if grouping.of(files[i]) == group]
            name, thr, _ = _best(names, scores, train, rewards, p)
            raw = sum(file_score(scores[name][i], rewards[i], p, thr) for i in test)
            w = sum(rewards[i].n_windows for i in test)
            folds.append(Fold(group, name, thr, raw, w, normalise(raw, w, p) if w else math.nan))
        out.append(LocoProfile(p.name, in_name, normalise(in_raw, n_windows, p),
                               normalise(sum(f.raw for f in folds), n_windows, p), folds))
    return LocoResult(table, out)


@dataclass(frozen=True)
class GridPoint:
    """One setting of the default detector: its top span (m = span / 8, the likelihood's rows in proportion),
    the shortest span of its ladder (0 = one span) and the levels' range rows (read as time at 5 minutes, as
    the default reads them)."""

    span: int
    min_span: int
    range_rows: int

    @property
    def name(self) -> str:
        return f"span{self.span}-from{self.min_span}-range{self.range_rows}"


def default_grid() -> list[GridPoint]:
    """The 8 settings LOCO chooses among (the fourth-round default is span384-from0-range256); everything else
    keeps its principled value (:mod:`edgewatch.eval.detectors.novelty_levels`). Kept small on purpose: see
    this module's docstring."""
    return [GridPoint(span, lo, rr) for span in (384, 1536) for lo in (0, 48) for rr in (256, 384)]


def config(point: GridPoint):  # noqa: ANN201 - a NoveltyLevelsConfig
    from edgewatch.contract.postprocess import Tail
    from edgewatch.numpy_models.univariate import NoveltyLevelsConfig, in_time, novelty_params

    c = NoveltyLevelsConfig()
    lengths = novelty_params(point.span, point.min_span, c.novelty["ratio"],
                             Tail(int(c.novelty.get("tail", Tail.GAUSSIAN))))
    c.novelty, c.levels = in_time({**c.novelty, **lengths},  # every other parameter of the default kept
                                  {**c.levels, "range_rows": point.range_rows})  # in_time re-derives the rest
    return c


def default_point() -> GridPoint:
    """The grid point the shipped default is (what ``edgewatch eval make-detector`` writes)."""
    from edgewatch.numpy_models.univariate import NoveltyLevelsConfig

    c = NoveltyLevelsConfig()
    return GridPoint(int(c.novelty["span"]), int(c.novelty["min_span"]), int(c.levels["range_rows"]))


def grid_scores(files: Sequence[NabFile], grid: Sequence[GridPoint],
                progress: bool = True) -> dict[str, list[np.ndarray]]:
    """Every grid point's scores, each from its own model file run as the agent runs it.

    The points differ only in their card's post-process, so the (pass-through)
    graph runs once per file and each point's own post-process runs on it.
    """
    from tqdm import tqdm

    from edgewatch.eval.detectors import novelty_levels
    from edgewatch.eval.runner import ModelDetector

    out: dict[str, list[np.ndarray]] = {p.name: [] for p in grid}
    with tempfile.TemporaryDirectory(prefix="edgewatch-loco-") as tmp:
        dets = [ModelDetector(novelty_levels.write_model(Path(tmp) / f"{p.name}.onnx", config(p))) for p in grid]
        for f in tqdm(files, desc="LOCO grid", unit="file", disable=not progress):
            graph = dets[0].graph_outputs(f.values)  # one pass-through graph for all points
            for point, det in zip(grid, dets):
                out[point.name].append(det.post_scores(f.values, graph, f.seconds()))
    return out


_SHORT = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}


def format_loco(result: LocoResult, default: str | None = None, grouping: Grouping = Grouping.CATEGORY,
                folds: bool = True) -> str:
    """The candidates' in-sample scores, each fold's choice, and the in-sample, pooled cross-validated, mean and
    worst held-out figures per profile."""
    profiles = [p.profile for p in result.profiles]
    short = "LOCO" if grouping is Grouping.CATEGORY else "LOFO"
    what = "category" if grouping is Grouping.CATEGORY else "file"
    head = f"{'setting':28s} " + " ".join(f"{_SHORT.get(p, p):>9s}" for p in profiles)
    lines = ["in-sample NAB scores of the candidates (settings and threshold chosen on all files)", head,
             "-" * len(head)]
    for name, row in result.candidates.items():
        mark = "  <- default" if name == default else ""
        lines.append(f"{name:28s} " + " ".join(f"{row[p]:9.2f}" for p in profiles) + mark)
    lines.append("")
    lines.append(f"leave-one-{what}-out: settings and threshold chosen without the held-out {what}, which is then "
                 "scored (normalised; '-' = no windows, raw = its false-positive cost)")
    for lp in result.profiles:
        lines.append(f"{_SHORT.get(lp.profile, lp.profile)}:")
        for f in lp.folds if folds else []:
            norm = f"{f.score:7.2f}" if f.windows else "      -"
            lines.append(f"  held out {f.held_out:44s} chose {f.chosen:24s} threshold {f.threshold:.4f} "
                         f"raw {f.raw:+7.2f} score {norm}")
        worst = lp.worst
        if worst is not None:
            lines.append(f"  worst held-out {what}: {worst.held_out} {worst.score:.2f}")
    lines.append("")
    lines.append(f"{'':28s} " + " ".join(f"{_SHORT.get(p, p):>9s}" for p in profiles))
    lines.append(f"{'in-sample (best candidate)':28s} " + " ".join(f"{lp.in_sample:9.2f}" for lp in result.profiles))
    lines.append(f"{short + ' (pooled held-out parts)':28s} " + " ".join(f"{lp.loco:9.2f}" for lp in result.profiles))
    lines.append(f"{short + ' mean of held-out ' + ('categories' if what == 'category' else 'files'):28s} "
                 + " ".join(f"{lp.fold_mean:9.2f}" for lp in result.profiles))
    lines.append(f"{short + ' worst held-out ' + what:28s} "
                 + " ".join(f"{(lp.worst.score if lp.worst else math.nan):9.2f}" for lp in result.profiles))
    lines.append("in-sample choice: " + ", ".join(f"{_SHORT.get(lp.profile, lp.profile)} {lp.in_sample_choice}"
                                                   for lp in result.profiles))
    return "\n".join(lines)
