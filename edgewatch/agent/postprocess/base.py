"""Stateful steps between a model's raw score and the threshold, one state per stream.

The graph scores each window on its own; what counts as *unusual* for a
stream depends on that stream's history. The ``likelihood`` step (Numenta's
anomaly likelihood, Ahmad et al. 2017) learns online, per stream, the
distribution of the short-term mean of the raw score and reports how far in
its tail the current short-term mean lies, so a model file works on any
stream without per-stream tuning. It then keeps one alert per event: a
score that does not beat the recent maximum is damped.

NumPy and the standard library only (this runs in the agent).

Parameters of ``likelihood`` (all optional, defaults in
:class:`~edgewatch.contract.postprocess.LikelihoodParams`):

``short``       rows in the short-term mean of the raw score (10)
``long``        rows of history the distribution is estimated on (8640)
``learning``    rows after a (re)start that only feed the distribution, output 0 (150)
``reestimate``  rows between two estimates of the distribution (100)
``min_std``     floor of the distribution's deviation, in raw-score units (0.05)
``refractory``  rows during which a score must beat the recent maximum (0 = off)
``damp``        factor applied to scores that do not beat it (0.5)
``certain``     raw scores at or above this pass as 1.0 at once (0 = off)
``alert``       an output at or above this level starts a hold (0 = off)
``hold``        rows after such an output whose scores are damped (one alert per event)

The ``levels`` kind (a value-level novelty, the first level of a
contextOSE-like context detector) reads the graph's score as the stream's
current value. It learns the value range on the first ``range_rows`` rows,
then freezes it so that a level keeps its meaning; the range is cut into
``bins`` equal levels (values outside it get levels beyond, unclipped). The
output is 1.0 when a value falls on a level never seen before in that
stream, else 0.0; after such an output the next ``rest`` rows stay 0 (one
alert per event). Memory per stream is bounded: at most ``range_rows``
buffered values until the range is frozen, then at most ``cap`` remembered
levels (an unseen level beyond the cap is still reported, not remembered).
A stream constant over its range rows has no scale and never fires.
Parameters (defaults in :class:`~edgewatch.contract.postprocess.LevelsParams`): ``bins`` (8, contextOSE's
3 bits), ``range_rows`` (384), ``rest`` (100), ``cap`` (4096).

The ``novelty`` kind (its own module, :mod:`edgewatch.agent.postprocess.novelty`)
keeps each stream's last values and feeds a subsequence nearest-neighbour
distance to the ``likelihood`` step, so a file with a pass-through graph
can carry a detector that needs history without waiting for a long window.

The ``max`` kind carries several detectors in one file: each part runs an
existing kind on its input (the graph's ``score`` or a column of the
graph's ``aux`` output, ``aux:<name>``) and the output is the maximum of the
parts. A part whose input is an aux *group* ``name[n]`` (typically the
window itself) is fed, on a stream's first scored row, all n values in
order and then only the group's last value on each later row. Why: a
step that must see every row (``levels`` learns its range on the first
rows) then sees the rows of the first window too, which the agent never
scores on their own; with stride 1 it sees exactly the stream.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Any, Callable, Protocol

import numpy as np

from edgewatch.contract.postprocess import (AUX_INPUT_PREFIX, MAX_KIND, SCHEMAS, SCORE_INPUT, LevelsParams,
                                            LikelihoodParams, PostProcess, spec_problems)
from edgewatch.errors import BadModelFile

_LOG_FLOOR = math.log(1e-10)


class PostProcessor(Protocol):
    """Turns raw scores into decision scores; state is kept per integer stream slot."""

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None) -> np.ndarray:
        """Feed scores in arrival order (``slots[i]`` is the stream of ``scores[i]``, ``aux[i]`` its aux row)."""
        ...

    def reset(self, slot: int) -> None:
        """Forget a stream (it reconnected, or its window was reset)."""
        ...


class Identity:
    """The ``none`` kind: scores pass unchanged."""

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64).copy()

    def reset(self, slot: int) -> None:
        return None


class _PerStream:
    """Shared plumbing of the stateful kinds: per-slot state, scores taken one by one in arrival order."""

    def __init__(self) -> None:
        self._streams: dict[int, object] = {}

    def _new_state(self) -> object:  # pragma: no cover - abstract
        raise NotImplementedError

    def _one(self, st, x: float) -> float:  # noqa: ANN001 - the subclass's state type
        raise NotImplementedError

    def reset(self, slot: int) -> None:
        self._streams.pop(int(slot), None)

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None) -> np.ndarray:
        slots = np.asarray(slots).astype(np.int64, copy=False).ravel()
        raw = np.asarray(scores, dtype=np.float64).ravel()
        if slots.shape != raw.shape:
            raise ValueError(f"{slots.size} slots for {raw.size} scores")
        out = np.empty(raw.size)
        streams = self._streams
        for i, (slot, x) in enumerate(zip(slots.tolist(), raw.tolist())):
            st = streams.get(slot)
            if st is None:
                st = streams[slot] = self._new_state()
            out[i] = self._one(st, x)
        return out


def log_likelihood(likelihood: float) -> float:
    """Map a likelihood near 1 onto [0, 1] so that 0.999 and 0.99999 are far apart."""
    return min(max(math.log(1.0000000001 - likelihood) / _LOG_FLOOR, 0.0), 1.0)


class _Stream:
    __slots__ = ("n", "short", "short_sum", "history", "hcap", "hpos", "mean", "std", "since", "recent", "held")

    def __init__(self, p: LikelihoodParams) -> None:
        self.n = 0
        self.short: deque[float] = deque(maxlen=int(p.short))
        self.short_sum = 0.0
        # the last ``long`` short-term means as C doubles (8 bytes each; a deque of floats took ~45): it grows
        # to hcap values, then is a ring whose oldest value is at hpos
        self.history = array("d")
        self.hcap = int(p.long)
        self.hpos = 0
        self.mean = 0.0
        self.std = 0.0
        self.since = 0  # rows since the last estimate
        self.recent: deque[float] = deque(maxlen=max(int(p.refractory), 1))
        self.held = 0  # rows of hold left

    def remember(self, value: float) -> None:
        if len(self.history) < self.hcap:
            self.history.append(value)
        else:
            self.history[self.hpos] = value
            self.hpos = self.hpos + 1 if self.hpos + 1 < self.hcap else 0

    def past(self) -> np.ndarray:
        """The remembered values, oldest first (a copy: the same array, in the same order, as a deque gave)."""
        h = np.frombuffer(self.history, dtype=np.float64)
        return np.concatenate((h[self.hpos:], h[:self.hpos])) if self.hpos else h.copy()


class Likelihood(_PerStream):
    """Numenta-style anomaly likelihood, per stream, with an optional refractory damping."""

    def __init__(self, params: LikelihoodParams) -> None:
        super().__init__()
        self.p = params

    def _new_state(self) -> _Stream:
        return _Stream(self.p)

    def _one(self, st: _Stream, x: float) -> float:
        p = self.p
        if not math.isfinite(x):
            return 0.0
        st.n += 1
        if len(st.short) == st.short.maxlen:
            st.short_sum -= st.short[0]
        st.short.append(x)
        st.short_sum += x
        avg = st.short_sum / len(st.short)
        if st.n <= p.learning:  # learn the distribution, say nothing yet
            st.remember(avg)
            return 0.0
        if st.std == 0.0 or st.since >= p.reestimate:
            h = st.past() if st.history else np.array([avg])
            st.mean = float(h.mean())
            st.std = max(float(h.std()), p.min_std)
            del h  # no view of the history may outlive this (it still grows)
            st.since = 0
        st.since += 1
        st.remember(avg)
        z = (avg - st.mean) / st.std
        tail = 0.5 * math.erfc(abs(z) / math.sqrt(2.0)) if z > 0 else 0.5
        value = log_likelihood(1.0 - tail)
        if p.certain and x >= p.certain:
            value = 1.0
        if p.refractory:
            peak = max(st.recent) if st.recent else 0.0
            st.recent.append(value)
            if value <= peak:
                value *= p.damp
        if st.held > 0:
            st.held -= 1
            value *= p.damp
        elif p.alert and value >= p.alert:
            st.held = int(p.hold)
        return value


class _LevelStream:
    __slots__ = ("first", "lo", "step", "seen", "quiet")

    def __init__(self) -> None:
        self.first: list[float] | None = []  # values until the range is frozen, then None
        self.lo = 0.0
        self.step = 0.0  # width of one level; 0 = no scale
        self.seen: set[int] = set()
        self.quiet = 0  # rows of rest left


class Levels(_PerStream):
    """Value-level novelty per stream: 1.0 when the value reaches a level never seen, then a rest."""

    def __init__(self, params: LevelsParams) -> None:
        super().__init__()
        self.p = params

    def _new_state(self) -> _LevelStream:
        return _LevelStream()

    def _level(self, st: _LevelStream, x: float) -> int:
        return 0 if st.step <= 0 else math.floor((x - st.lo) / st.step)

    def _one(self, st: _LevelStream, x: float) -> float:
        p = self.p
        if not math.isfinite(x):
            return 0.0
        if st.first is not None:  # learning the range
            st.first.append(x)
            if len(st.first) >= p.range_rows:
                lo, hi = min(st.first), max(st.first)
                st.lo, st.step = lo, (hi - lo) / p.bins
                for v in st.first:
                    if len(st.seen) < p.cap:
                        st.seen.add(self._level(st, v))
                st.first = None
            return 0.0
        level = self._level(st, x)
        new = level not in st.seen
        if new and len(st.seen) < p.cap:
            st.seen.add(level)
        if st.quiet > 0:
            st.quiet -= 1
            return 0.0
        if new:
            st.quiet = int(p.rest)
            return 1.0
        return 0.0


class MaxOf:
    """The ``max`` kind: several steps, each on its own input, combined by their maximum."""

    def __init__(self, parts: list[tuple[PostProcessor, slice | None]]) -> None:
        self.parts = parts  # (step, aux columns it reads; None = the score)
        self._started: set[int] = set()  # streams whose first row was seen since their last reset

    def reset(self, slot: int) -> None:
        self._started.discard(int(slot))
        for part, _ in self.parts:
            part.reset(slot)

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None) -> np.ndarray:
        slots = np.asarray(slots).astype(np.int64, copy=False).ravel()
        raw = np.asarray(scores, dtype=np.float64).ravel()
        if slots.shape != raw.shape:
            raise ValueError(f"{slots.size} slots for {raw.size} scores")
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
                got = part.update_many(slots, raw)
            else:
                if aux is None:
                    raise ValueError("this post-process reads the graph's aux output, but no aux was given")
                got = self._run_on_aux(part, slots, aux[:, cols], first)
            np.maximum(out, got, out=out)
        return out

    @staticmethod
    def _run_on_aux(part: PostProcessor, slots: np.ndarray, values: np.ndarray, first: np.ndarray) -> np.ndarray:
        if values.shape[1] == 1:
            return part.update_many(slots, values[:, 0])
        # a group: the whole group on a stream's first row, its last value afterwards
        counts = np.where(first, values.shape[1], 1)
        ends = np.cumsum(counts) - 1
        flat_slots = np.repeat(slots, counts)
        flat = np.concatenate([values[i] if first[i] else values[i, -1:] for i in range(len(slots))])
        return part.update_many(flat_slots, flat)[ends]


KINDS: dict[str, Callable[[Any], PostProcessor]] = {}  # kind -> builder from its parsed parameters


def register_kind(name: str, build: Callable[[Any], PostProcessor]) -> None:
    """Add the implementation of a post-process kind whose schema the contract defines (its SCHEMAS)."""
    if name == MAX_KIND:
        raise ValueError(f"{MAX_KIND!r} is the composite kind and cannot be replaced")
    if name not in SCHEMAS:
        raise ValueError(f"post-process kind {name!r} has no parameter schema in edgewatch.contract.postprocess")
    KINDS[name] = build


register_kind("none", lambda _p: Identity())
register_kind("likelihood", Likelihood)
register_kind("levels", Levels)
import edgewatch.agent.postprocess.novelty  # noqa: E402,F401 - registers the "novelty" kind (its own module)


def make_postprocessor(spec: PostProcess) -> PostProcessor:
    """The agent's implementation of a card's post-process; refuses kinds and parameters it does not know."""
    if spec.kind == MAX_KIND:
        if not spec.parts:
            raise BadModelFile("a 'max' post-process needs at least one part")
        parts: list[tuple[PostProcessor, slice | None]] = []
        for part in spec.parts:
            if part.input == SCORE_INPUT:
                parts.append((make_postprocessor(part), None))
                continue
            name = part.input[len(AUX_INPUT_PREFIX):]
            if not part.input.startswith(AUX_INPUT_PREFIX) or name not in part.aux_columns:
                raise BadModelFile(f"post-process input {part.input!r} names no aux column of the model "
                                   f"(its aux: {sorted(part.aux_columns) or 'none'})")
            parts.append((make_postprocessor(PostProcess(part.kind, part.params, SCORE_INPUT, part.parts)),
                          part.aux_columns[name]))
        return MaxOf(parts)
    if spec.parts:
        raise BadModelFile(f"only a 'max' post-process has parts, not {spec.kind!r}")
    if spec.input != SCORE_INPUT:  # one step on an aux column: a max of one part does the reading
        return make_postprocessor(PostProcess(MAX_KIND, parts=[spec]))
    problems = spec_problems(spec)
    if problems:
        raise BadModelFile("; ".join(problems))
    build = KINDS.get(spec.kind)
    if build is None:
        raise BadModelFile(f"post-process kind {spec.kind!r} is in the contract but this agent cannot run it; "
                           "upgrade edgewatch")
    return build(SCHEMAS[spec.kind].from_dict(dict(spec.params), spec.kind))
