"""The first-rows range check fed a batch at once judges what it judged row by row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.watch.range_check import FirstRowsRange

def _range_check() -> FirstRowsRange:
    return FirstRowsRange(["a", "b"], np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([0.3, 0.3]),
                          np.array([True, True]), rows=12, block=4)


def _observe_row_by_row(check: FirstRowsRange, slots: np.ndarray, rows: np.ndarray) -> None:
    """The rule of FirstRowsRange.observe, one row at a time (what the column-wise form replaced)."""
    for slot, row in zip(slots.tolist(), rows):
        if slot >= check._count.size:
            check._grow(slot)
        if check._count[slot] >= check.rows or not np.isfinite(row).all():
            continue
        check._outside[slot] += (row < check.low) | (row > check.high)
        check._sum[slot] += row
        check._count[slot] += 1
        if check._count[slot] % check.block == 0:
            outside, total = check._outside[slot].copy(), check._sum[slot].copy()
            check._outside[slot] = 0
            check._sum[slot] = 0.0
            if check._judge(slot, outside, total):
                check._count[slot] = check.rows


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.5, 3.0, -2.0, float("nan")])),
                         min_size=1, max_size=25), min_size=1, max_size=5))
def test_range_check_in_columns_equals_row_by_row(batches) -> None:
    bulk, single = _range_check(), _range_check()
    for batch in batches:
        slots = np.array([s for s, _ in batch])
        rows = np.array([[v, 0.5] for _, v in batch])
        bulk.observe(slots, rows)
        _observe_row_by_row(single, slots, rows)
        got, want = bulk.take(), single.take()
        assert [(f.slot, f.features) for f in got] == [(f.slot, f.features) for f in want]
        for a, b in zip(got, want):
            for name in a.features:
                assert a.outside[name] == pytest.approx(b.outside[name], rel=1e-12)
        n = single._count.size
        np.testing.assert_array_equal(bulk._count[:n], single._count)
        np.testing.assert_array_equal(bulk._outside[:n], single._outside)
        np.testing.assert_allclose(bulk._sum[:n], single._sum, rtol=1e-12)
