"""The public base of the post-process kinds: what a step is, and the per-stream plumbing most share."""

from __future__ import annotations

import math
from itertools import repeat
from typing import Protocol

import numpy as np


def flat_batch(slots: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A batch's stream slots (int64) and raw scores (float64), flat; unequal lengths are the caller's bug."""
    slots = np.asarray(slots).astype(np.int64, copy=False).ravel()
    raw = np.asarray(scores, dtype=np.float64).ravel()
    if slots.shape != raw.shape:
        raise ValueError(f"{slots.size} slots for {raw.size} scores")
    return slots, raw


class PostProcessor(Protocol):
    """Turns raw scores into decision scores; state is kept per integer stream slot."""

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None,
                    times: np.ndarray | None = None) -> np.ndarray:
        """Feed scores in arrival order (``slots[i]`` is the stream of ``scores[i]``, ``aux[i]`` its aux row,
        ``times[i]`` its window's time in seconds: the message's timestamp, else its arrival; None: unknown)."""
        ...

    def reset(self, slot: int) -> None:
        """Forget a stream (it reconnected, or its window was reset)."""
        ...


class PerStream:
    """The public base of a stateful kind: one state per stream slot, scores taken one by one in arrival order.

    A kind defines ``_new_state()`` (a stream's empty state) and ``_one(state, x)`` (the output for one raw
    score), or ``_one_at(state, x, t)`` when it reads the row's time (NaN when unknown);
    ``update_many`` and ``reset`` come from here.
    """

    def __init__(self) -> None:
        self._streams: dict[int, object] = {}

    def _new_state(self) -> object:  # pragma: no cover - abstract
        raise NotImplementedError

    def _one(self, st, x: float) -> float:  # noqa: ANN001 - the subclass's state type
        raise NotImplementedError

    def _one_at(self, st, x: float, t: float) -> float:  # noqa: ANN001 - the subclass's state type
        return self._one(st, x)

    def reset(self, slot: int) -> None:
        self._streams.pop(int(slot), None)

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None,
                    times: np.ndarray | None = None) -> np.ndarray:
        slots, raw = flat_batch(slots, scores)
        ts = repeat(math.nan) if times is None else np.asarray(times, dtype=np.float64).ravel().tolist()
        out = np.empty(raw.size)
        streams, one = self._streams, self._one_at
        for i, (slot, x, t) in enumerate(zip(slots.tolist(), raw.tolist(), ts)):
            st = streams.get(slot)
            if st is None:
                st = streams[slot] = self._new_state()
            out[i] = one(st, x, t)
        return out
