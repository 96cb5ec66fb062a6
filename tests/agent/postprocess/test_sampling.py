"""Post-process kinds that adapt per stream from its first rows: lengths in the stream's time, counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgewatch.agent.postprocess import make_postprocessor
from edgewatch.agent.postprocess.sampling import Sampling, anscombe, interval_seconds, looks_like_counts
from edgewatch.contract import MAX_KIND, PostProcess
from edgewatch.contract.postprocess import spec_problems
from edgewatch.errors import BadModelFile

LEVELS = {"bins": 8, "range_rows": 256, "rest": 100, "cap": 4096}
NOVELTY = {"m": 24, "span": 192, "min_span": 48, "ratio": 2, "short": 1, "long": 8640, "reestimate": 100,
           "min_std": 1e-9, "damp": 0.5, "alert": 0.5, "learning": 50, "hold": 100, "refractory": 15}
SAMPLING = {"count_rows": 48, "interval_rows": 16}
LEVELS_IN_TIME = {**LEVELS, **SAMPLING, "range_seconds": 256 * 300, "range_min": 48, "range_max": 1536}
NOVELTY_IN_TIME = {**NOVELTY, **SAMPLING, "m_seconds": 24 * 300}


def _series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 1, n)
    x[n // 2:n // 2 + 20] += 30
    x[int(n * 0.8):] += 25  # new levels late in the stream
    return x


def _times(n: int, step: float) -> np.ndarray:
    return 1.7e9 + np.arange(n) * step


def _run(kind: str, params: dict, x: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    return make_postprocessor(PostProcess(kind, params)).update_many(np.zeros(len(x), np.int64), x, times=times)


def test_the_interval_is_the_median_of_the_first_positive_intervals() -> None:
    assert interval_seconds(_times(100, 300).tolist(), 16) == 300
    t = _times(40, 3600)
    t[5] += 7200  # one gap among the first 16 intervals does not move the median
    assert interval_seconds(t.tolist(), 16) == 3600
    assert interval_seconds(np.r_[_times(30, 600)[:20], _times(80, 60) + 1e6].tolist(), 16) == 600  # later unread
    assert interval_seconds([1.7e9] * 40, 16) is None  # no positive interval: rows
    assert interval_seconds([math.nan] * 40, 16) is None  # no times at all
    assert interval_seconds([1.0, 3.0], 16) == 2.0


def test_counts_are_non_negative_integers_over_the_whole_first_rows() -> None:
    c = np.random.default_rng(1).poisson(4, 60).astype(float).tolist()
    assert looks_like_counts(c, 48)
    assert not looks_like_counts(c[:47], 48)  # too few rows to tell
    assert not looks_like_counts([v + 0.5 for v in c], 48)
    assert not looks_like_counts([v - 20 for v in c], 48)
    assert not looks_like_counts(c, 0)  # off
    assert anscombe(0.0) == pytest.approx(2 * math.sqrt(0.375))
    assert anscombe(100.0) == pytest.approx(2 * math.sqrt(100.375))
    assert anscombe(-4.375) == pytest.approx(-4.0)  # a later negative value keeps its sign


def test_levels_learn_their_range_over_the_same_time_at_every_rate() -> None:
    x = _series(2400, 3)
    five = _run("levels", LEVELS_IN_TIME, x, _times(len(x), 300))
    np.testing.assert_array_equal(five, _run("levels", LEVELS, x))  # 5 minutes: 256 rows, as before
    np.testing.assert_array_equal(_run("levels", LEVELS_IN_TIME, x), five)  # no times: the rows
    hourly = _run("levels", LEVELS_IN_TIME, x, _times(len(x), 3600))
    np.testing.assert_array_equal(hourly, _run("levels", {**LEVELS, "range_rows": 48}, x))  # 21 rows -> the floor
    fast = _run("levels", LEVELS_IN_TIME, x, _times(len(x), 1))
    np.testing.assert_array_equal(fast, _run("levels", {**LEVELS, "range_rows": 1536}, x))  # the ceiling
    ten = _run("levels", LEVELS_IN_TIME, x, _times(len(x), 600))
    np.testing.assert_array_equal(ten, _run("levels", {**LEVELS, "range_rows": 128}, x))
    assert not np.array_equal(hourly, five) and hourly.max() == 1.0


def test_the_novelty_shape_length_is_time_on_coarser_streams_and_rows_on_finer_ones() -> None:
    x = _series(1200, 4)
    five = _run("novelty", NOVELTY_IN_TIME, x, _times(len(x), 300))
    np.testing.assert_array_equal(five, _run("novelty", NOVELTY, x))
    finer = _run("novelty", NOVELTY_IN_TIME, x, _times(len(x), 60))
    np.testing.assert_array_equal(finer, five)  # at most m rows
    hourly = _run("novelty", NOVELTY_IN_TIME, x, _times(len(x), 3600))
    np.testing.assert_array_equal(hourly, _run("novelty", {**NOVELTY, "m": 2}, x))  # 2 hours of an hourly stream
    assert not np.array_equal(hourly, five) and hourly.max() >= 0.5


def test_streams_of_different_rates_in_one_step_each_get_their_own_lengths() -> None:
    """Interleaved rows of a 5-minute, an hourly and an untimed stream, in batches that cut their first rows."""
    spec = PostProcess(MAX_KIND, parts=[PostProcess("novelty", NOVELTY_IN_TIME),
                                        PostProcess("levels", LEVELS_IN_TIME)])
    n = 1000
    xs = {0: _series(n, 5), 1: _series(n, 6), 2: _series(n, 7)}
    ts = {0: _times(n, 300), 1: _times(n, 3600), 2: np.full(n, np.nan)}
    alone = {s: make_postprocessor(spec).update_many(np.full(n, s), xs[s], times=ts[s]) for s in xs}
    both = make_postprocessor(spec)
    slots = np.tile([0, 1, 2], n)
    rows = np.repeat(np.arange(n), 3)
    values = np.array([xs[s][r] for s, r in zip(slots, rows)])
    times = np.array([ts[s][r] for s, r in zip(slots, rows)])
    got = np.concatenate([both.update_many(slots[a:a + 37], values[a:a + 37], times=times[a:a + 37])
                          for a in range(0, len(slots), 37)])
    for s in xs:
        np.testing.assert_array_equal(got[slots == s], alone[s])
    novelty, levels = both.parts[0][0], both.parts[1][0]
    assert novelty.sampling_of(0) == Sampling(300.0, False) and novelty.sampling_of(1) == Sampling(3600.0, False)
    assert levels.sampling_of(2) == Sampling(None, False)
    assert not np.array_equal(alone[0], alone[1])


def test_a_count_stream_is_read_through_anscombe_and_another_stream_is_not() -> None:
    rng = np.random.default_rng(8)
    n = 1200
    lam = 10 + 5 * np.sin(np.arange(n) * 2 * np.pi / 96)
    counts = rng.poisson(lam).astype(np.float64)
    counts[900:906] += 60
    t = _times(n, 300)
    for kind, adapted, plain in (("levels", LEVELS_IN_TIME, LEVELS), ("novelty", NOVELTY_IN_TIME, NOVELTY)):
        got = _run(kind, adapted, counts, t)
        np.testing.assert_allclose(got, _run(kind, plain, np.array([anscombe(v) for v in counts])), atol=1e-12)
        assert not np.allclose(got, _run(kind, plain, counts))
    got = _run("novelty", NOVELTY_IN_TIME, counts, t)
    assert got[900:930].max() >= 0.5  # the burst is still caught after the transform
    almost = counts.copy()
    almost[47] += 0.5  # one non-integer among the first 48 values: not counts
    np.testing.assert_array_equal(_run("levels", LEVELS_IN_TIME, almost, t), _run("levels", LEVELS, almost))
    step = make_postprocessor(PostProcess("levels", LEVELS_IN_TIME))
    step.update_many(np.zeros(n, np.int64), counts, times=t)
    assert step.sampling_of(0) == Sampling(300.0, True)


def test_the_decision_waits_for_finite_rows_and_a_reset_forgets_it() -> None:
    x = _series(600, 9)
    with_nan = np.r_[x[:10], np.nan, np.inf, x[10:]]
    t = _times(len(with_nan), 3600)
    got = _run("levels", LEVELS_IN_TIME, with_nan, t)
    want = _run("levels", {**LEVELS, "range_rows": 48}, with_nan)
    np.testing.assert_array_equal(got, want)
    step = make_postprocessor(PostProcess("levels", LEVELS_IN_TIME))
    step.update_many(np.zeros(100, np.int64), x[:100], times=_times(100, 3600))
    assert step.sampling_of(0) == Sampling(3600.0, False)
    step.reset(0)
    assert step.sampling_of(0) is None
    step.update_many(np.zeros(100, np.int64), x[:100], times=_times(100, 300))
    assert step.sampling_of(0) == Sampling(300.0, False)


def test_a_file_without_the_new_parameters_buffers_nothing_and_reads_no_time() -> None:
    x = _series(1200, 10)
    for kind, params in (("levels", LEVELS), ("novelty", NOVELTY)):
        step = make_postprocessor(PostProcess(kind, params))
        got = step.update_many(np.zeros(len(x), np.int64), x, times=_times(len(x), 3600))
        np.testing.assert_array_equal(got, _run(kind, params, x))
        assert step.sampling_of(0) is None  # no decision kept: the kind's own state from the first row


def test_max_gives_an_aux_group_the_first_rows_time() -> None:
    """A part fed a window group sees the first window's values at once, all at that row's time: the buffer
    fills before any positive interval, so the stream keeps the rows (the card's range_rows)."""
    spec = PostProcess(MAX_KIND, parts=[PostProcess("levels", {**LEVELS_IN_TIME, "range_rows": 64},
                                                    input="aux:window")])
    spec.bind_aux({"window": slice(0, 64)})
    x = _series(600, 11)
    windows = np.lib.stride_tricks.sliding_window_view(x, 64)
    step = make_postprocessor(spec)
    got = step.update_many(np.zeros(len(windows), np.int64), windows[:, -1], windows,
                           times=_times(len(x), 3600)[63:])
    assert step.parts[0][0].sampling_of(0) == Sampling(None, False)
    np.testing.assert_array_equal(got, _run("levels", {**LEVELS, "range_rows": 64}, x)[63:])
    assert got.max() == 1.0


@pytest.mark.parametrize("params, words", [
    ({**LEVELS_IN_TIME, "range_min": 2000}, "range_min <= range_max"),
    ({**LEVELS_IN_TIME, "range_min": 24}, "buffered"),
    ({**LEVELS, "count_rows": 300}, "buffered"),
    ({**LEVELS_IN_TIME, "range_seconds": -1}, "range_seconds >= 0"),
    ({**LEVELS_IN_TIME, "interval_rows": 0}, "interval_rows"),
    ({**LEVELS_IN_TIME, "range_secs": 60}, "unknown parameters"),
])
def test_the_contract_checks_the_new_levels_parameters(params: dict, words: str) -> None:
    problems = spec_problems(PostProcess("levels", params))
    assert problems and words in problems[0]
    with pytest.raises(BadModelFile, match=words):
        make_postprocessor(PostProcess("levels", params))


@pytest.mark.parametrize("params, words", [
    ({**NOVELTY_IN_TIME, "m_seconds": -5}, "m_seconds >= 0"),
    ({**NOVELTY_IN_TIME, "count_rows": 80}, "speaks from row 67"),  # 48 - 1 + 20 learning rows
    ({**NOVELTY_IN_TIME, "count_rows": -1}, "count_rows"),
])
def test_the_contract_checks_the_new_novelty_parameters(params: dict, words: str) -> None:
    problems = spec_problems(PostProcess("novelty", params))
    assert problems and words in problems[0]
    assert not spec_problems(PostProcess("novelty", NOVELTY_IN_TIME))
    assert not spec_problems(PostProcess("levels", LEVELS_IN_TIME))


def test_expected_range_matches_the_tabulated_constants() -> None:
    from edgewatch.contract.postprocess import expected_range

    for n, d2 in ((2, 1.128), (5, 2.326), (10, 3.078), (25, 3.931), (50, 4.498), (100, 5.015), (1000, 6.483)):
        assert expected_range(n) == pytest.approx(d2, abs=6e-4)
    assert expected_range(1) == 0.0 and expected_range(0) == 0.0
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20000, 48))
    assert expected_range(48) == pytest.approx(float(np.mean(z.max(1) - z.min(1))), rel=5e-3)  # seeded check


