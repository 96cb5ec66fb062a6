"""Point-wise and range metrics against hand cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.eval.metrics import (auc_pr, best_f1, f1_at, f1_report, point_adjust, range_auc_pr, regions,
                                    vus_pr)


def labels_with_ranges(n: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    y = np.zeros(n, dtype=int)
    for a, b in ranges:
        y[a:b + 1] = 1
    return y


def test_regions_are_inclusive_runs() -> None:
    assert regions(np.array([0, 1, 1, 0, 0, 1, 0, 1])) == [(1, 2), (5, 5), (7, 7)]
    assert regions(np.zeros(4)) == []
    assert regions(np.array([True, True])) == [(0, 1)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_pr_equals_sklearn_average_precision(seed: int) -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    y = (rng.random(2000) < 0.07).astype(int)
    s = np.round(rng.random(2000) + 0.6 * y, 2)  # ties on purpose
    assert auc_pr(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_auc_pr_hand_case() -> None:
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 1 * 1/2 + 2/3 * 1/2
    assert auc_pr(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx(0.5 + 1 / 3)


def test_vus_pr_is_one_for_a_perfect_detector_and_near_the_ratio_for_random() -> None:
    y = labels_with_ranges(5000, [(500, 539), (2000, 2049), (4000, 4029)])
    assert vus_pr(y.astype(float), y) == pytest.approx(1.0)
    assert range_auc_pr(y.astype(float), y, buffer=20) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    rand = np.mean([vus_pr(rng.random(y.size), y) for _ in range(5)])
    ratio = y.mean()
    assert ratio * 0.5 < rand < ratio * 3


def test_buffer_credits_a_detection_just_before_a_range() -> None:
    y = labels_with_ranges(1000, [(500, 519)])
    s = np.zeros(1000)
    s[495:515] = 1.0  # starts 5 points early
    assert range_auc_pr(s, y, buffer=20) > range_auc_pr(s, y, buffer=0)


def test_best_f1_finds_the_separating_threshold() -> None:
    s = np.concatenate([np.linspace(0, 1, 90), [3.0, 3.1, 3.2, 1.5, 1.6]])
    y = np.concatenate([np.zeros(90), [1, 1, 1, 1, 1]])
    b = best_f1(s, y, lo_pct=50, hi_pct=99)
    assert b.f1 == pytest.approx(1.0)
    assert b.threshold == pytest.approx(1.5)
    assert (b.precision, b.recall) == (1.0, 1.0)


def test_best_f1_stays_inside_the_percentile_range() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(1000)
    y = (s > 0.995).astype(int)  # the best threshold would be above the 99th percentile
    b = best_f1(s, y, lo_pct=50, hi_pct=99)
    assert np.percentile(s, 50) <= b.threshold <= np.percentile(s, 99)
    assert b.f1 < 1.0


def test_point_adjustment_counts_a_whole_segment_for_one_hit() -> None:
    y = np.array([0, 1, 1, 1, 1, 0, 0, 1, 1, 0])
    flags = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert point_adjust(flags, y).astype(int).tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    f1, p, r = f1_at(flags, y)
    assert (p, r) == (1.0, pytest.approx(1 / 6))
    rep = f1_report(flags.astype(float), y, threshold=0.5)
    assert rep.pa_recall == pytest.approx(4 / 6) and rep.recall == pytest.approx(1 / 6)
    text = str(rep)
    assert "point-adjusted F1" in text and text.startswith("F1 ")


def test_point_adjustment_flatters_random_scores() -> None:
    """Kim et al. (AAAI 2022): random scores reach a high PA-F1, not a high F1."""
    rng = np.random.default_rng(2)
    y = labels_with_ranges(10000, [(i, i + 99) for i in range(500, 10000, 1000)])
    s = rng.random(y.size)
    rep = f1_report(s, y, threshold=float(np.quantile(s, 0.99)))
    assert rep.f1 < 0.1
    assert rep.pa_f1 > 0.5


def test_auroc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from edgewatch.eval.metrics import auroc

    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=300), 1)  # rounding makes ties
    labels = rng.random(300) < 0.3
    scores[labels] += 0.5
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError):
        auroc(scores, np.zeros(300))
