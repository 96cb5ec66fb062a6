"""Cutting a multivariate series into fixed-length windows.

``sliding_windows(values, window, stride)`` takes ``values`` of shape
``[T, F]`` and returns ``[N, window, F]`` where window ``i`` is
``values[i * stride : i * stride + window]`` and

* ``N = (T - window) // stride + 1`` when ``T >= window``,
* ``N = 0`` when ``T < window`` (an empty ``[0, window, F]`` array).

The result is a read-only *view* of ``values`` when it is a NumPy array
(no copy, so windowing 200,000 rows costs nothing); copy it before writing
to it. A trailing remainder shorter than ``stride`` is dropped: the last
window always ends at or before the last row.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgewatch.errors import BadInput


def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Windows of ``window`` consecutive rows every ``stride`` rows, as a view.

    Models train and score on exactly these windows, and the agent forms the
    same windows from a live stream, so both sides must agree on this rule.
    """
    if window < 1 or stride < 1:
        raise BadInput(f"window and stride must be >= 1, got window={window} stride={stride}")
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise BadInput(f"expected a [time, features] array, got shape {arr.shape}")
    t, f = arr.shape
    if t < window:
        return np.empty((0, window, f), dtype=arr.dtype)
    # sliding_window_view puts the window axis last: [T-w+1, F, w] -> [N, w, F]
    view = sliding_window_view(arr, window, axis=0)[::stride]
    return view.transpose(0, 2, 1)


def window_count(n_rows: int, window: int, stride: int = 1) -> int:
    """How many windows :func:`sliding_windows` yields for ``n_rows`` rows."""
    return 0 if n_rows < window else (n_rows - window) // stride + 1