def test_levels_in_the_streams_spread_are_as_wide_at_every_rate() -> None:
    """``width`` 1: the card's 256 range rows are the reference (5 minutes: unchanged); an hourly stream's range
    of 48 rows is cut into bins * d(48) / d(256) levels (6.32), a 1-second stream's of 1,536 rows into 9.52, and
    without times the rows are the card's (unchanged)."""
    from edgewatch.contract.postprocess import LevelsParams, expected_range

    spread = {**LEVELS_IN_TIME, "width": 1}
    x = _series(2400, 3)
    five = _run("levels", spread, x, _times(len(x), 300))
    np.testing.assert_array_equal(five, _run("levels", LEVELS_IN_TIME, x, _times(len(x), 300)))
    np.testing.assert_array_equal(_run("levels", spread, x), _run("levels", LEVELS_IN_TIME, x))
    p = LevelsParams.from_dict(spread)
    assert p.bins_for(256) == 8.0 and p.bins_for(48) == pytest.approx(8 * expected_range(48) / expected_range(256))
    assert 6.3 < p.bins_for(48) < 6.35 and 9.5 < p.bins_for(1536) < 9.55
    for step, rows in ((3600, 48), (1, 1536), (600, 128)):
        got = _run("levels", spread, x, _times(len(x), step))
        want = _run("levels", {**LEVELS, "range_rows": rows, "bins": p.bins_for(rows)}, x)
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, _run("levels", LEVELS_IN_TIME, x, _times(len(x), step)))


