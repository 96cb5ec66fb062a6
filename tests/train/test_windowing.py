"""Windowing: the count formula and that every window is the matching slice (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.errors import BadInput
from edgewatch.train.windowing import sliding_windows, window_count


@settings(max_examples=200, deadline=None)
@given(t=st.integers(0, 60), f=st.integers(1, 5), window=st.integers(1, 20), stride=st.integers(1, 7))
def test_windows_are_the_slices_and_count_follows_the_formula(t: int, f: int, window: int, stride: int) -> None:
    values = np.arange(t * f, dtype=np.float32).reshape(t, f)
    w = sliding_windows(values, window, stride)
    expected_n = (t - window) // stride + 1 if t >= window else 0
    assert w.shape == (expected_n, window, f)
    assert window_count(t, window, stride) == expected_n
    for i in range(expected_n):
        np.testing.assert_array_equal(w[i], values[i * stride:i * stride + window])
    if expected_n:
        # the last window ends at or before the last row, and one more stride would not fit
        assert (expected_n - 1) * stride + window <= t < expected_n * stride + window


def test_windows_are_views_not_copies() -> None:
    values = np.random.default_rng(0).random((1000, 4)).astype(np.float32)
    w = sliding_windows(values, 10, 3)
    assert np.shares_memory(w, values)
    assert not w.flags.writeable


@pytest.mark.parametrize("window,stride", [(0, 1), (3, 0), (-1, 2)])
def test_bad_window_or_stride_is_refused(window: int, stride: int) -> None:
    with pytest.raises(BadInput):
        sliding_windows(np.zeros((10, 2)), window, stride)


def test_one_dimensional_input_is_refused() -> None:
    with pytest.raises(BadInput, match="time, features"):
        sliding_windows(np.zeros(10), 3, 1)
