"""The robustness table: one detector scored on every perturbed copy of the NAB folder (``eval nab --perturb``).

Why: cross-validation over four categories (two of them artificial) did not
predict the held-back categories (docs/eval.md, fifth round). The
perturbations of :mod:`edgewatch.eval.perturb` change what unseen streams
change (interval, daily cycle, counts, level shifts, bursts, length) on the
same labels; a detector that keeps its score under all of them is the one to
ship. Each copy is scored as its own corpus (threshold swept per profile, as
NAB does), so a row reads like the unperturbed table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgewatch.data.nab import CostProfile, NabFile
from edgewatch.eval.false_episodes import FalseEpisodes
from edgewatch.eval.perturb import Perturbation, parse, perturb
from edgewatch.eval.runner import Detector, run_files

_SHORT = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}


@dataclass
class RobustRow:
    perturbation: str
    files: int
    windows: int
    scores: dict[str, float] = field(default_factory=dict)  # profile -> normalised NAB score
    seconds: float = 0.0
    false_episodes: FalseEpisodes | None = None  # at the copy's own standard threshold


def robustness(files: Sequence[NabFile], profiles: Sequence[CostProfile], detector: Detector,
               perturbations: Sequence[Perturbation | str], progress: bool = True,
               cached: dict[str, dict[str, np.ndarray]] | None = None) -> list[RobustRow]:
    """Score the detector on each perturbed copy; ``cached`` (perturbation -> file key -> scores) is reused
    and filled, so a caller can keep the scores of a slow detector."""
    from edgewatch.eval.runner import score_corpus

    kinds = [parse(k) for k in perturbations]  # all names checked before any work
    rows = []
    for kind in kinds:
        copy = perturb(files, kind)
        have = (cached or {}).get(kind.value)
        if have is not None and all(f.key in have for f in copy):
            result = score_corpus(copy, [have[f.key] for f in copy], profiles, detector.name, 0.0)
        else:
            result, scores = run_files(copy, profiles, detector, progress)
            if cached is not None:
                cached[kind.value] = scores
        rows.append(RobustRow(kind.value, result.files, result.windows,
                              {p.profile: p.score for p in result.profiles}, result.seconds,
                              result.false_episodes))
    return rows


def summary(rows: Sequence[RobustRow], profile: str = "standard") -> tuple[float, float, str]:
    """Mean and worst score over the perturbed rows (``none`` excluded) and the worst one's name."""
    pert = [r for r in rows if r.perturbation != Perturbation.NONE.value and profile in r.scores]
    if not pert:
        return math.nan, math.nan, ""
    worst = min(pert, key=lambda r: r.scores[profile])
    return float(np.mean([r.scores[profile] for r in pert])), worst.scores[profile], worst.perturbation


def format_robustness(rows: Sequence[RobustRow], detector: str) -> str:
    profiles = list(rows[0].scores) if rows else []
    head = f"{'perturbation':14s} {'files':>5s} {'windows':>7s} " + " ".join(
        f"{_SHORT.get(p, p):>9s}" for p in profiles)
    lines = [f"NAB scores of {detector} on perturbed copies of the folder (labels mapped by timestamp; "
             "threshold swept per copy)", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.perturbation:14s} {r.files:5d} {r.windows:7d} "
                     + " ".join(f"{r.scores[p]:9.2f}" for p in profiles))
    lines.append("-" * len(head))
    means = [summary(rows, p) for p in profiles]
    lines.append(f"{'mean (perturbed)':28s} " + " ".join(f"{m[0]:9.2f}" for m in means))
    lines.append(f"{'worst (perturbed)':28s} " + " ".join(f"{m[1]:9.2f}" for m in means)
                 + (f"   ({means[0][2]} in {_SHORT.get(profiles[0], profiles[0])})" if means else ""))
    episodes = format_false_episodes(rows)
    return "\n".join(lines + ([""] + episodes if episodes else []))


def format_false_episodes(rows: Sequence[RobustRow]) -> list[str]:
    """One line per copy, false episodes a stream-day on normal rows (edgewatch.eval.false_episodes), then the
    mean and worst over the perturbed copies; every line starts with the figure's name, not a copy's."""
    have = [(r.perturbation, r.false_episodes) for r in rows if r.false_episodes is not None]
    lines = [fe.line(f", {name} copy (its standard threshold {fe.threshold:.4g})") for name, fe in have]
    pert = [(name, fe) for name, fe in have if name != Perturbation.NONE.value]
    if pert:
        name, worst = max(pert, key=lambda p: p[1].first_day)
        lines.append(f"false episodes a stream-day on normal rows, perturbed copies: mean first day "
                     f"{np.mean([fe.first_day for _, fe in pert]):.2f}, after {np.mean([fe.after for _, fe in pert]):.2f}; "
                     + (f"worst first day {worst.first_day:.2f} ({name})" if worst.first_day > 0
                        else "no copy had one on a first day"))
    return lines
