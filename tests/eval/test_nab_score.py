"""NAB scoring: hand-checkable cases, the vectorised sweep against brute force, and the reader's quirks."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from edgewatch.data.nab import STANDARD_PROFILES, load_corpus, probationary_length, read_series
from edgewatch.eval.nab_score import file_score, nab_score, normalise, row_rewards, sweep

STD = STANDARD_PROFILES[0]
N = 100  # probation = 15 rows
WIN = (40, 49)  # 10 rows


def sig(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def one_file(hits: list[int], n: int = N, windows: list[tuple[int, int]] | None = None) -> float:
    """Raw standard-profile score of a file whose detections are exactly ``hits``."""
    s = np.zeros(n)
    s[hits] = 1.0
    return file_score(s, row_rewards(n, [WIN] if windows is None else windows), STD, 0.5)


def test_probationary_length_follows_nab() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4032) == 604
    assert probationary_length(22695) == 750


def test_perfect_detector_scores_100_and_null_scores_0() -> None:
    keys = ["a/x.csv", "a/y.csv"]
    windows = [[(40, 49)], [(20, 29), (70, 79)]]
    perfect = [np.zeros(N), np.zeros(N)]
    for sc, ws in zip(perfect, windows):
        for a, _ in ws:
            sc[a] = 1.0
    (res,) = nab_score(keys, perfect, windows, [STD])
    assert res.score == pytest.approx(100.0)
    assert res.raw == pytest.approx(3.0)
    (null,) = nab_score(keys, [np.full(N, 0.5), np.full(N, 0.5)], windows, [STD])
    assert null.score == pytest.approx(0.0)
    assert null.threshold == math.inf


def test_detection_at_window_start_beats_one_at_its_end() -> None:
    start, end = one_file([40]), one_file([49])
    assert start == pytest.approx(1.0)
    # NAB's position of the last row of a width-10 window is -(49 - 49 + 1)/10 = -0.1
    assert end == pytest.approx(sig(-0.1) / sig(-1.0))
    assert 0 < end < start


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert one_file([44, 45, 46, 47]) == pytest.approx(one_file([44]))
    assert one_file([44]) == pytest.approx(sig(-(49 - 44 + 1) / 10) / sig(-1.0))


def test_false_positive_just_after_a_window_costs_less_than_one_far_away() -> None:
    near = one_file([40, 50]) - 1.0
    far = one_file([40, 95]) - 1.0
    assert near == pytest.approx(STD.fp_weight * sig(1 / 9))  # distance 1 over (width - 1)
    assert far == pytest.approx(-STD.fp_weight)  # beyond 3 window lengths: full cost
    assert far < near < 0


def test_missed_window_and_false_positive_before_any_window() -> None:
    assert one_file([]) == pytest.approx(-STD.fn_weight)
    assert one_file([30]) == pytest.approx(-STD.fn_weight - STD.fp_weight)


def test_file_without_windows_pays_each_false_positive_and_ignores_probation() -> None:
    assert one_file([50, 60, 70], windows=[]) == pytest.approx(-3 * STD.fp_weight)
    assert one_file([3, 10, 14], windows=[]) == 0.0  # all inside the 15 probationary rows
    r = row_rewards(N, [])
    assert r.n_windows == 0


def test_window_inside_probation_is_not_scored() -> None:
    r = row_rewards(N, [(2, 8)])
    assert r.n_windows == 0
    assert one_file([], windows=[(2, 8)]) == 0.0


def test_threshold_is_chosen_over_the_corpus_and_profiles_differ() -> None:
    # One file: an early detection (score 0.9) and three false positives (0.8);
    # another: one false positive at 0.95.
    a = np.zeros(N)
    a[40], a[[60, 70, 80]] = 0.9, 0.8
    b = np.zeros(N)
    b[50] = 0.95
    res = nab_score(["c/a.csv", "c/b.csv"], [a, b], [[WIN], []], STANDARD_PROFILES)
    by = {r.profile: r for r in res}
    assert by["standard"].threshold == pytest.approx(0.9)
    assert by["standard"].raw == pytest.approx(1.0 - 0.11)
    assert by["standard"].score == pytest.approx(normalise(1.0 - 0.11, 1, STD))
    assert by["standard"].per_file["c/b.csv"] == pytest.approx(-0.11)
    assert by["reward_low_FP_rate"].score < by["standard"].score < by["reward_low_FN_rate"].score


def test_vectorised_sweep_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    lengths = [300, 500, 120]
    windows = [[(100, 129), (200, 229)], [], [(60, 71)]]
    scores = [np.round(rng.random(n), 2) for n in lengths]  # many ties
    rewards = [row_rewards(n, w) for n, w in zip(lengths, windows)]
    for profile in STANDARD_PROFILES:
        sw = sweep(scores, rewards, profile)
        for thr, total in zip(sw.thresholds[1:], sw.totals[1:]):
            brute = sum(file_score(s, r, profile, thr) for s, r in zip(scores, rewards))
            assert total == pytest.approx(brute, abs=1e-9)
        assert sw.totals[0] == pytest.approx(-profile.fn_weight * 3)


def test_reader_handles_crlf_missing_newline_and_unsorted_timestamps(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_bytes(b"timestamp,value\r\n2014-01-01 00:00:00,1\r\n2014-01-01 00:05:00,2\r\n"
                  b"2014-01-01 00:05:00,3\r\n2014-01-01 00:00:00,4.5")
    ts, v = read_series(f)
    assert v.tolist() == [1.0, 2.0, 3.0, 4.5]
    assert ts[1] == ts[2] and ts[3] < ts[2]


DATASETS = Path(os.environ.get("EDGEWATCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
NAB = DATASETS / "nab"


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (NAB / "data").is_dir(), reason=f"NAB dataset not found at {NAB}")
def test_windowed_gaussian_reproduces_the_published_subset_scores() -> None:
    """The datasets README lists windowedGaussian at 30.81 / 25.17 / 34.21 with the upstream scorer."""
    from edgewatch.data.nab import read_profiles
    from edgewatch.eval.detectors.baselines import WindowedGaussianDetector

    files = load_corpus(NAB)
    assert len(files) == 25 and sum(len(f.windows) for f in files) == 39
    det = WindowedGaussianDetector()
    res = nab_score([f.key for f in files], [det.score_series(f.values) for f in files],
                    [f.windows for f in files], read_profiles(NAB))
    assert [round(r.score, 2) for r in res] == [30.81, 25.17, 34.21]


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (NAB / "data").is_dir(), reason=f"NAB dataset not found at {NAB}")
def test_random_detector_reproduces_the_published_subset_scores() -> None:
    """NAB's random detector (seed 42 per file) scores 23.50 / 18.50 / 33.82 on this subset."""
    from edgewatch.data.nab import read_profiles
    from edgewatch.eval.detectors.baselines import RandomDetector

    files = load_corpus(NAB)
    det = RandomDetector()
    res = nab_score([f.key for f in files], [det.score_series(f.values, f.key) for f in files],
                    [f.windows for f in files], read_profiles(NAB))
    assert [round(r.score, 2) for r in res] == [23.50, 18.50, 33.82]
