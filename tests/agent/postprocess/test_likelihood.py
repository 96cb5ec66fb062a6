"""The agent's likelihood post-process: per-stream state, stable scores low, a jump high."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from edgewatch.agent.postprocess import Identity, Likelihood, make_postprocessor
from edgewatch.contract.postprocess import KindParams, LikelihoodParams
from edgewatch.contract import PostProcess
from edgewatch.errors import BadModelFile


def series(seed: int, n: int = 1200, jump_at: int | None = 1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(1.0, 0.1, n))
    if jump_at is not None:
        x[jump_at:jump_at + 5] += 3.0
    return x


def test_stable_scores_stay_low_and_a_jump_goes_high() -> None:
    post = make_postprocessor(PostProcess("likelihood", {}))
    out = post.update_many(np.zeros(1200, dtype=int), series(0))
    assert out.shape == (1200,)
    assert np.all(out[:150] == 0.0)  # learning period
    assert out[200:1000].max() < 0.5
    assert out[1000:1005].max() > 0.9
    assert np.all((out >= 0) & (out <= 1))


def test_streams_keep_separate_state_and_order_within_a_stream_is_what_counts() -> None:
    a, b = series(1), series(2, jump_at=None)
    alone_a = make_postprocessor(PostProcess("likelihood", {})).update_many(np.zeros(a.size, int), a)
    alone_b = make_postprocessor(PostProcess("likelihood", {})).update_many(np.zeros(b.size, int), b)
    mixed = make_postprocessor(PostProcess("likelihood", {}))
    slots = np.tile([3, 7], a.size)
    both = mixed.update_many(slots, np.column_stack([a, b]).ravel())
    np.testing.assert_allclose(both[slots == 3], alone_a)
    np.testing.assert_allclose(both[slots == 7], alone_b)


def test_reset_forgets_a_stream() -> None:
    post = make_postprocessor(PostProcess("likelihood", {"learning": 10}))
    post.update_many(np.zeros(300, int), series(3, n=300, jump_at=None))
    post.reset(0)
    assert np.all(post.update_many(np.zeros(10, int), np.ones(10)) == 0.0)  # learning again


def test_hold_keeps_one_alert_per_event() -> None:
    x = series(4)
    x[1000:1050] += 3.0  # a long event
    free = Likelihood(LikelihoodParams()).update_many(np.zeros(x.size, int), x)
    held = Likelihood(LikelihoodParams(alert=0.5, hold=100, damp=0.5)).update_many(np.zeros(x.size, int), x)
    assert (free[1000:1100] >= 0.5).sum() > 5
    assert (held[1000:1100] >= 0.5).sum() == 1


def test_none_kind_passes_scores_and_bad_specs_are_refused() -> None:
    post = make_postprocessor(PostProcess())
    assert isinstance(post, Identity)
    np.testing.assert_array_equal(post.update_many(np.zeros(3, int), np.array([1.0, 2.0, 3.0])), [1, 2, 3])
    with pytest.raises(BadModelFile, match="unknown post-process kind"):
        make_postprocessor(PostProcess("kalman", {}))
    with pytest.raises(BadModelFile, match="unknown parameters"):
        make_postprocessor(PostProcess("likelihood", {"shrot": 5}))
    with pytest.raises(BadModelFile, match="out of range"):
        make_postprocessor(PostProcess("likelihood", {"short": 0}))


def test_postprocess_does_not_import_torch_or_onnx() -> None:
    code = ("import sys; import edgewatch.agent.postprocess, edgewatch.data.nab; "
            "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_student_tail_follows_scipy_within_the_stated_error() -> None:
    """Wallace's approximation against the exact t tail, in the kind's output units, from 19 degrees of freedom."""
    special = pytest.importorskip("scipy.special")
    from edgewatch.agent.postprocess.likelihood import log_likelihood, student_as_normal

    for dof in (19, 50, 400, 8639):
        for t in np.linspace(0.1, 40.0, 400):
            exact = float(special.stdtr(dof, -t))
            if exact < 1e-12:
                break
            z = student_as_normal(float(t), dof)
            approx = 0.5 * math.erfc(z / math.sqrt(2.0))
            assert abs(log_likelihood(1 - approx) - log_likelihood(1 - exact)) < 0.006, (dof, t)
    assert student_as_normal(3.0, 0) == 0.0  # one value: no spread, nothing unusual
    assert student_as_normal(-2.0, 30) == -student_as_normal(2.0, 30) < 0


def test_student_tail_is_strict_while_the_history_is_short_and_gaussian_once_it_is_long() -> None:
    rng = np.random.default_rng(7)
    x = np.abs(rng.normal(1.0, 0.1, 3000))
    x[60] += 0.3  # 3 deviations of the generator, about 4.3 of the first 40 values: 40 values cannot tell how rare
    x[2900] += 0.45
    slots = np.zeros(x.size, int)
    params = {"learning": 40, "short": 1, "min_std": 1e-9}
    gauss = make_postprocessor(PostProcess("likelihood", params)).update_many(slots, x)
    student = make_postprocessor(PostProcess("likelihood", {**params, "tail": 1})).update_many(slots, x)
    assert np.all(student <= gauss + 1e-12)
    assert gauss[60] >= 0.5 > student[60]  # the Gaussian calls it 1 in 100,000 after 40 values; the t does not
    assert student[2900] >= 0.5 and abs(student[2900] - gauss[2900]) < 0.01  # after 2,900 values they agree
    assert np.all(student[:40] == 0.0)


def test_tail_is_checked_and_an_older_reader_refuses_it() -> None:
    with pytest.raises(BadModelFile, match="tail must be one of 0 \\(gaussian\\), 1 \\(student\\)"):
        make_postprocessor(PostProcess("likelihood", {"tail": 2}))
    # a reader whose schema predates the parameter (the same fields without 'tail') refuses a card that sets it,
    # with the reason; a card without it means the Gaussian tail, as before
    older = dataclasses.make_dataclass("LikelihoodParams", [(f.name, float, f.default)
                                                            for f in dataclasses.fields(LikelihoodParams)
                                                            if f.name != "tail"], bases=(KindParams,))
    with pytest.raises(BadModelFile, match="unknown parameters \\['tail'\\]"):
        older.from_dict({"learning": 20, "tail": 1}, "likelihood")
    assert Likelihood(LikelihoodParams.from_dict({"learning": 20})).student is False


def test_overlap_bias_is_the_mean_sample_variance_of_overlapping_means() -> None:
    """Means of the last m values of white noise (triangular autocorrelation over m rows): the average sample
    variance of n consecutive ones over their true variance is what :func:`overlap_bias` gives (seeded)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from edgewatch.agent.postprocess.likelihood import overlap_bias

    rng = np.random.default_rng(11)
    for n, m in ((25, 12), (50, 24), (100, 48), (20, 6), (400, 48)):
        runs = sliding_window_view(rng.normal(size=(4000, n + m - 1)), m, axis=1).mean(axis=2)
        got = float(runs.var(axis=1, ddof=1).mean() * m)  # the true variance of a mean of m is 1/m
        assert got == pytest.approx(overlap_bias(n, m), abs=0.03)
    assert overlap_bias(25, 12) < 0.65 and overlap_bias(8640, 192) > 0.97  # strong early, gone once long
    assert overlap_bias(25, 1) == overlap_bias(1, 12) == 1.0 and overlap_bias(3, 64) >= 1 / 3


def test_overlap_widens_the_spread_of_a_short_history_only() -> None:
    """With ``overlap`` 12 a likelihood reads a value against a wider spread while its history is short, so a
    value 6 sample deviations out after 25 overlapping values is not an alert (the plain reading's is), and
    it agrees with the plain one once the history is long."""
    from numpy.lib.stride_tricks import sliding_window_view

    rng = np.random.default_rng(5)
    x = sliding_window_view(rng.normal(size=3000 + 11), 12).mean(axis=1)
    x[30] = x[:25].mean() + 6 * x[:25].std(ddof=1)
    x[2900] = x.mean() + 6 * x.std()
    params = LikelihoodParams.from_dict({"learning": 25, "short": 1, "min_std": 1e-9, "tail": 1})
    slots = np.zeros(x.size, int)
    plain = Likelihood(params).update_many(slots, x)
    wide = Likelihood(params, overlap=12).update_many(slots, x)
    assert plain[30] >= 0.5 > wide[30]
    assert np.all(wide[25:] <= plain[25:] + 1e-12)
    assert wide[2900] >= 0.5 and abs(wide[2900] - plain[2900]) < 0.01
