"""Per-stream ring buffers that hand out the last ``window`` rows without copying.

Each stream (a small integer *slot*) owns ``2 * window`` rows and every row
is written twice, at ``i`` and ``i + window``; the latest window is then
always the contiguous slice ``[i + 1, i + 1 + window)``. That keeps the hot
path to two row writes per message and no allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SlotGroups:
    """A batch's messages grouped by slot, arrival order kept inside each group (see :func:`group_by_slot`)."""

    order: np.ndarray  # batch positions, sorted by slot (stable)
    slots: np.ndarray  # the distinct slots, ascending
    starts: np.ndarray  # where each slot's messages begin in ``order``
    counts: np.ndarray  # messages of each slot
    group: np.ndarray  # per position of ``order``: the index of its slot in ``slots``
    rank: np.ndarray  # per position of ``order``: how many of its slot's messages came before it in the batch


def group_by_slot(slots: np.ndarray) -> SlotGroups:
    """Group a batch's message slots, so that per-stream state is updated once per stream and batch."""
    order = np.argsort(slots, kind="stable")
    distinct, starts, counts = np.unique(slots[order], return_index=True, return_counts=True)
    group = np.repeat(np.arange(distinct.size), counts)
    return SlotGroups(order, distinct, starts, counts, group, np.arange(slots.size) - starts[group])


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

    def push_many(self, rows: np.ndarray, groups: SlotGroups) -> tuple[np.ndarray, np.ndarray]:
        """Append a batch's rows (``[n, F]``, in batch order) of held slots at once; the due windows.

        Returns the batch positions whose row made a window due (ascending)
        and those windows (``[d, window, F]``, a copy), exactly what
        :meth:`push` and :meth:`latest` give message by message: each
        window is the slot's last ``window - 1`` rows before the batch
        followed by its rows in the batch, cut at the due row.
        """
        w, stride, nf = self.window, self.stride, self.n_features
        held = w - 1
        slots = groups.slots.tolist()
        pos = np.array([self._pos[s] for s in slots], dtype=np.intp)
        count = np.array([self.count[s] for s in slots], dtype=np.int64)
        by_slot = np.take(np.asarray(rows, dtype=np.float32), groups.order, axis=0)
        n = np.repeat(count, groups.counts) + groups.rank + 1  # rows of the stream once this one is in
        due = np.flatnonzero((n >= w) & ((n - w) % stride == 0))
        first = groups.slots * (2 * w)  # each slot's first row in the buffer seen as rows
        x = np.empty((0, w, nf), dtype=np.float32)
        if due.size:
            # the rows before the batch, oldest first, then the batch's rows: one table to gather from
            before = np.take(self._buf.reshape(-1, nf), (first + pos + 1)[:, None] + np.arange(held), axis=0)
            table = np.concatenate([before.reshape(-1, nf), by_slot])
            g, r = groups.group[due], groups.rank[due]
            at = r[:, None] + np.arange(w)  # positions in the slot's rows-before-then-batch sequence
            index = np.where(at < held, g[:, None] * held + at,
                             held * len(slots) + groups.starts[g][:, None] + at - held)
            x = np.take(table, index, axis=0)
        last = groups.rank >= np.repeat(groups.counts - w, groups.counts)  # older rows would be overwritten
        dest = first[groups.group[last]] + (np.repeat(pos, groups.counts)[last] + groups.rank[last]) % w
        # whole rows as single items: NumPy's fancy writes of 1-D items are several times faster than of rows
        as_rows = np.dtype((np.void, by_slot.itemsize * nf))
        buf_rows = self._buf.reshape(-1, nf).view(as_rows).reshape(-1)
        new_rows = np.ascontiguousarray(by_slot[last]).view(as_rows).reshape(-1)
        buf_rows[dest] = new_rows
        buf_rows[dest + w] = new_rows
        for s, p, c in zip(slots, ((pos + groups.counts) % w).tolist(), (count + groups.counts).tolist()):
            self._pos[s] = p
            self.count[s] = c
        if not due.size:
            return due, x
        batch_pos = groups.order[due]
        back = np.argsort(batch_pos, kind="stable")
        return batch_pos[back], np.take(x, back, axis=0)
