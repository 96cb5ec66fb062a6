"""The agent's likelihood post-process: per-stream state, stable scores low, a jump high."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgewatch.agent.postprocess import Identity, Likelihood, make_postprocessor
from edgewatch.contract.postprocess import LikelihoodParams
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
