"""How often the drift tests fire, over repeated seeded splits of real data.

Tables: scikit-learn's bundled Wisconsin breast-cancer table (569 rows, 30
continuous measurements; it ships inside the scikit-learn wheel, so nothing
is downloaded, and it is the largest all-continuous real table bundled).
Each seed splits it at random into two halves; the current half is then left
alone (no drift: the false-positive rate), or shifted on one column.

Images: MNIST or Fashion-MNIST test images from the shared datasets folder;
each seed draws two disjoint sets, and the current set is left clean or
corrupted (gaussian noise, brightness, severities 1-5, by
:mod:`edgewatch.data.corrupt`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edgewatch.drift.classifier import ClassifierConfig, classifier_test
from edgewatch.drift.encoders import ReductionConfig, reduce_pair
from edgewatch.drift.ks import ks_test
from edgewatch.errors import MissingExtra


@dataclass
class Scenario:
    name: str
    drifted: bool  # ground truth: a detection is right (True) or a false positive (False)
    make: Callable[[np.ndarray, np.random.Generator], np.ndarray]  # current batch -> shifted copy


@dataclass
class ScenarioResult:
    name: str
    drifted: bool
    seeds: int
    ks_rate: float  # share of seeds where KS (Bonferroni) declared drift
    classifier_seeds: int
    classifier_rate: float  # share where the AUC interval was above 0.5
    auc_mean: float
    auc_std: float

    def row(self) -> str:
        what = "detection" if self.drifted else "false pos."
        auc = (f"{self.classifier_rate:6.0%} {self.auc_mean:6.3f} ±{self.auc_std:.3f}"
               if self.classifier_seeds else f"{'-':>6} {'-':>6}")
        return f"{self.name:<42} {what:<10} {self.ks_rate:6.0%} ({self.seeds:>3}) {auc}"


HEADER = f"{'scenario':<42} {'rate is':<10} {'KS':>6} {'seeds':>5} {'clf':>6} {'AUC':>6}"

TABLE_GROSS_COLUMN = "mean smoothness"  # mean 0.096, std 0.014: +1 moves every value out of range
TABLE_SHIFT_COLUMN = "mean radius"  # mean 14.1, std 3.5


def breast_cancer() -> tuple[np.ndarray, list[str]]:
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as exc:  # pragma: no cover
        raise MissingExtra("scikit-learn", "drift") from exc
    d = load_breast_cancer()
    return np.asarray(d.data, dtype=np.float64), [str(n) for n in d.feature_names]


def table_scenarios(values: np.ndarray, features: list[str]) -> list[Scenario]:
    g = features.index(TABLE_GROSS_COLUMN)
    j = features.index(TABLE_SHIFT_COLUMN)
    sd = float(values[:, j].std())

    def add(col: int, amount: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        def make(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = x.copy()
            out[:, col] += amount
            return out
        return make

    return [
        Scenario("random split", False, lambda x, rng: x),
        Scenario(f"gross: +1 on '{TABLE_GROSS_COLUMN}'", True, add(g, 1.0)),
        Scenario(f"+1 std on '{TABLE_SHIFT_COLUMN}'", True, add(j, sd)),
        Scenario(f"subtle: +0.25 std on '{TABLE_SHIFT_COLUMN}'", True, add(j, 0.25 * sd)),
        Scenario(f"subtle: +1 on '{TABLE_SHIFT_COLUMN}' (0.28 std)", True, add(j, 1.0)),
    ]


def image_scenarios(severities: tuple[int, ...] = (1, 2, 3, 4, 5), fraction: float = 1.0) -> list[Scenario]:
    """Clean versus clean, and versus a ``fraction`` of the current images corrupted."""
    from edgewatch.data.corrupt import Corruption, corrupt

    def make(kind: Corruption, s: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = x.copy()
            idx = rng.choice(len(x), size=max(1, int(round(fraction * len(x)))), replace=False)
            out[idx] = corrupt(x[idx], kind, s, rng)
            return out
        return apply

    part = "" if fraction >= 1.0 else f" ({fraction:.0%} of images)"
    out = [Scenario("clean vs clean", False, lambda x, rng: x)]
    for kind in (Corruption.GAUSSIAN_NOISE, Corruption.BRIGHTNESS):
        for s in severities:
            out.append(Scenario(f"{kind.value} severity {s}{part}", True, make(kind, s)))
    return out


def _splits(values: np.ndarray, n: int, seeds: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for seed in range(seeds):
        idx = np.random.default_rng(seed).permutation(len(values))
        half = min(n, len(values) // 2)
        yield seed, values[idx[:half]], values[idx[half:2 * half]]


def evaluate(values: np.ndarray, features: list[str] | None, scenarios: list[Scenario], seeds: int,
             classifier_seeds: int, n: int, images: bool, alpha: float = 0.05,
             reduction: ReductionConfig | None = None,
             progress: Callable[[int], None] | None = None) -> list[ScenarioResult]:
    """Run every scenario on the same seeded splits; rates are shares of seeds that declared drift."""
    ks_hits = np.zeros(len(scenarios))
    clf_hits = np.zeros(len(scenarios))
    aucs: list[list[float]] = [[] for _ in scenarios]
    for seed, ref, cur in _splits(values, n, seeds):
        rng = np.random.default_rng(10_000 + seed)
        for k, sc in enumerate(scenarios):
            shifted = sc.make(cur, rng)
            if images:
                red = reduce_pair(ref, shifted, reduction or ReductionConfig(seed=seed))
                r, c, names = red.reference, red.current, red.features
            else:
                r, c, names = ref, shifted, features
            ks_hits[k] += ks_test(r, c, names, alpha).drift
            if seed < classifier_seeds:
                res = classifier_test(r, c, names, ClassifierConfig(seed=seed, importance=False))
                clf_hits[k] += res.drift
                aucs[k].append(res.auc)
            if progress is not None:
                progress(1)
    cs = min(classifier_seeds, seeds)
    return [ScenarioResult(sc.name, sc.drifted, seeds, float(ks_hits[k] / seeds), cs,
                           float(clf_hits[k] / cs) if cs else float("nan"),
                           float(np.mean(aucs[k])) if aucs[k] else float("nan"),
                           float(np.std(aucs[k])) if aucs[k] else float("nan"))
            for k, sc in enumerate(scenarios)]