def test_wider_levels_on_a_short_range_raise_fewer_ordinary_new_levels() -> None:
    """Six seeded hourly streams of Gaussian noise (nothing to find): with levels cut across a 48-row range,
    ordinary values reach new levels more often than with the levels as wide as 256 rows give."""
    spread = {**LEVELS_IN_TIME, "width": 1}
    alarms = {"range": 0, "spread": 0}
    for seed in range(6):
        x = np.random.default_rng(seed).normal(0, 1, 3000)
        ts = _times(len(x), 3600)
        alarms["range"] += int(_run("levels", LEVELS_IN_TIME, x, ts).sum())
        alarms["spread"] += int(_run("levels", spread, x, ts).sum())
    assert alarms["spread"] < alarms["range"]


def test_levels_in_the_streams_spread_keep_a_whole_levels_margin_at_both_ends() -> None:
    """With ``edges`` 1 a stream and its negative get the same alarms (ninth round); a 48-row range holds 6.32
    levels of the stream's spread, so the levels above it are counted from its maximum, not from its minimum."""
    spread = {**LEVELS_IN_TIME, "edges": 1, "width": 1}
    for seed in range(4):
        walk = np.cumsum(np.random.default_rng(seed).normal(0, 1, 1500))
        ts = _times(len(walk), 3600)
        up = _run("levels", spread, walk, ts)
        np.testing.assert_array_equal(up, _run("levels", spread, -walk, ts))
        assert up.sum() >= 2
    x = np.r_[np.linspace(0.0, 1.0, 48), [1.0 + 0.9 / 6.32] * 10, [1.0 + 1.1 / 6.32] * 10]  # under / over a level
    got = _run("levels", spread, x, _times(len(x), 3600))
    assert got[48:58].sum() == 0.0 and got[58] == 1.0
