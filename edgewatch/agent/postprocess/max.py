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

With ``alert`` > 0 (the card's ``max`` parameter) an alert is one event
for every part: the rows are run one by one, and after a row whose
output is at or over ``alert`` each part that defines
``hold_value(slot)`` is told that the stream's latest value belonged to
an alerted event, and holds what that value can still cause in it. Why:
the ``levels`` part alarms on one value, which then stays in the
``novelty`` part's latest stretch for its shape length, so the novelty
alarmed a second time on the same event a few rows later (docs/eval.md,
thirteenth round). A part without the method (``levels``, whose later
outputs are about later values) holds nothing.
"""

from __future__ import annotations

import numpy as np

from edgewatch.agent.postprocess.base import PostProcessor, flat_batch


class MaxOf:
    """The ``max`` kind: several steps, each on its own input, combined by their maximum."""

    def __init__(self, parts: list[tuple[PostProcessor, slice | None]], alert: float = 0.0) -> None:
        self.parts = parts  # (step, aux columns it reads; None = the score)
        self.alert = float(alert)  # > 0: an output at or over it is one event for every part
        self._holders = [h for h in (getattr(part, "hold_value", None) for part, _ in parts) if h is not None]
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
        if self.alert > 0 and self._holders:
            return self._one_event(slots, raw, aux, first, times)
        return self._all_rows(slots, raw, aux, first, times)

    def _one_event(self, slots: np.ndarray, raw: np.ndarray, aux: np.ndarray | None, first: np.ndarray,
                   times: np.ndarray | None) -> np.ndarray:
        """Row by row, telling every part after each alerted row (a part must know before its stream's next row)."""
        out = np.zeros(raw.size)
        ts = None if times is None else np.asarray(times, dtype=np.float64).ravel()
        for i, slot in enumerate(slots.tolist()):
            at = slice(i, i + 1)
            out[i] = self._all_rows(slots[at], raw[at], None if aux is None else aux[at], first[at],
                                    None if ts is None else ts[at])[0]
            if out[i] >= self.alert:
                for hold in self._holders:
                    hold(slot)
        return out

    def _all_rows(self, slots: np.ndarray, raw: np.ndarray, aux: np.ndarray | None, first: np.ndarray,
                  times: np.ndarray | None) -> np.ndarray:
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
