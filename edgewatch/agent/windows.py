"""Per-stream ring buffers that hand out the last ``window`` rows without copying.

Each stream (a small integer *slot*) owns ``2 * window`` rows and every row
is written twice, at ``i`` and ``i + window``; the latest window is then
always the contiguous slice ``[i + 1, i + 1 + window)``. That keeps the hot
path to two row writes per message and no allocation.
"""

from __future__ import annotations

import numpy as np


class StreamWindows:
    """The latest ``window`` measurements of every stream, and when each is due."""

    def __init__(self, window: int, n_features: int, stride: int, capacity: int = 8,
                 max_capacity: int | None = None) -> None:
        if window < 1 or stride < 1:
            raise ValueError("window and stride must be >= 1")
        self.window = window
        self.n_features = n_features
        self.stride = stride
        self.max_capacity = max_capacity  # slots never exceed this (the agent's --max-streams)
        self._buf = np.zeros((capacity, 2 * window, n_features), dtype=np.float32)
        # per slot, as Python lists: one message reads and writes each, and list items are
        # several times cheaper to touch than NumPy scalars (the hot path)
        self._pos = [0] * capacity  # next row to write, in [0, window)
        self.count = [0] * capacity  # rows pushed since the last reset

    @property
    def capacity(self) -> int:
        return self._buf.shape[0]

    def ensure(self, slot: int) -> None:
        """Grow to hold ``slot`` (doubling, so growth is rare)."""
        if slot < self.capacity:
            return
        new = max(slot + 1, 2 * self.capacity)
        if self.max_capacity:
            new = max(slot + 1, min(new, self.max_capacity))
        extra = new - self.capacity
        self._buf = np.concatenate([self._buf, np.zeros((extra, *self._buf.shape[1:]), np.float32)])
        self._pos += [0] * extra
        self.count += [0] * extra

    def push(self, slot: int, row: list[float] | np.ndarray) -> bool:
        """Append one row; return True when the stream's window is due for scoring.

        Due means the window is full and ``stride`` rows have arrived since
        the last due window: for stride 3 every third point is scored.
        """
        pos = self._pos[slot]
        window = self.window
        buf = self._buf[slot]
        buf[pos] = row
        buf[pos + window] = row
        self._pos[slot] = pos + 1 if pos + 1 < window else 0
        n = self.count[slot] + 1
        self.count[slot] = n
        return n >= window and (n - window) % self.stride == 0

    def latest(self, slot: int) -> np.ndarray:
        """A view of the slot's last ``window`` rows, oldest first (valid until the next push)."""
        start = self._pos[slot]
        return self._buf[slot, start:start + self.window]

    def reset(self, slot: int) -> None:
        """Forget a stream's history (after a reconnect the old rows are not its past)."""
        if slot < self.capacity:
            self._pos[slot] = 0
            self.count[slot] = 0
