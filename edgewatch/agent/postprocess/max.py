"""The ``max`` kind: several detectors in one file, combined by the maximum of their outputs.

Each part runs an existing kind on its input (the graph's ``score`` or a
column of the graph's ``aux`` output, ``aux:<name>``). A part whose input
is an aux *group* ``name[n]`` (typically the window itself) is fed, on a
stream's first scored row, all n values in order and then only the group's
last value on each later row. Why: a step that must see every row
(``levels`` learns its range on the first rows) then sees the rows of the
first window too, which the agent never scores on their own; with stride 1
it sees exactly the stream. The group's values on a first row all get
that row's time (the earlier values' own times are not known).
"""

from __future__ import annotations

import numpy as np

from edgewatch.agent.postprocess.base import PostProcessor, flat_batch


class MaxOf:
    """The ``max`` kind: several steps, each on its own input, combined by their maximum."""

    def __init__(self, parts: list[tuple[PostProcessor, slice | None]]) -> None:
        self.parts = parts  # (step, aux columns it reads; None = the score)
        self._started: set[int] = set()  # streams whose first row was seen since their last reset

    def reset(self, slot: int) -> None:
        self._started.discard(int(slot))
        for part, _ in self.parts:
            part.reset(slot)

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None,
                    times: np.ndarray | None = None) -> np.ndarray:
        slots, raw = flat_batch(slots, scores)
        if aux is not None:
            aux = np.asarray(aux, dtype=np.float64).reshape(len(raw), -1)
        first = np.zeros(raw.size, dtype=bool)
        for i, slot in enumerate(slots.tolist()):
            if slot not in self._started:
                self._started.add(slot)
                first[i] = True
        out = np.zeros(raw.size)
        for part, cols in self.parts:
            if cols is None:
                got = part.update_many(slots, raw, times=times)
            else:
                if aux is None:
                    raise ValueError("this post-process reads the graph's aux output, but no aux was given")
                got = self._run_on_aux(part, slots, aux[:, cols], first, times)
            np.maximum(out, got, out=out)
        return out

    @staticmethod
    def _run_on_aux(part: PostProcessor, slots: np.ndarray, values: np.ndarray, first: np.ndarray,
                    times: np.ndarray | None) -> np.ndarray:
        if values.shape[1] == 1:
            return part.update_many(slots, values[:, 0], times=times)
        # a group: the whole group on a stream's first row, its last value afterwards
        counts = np.where(first, values.shape[1], 1)
        ends = np.cumsum(counts) - 1
        flat_slots = np.repeat(slots, counts)
        flat = np.concatenate([values[i] if first[i] else values[i, -1:] for i in range(len(slots))])
        flat_times = None if times is None else np.repeat(np.asarray(times, dtype=np.float64).ravel(), counts)
        return part.update_many(flat_slots, flat, times=flat_times)[ends]
