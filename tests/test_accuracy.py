"""Point-wise and range metrics against hand cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.accuracy import (auc_pr, best_f1, f1_at, f1_report, point_adjust, range_auc_pr, regions,
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

    from edgewatch.accuracy import auroc

    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=300), 1)  # rounding makes ties
    labels = rng.random(300) < 0.3
    scores[labels] += 0.5
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError):
        auroc(scores, np.zeros(300))


# VUS-PR of TSB-AD 1.5 (``TSB_AD.evaluation.basic_metrics.generate_curve(labels, scores, L, "opt", 250)[7]``,
# pip install --no-deps tsb-ad==1.5 in a throwaway venv) on the seeded arrays built below; docs/eval.md.
TSB_AD_1_5_VUS_PR = {
    ("perfect", 20): 1.0, ("perfect", 40): 1.0,
    ("random", 20): 0.07082512865045627, ("random", 40): 0.08331350504228285,
    ("noisy_good", 20): 0.5237704767999929, ("noisy_good", 40): 0.5326538623888057,
    ("late_by_10", 20): 0.6952859162774265, ("late_by_10", 40): 0.7924300012238208,
    ("one_range_only", 20): 0.718924735116653, ("one_range_only", 40): 0.7352384483798989,
    ("edges_noise", 0): 0.48915286373863504, ("edges_noise", 7): 0.49234813978426006,
    ("edges_noise", 40): 0.507354345664502, ("edges_noise", 100): 0.5282906458776478,
    ("edges_ties", 0): 0.5632691851440913, ("edges_ties", 7): 0.5644935250589282,
    ("edges_ties", 40): 0.573362105847019, ("edges_ties", 100): 0.5847632983882424,
}


def _tsb_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    n = 2000
    y = np.zeros(n, int)
    late = np.zeros(n)
    for a, b in [(300, 340), (900, 960), (1500, 1520)]:
        y[a:b] = 1
        late[a + 10:b + 10] = 1
    cases = {"perfect": (y, y.astype(float)), "random": (y, rng.random(n)),
             "noisy_good": (y, y + rng.normal(0, 0.5, n)), "late_by_10": (y, late + rng.normal(0, 0.2, n))}
    cases["one_range_only"] = (y, np.where(np.arange(n) < 1000, y, 0) + rng.normal(0, 0.3, n))
    rng = np.random.default_rng(1)
    n = 3000
    y2 = np.zeros(n, int)
    for a, b in [(0, 30), (200, 260), (275, 300), (2950, 2999)]:  # at both ends; two ranges whose buffers merge
        y2[a:b + 1] = 1
    cases["edges_ties"] = (y2, np.round(y2 * 0.3 + rng.random(n) * 0.5, 1))
    cases["edges_noise"] = (y2, y2 * 0.8 + rng.normal(0, 0.4, n))
    return cases


def test_vus_pr_equals_tsb_ad_on_stored_reference_figures() -> None:
    cases = _tsb_cases()
    for (name, window), want in TSB_AD_1_5_VUS_PR.items():
        y, s = cases[name]
        assert vus_pr(s, y, max_buffer=window) == pytest.approx(want, abs=1e-12), (name, window)
