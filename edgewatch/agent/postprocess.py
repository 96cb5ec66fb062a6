"""Stateful steps between a model's raw score and the threshold, one state per stream.

The graph scores each window on its own; what counts as *unusual* for a
stream depends on that stream's history. The ``likelihood`` step (Numenta's
anomaly likelihood, Ahmad et al. 2017) learns online, per stream, the
distribution of the short-term mean of the raw score and reports how far in
its tail the current short-term mean lies, so a model file works on any
stream without per-stream tuning. It then keeps one alert per event: a
score that does not beat the recent maximum is damped.

NumPy and the standard library only (this runs in the agent).

Parameters of ``likelihood`` (all optional, defaults in :class:`LikelihoodParams`):

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
Parameters (defaults in :class:`LevelsParams`): ``bins`` (8, contextOSE's
3 bits), ``range_rows`` (384), ``rest`` (100), ``cap`` (4096).

The ``novelty`` kind (its own module, :mod:`edgewatch.agent.subsequence`)
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
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from edgewatch.contract import AUX_INPUT_PREFIX, MAX_KIND, SCORE_INPUT, PostProcess
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


class KindParams:
    """Base of a post-process kind's parameter schema: a dataclass owned by that kind.

    :meth:`from_dict` is strict, like alibi-detect's saving schemas: an
    unknown name (a typo such as ``shrot``), a value that is not a finite
    number, or one out of range is refused with :class:`BadModelFile`, so a
    misspelt card fails when it is read, never inside the scoring loop.
    """

    def problems(self) -> list[str]:
        """What is out of range (empty when fine); each kind says its own limits."""
        return []

    def state_bytes(self) -> int:
        """Memory one stream's state can reach, in bytes (an upper estimate; sizes --max-streams)."""
        return 0

    @classmethod
    def from_dict(cls, params: Mapping[str, Any], kind: str = "") -> Any:
        kind = kind or getattr(cls, "KIND", cls.__name__)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(params) - known)
        if unknown:
            raise BadModelFile(f"{kind} post-process has unknown parameters {unknown}; known: {sorted(known)}")
        bad = sorted(k for k, v in params.items()
                     if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))
        if bad:
            raise BadModelFile(f"{kind} post-process parameters {bad} are not finite numbers: "
                               f"{ {k: params[k] for k in bad} }")
        p = cls(**{k: float(v) for k, v in params.items()})
        problems = p.problems()
        if problems:
            raise BadModelFile(f"{kind} post-process parameters out of range: {'; '.join(problems)} ({p})")
        return p


@dataclass
class NoParams(KindParams):
    """The ``none`` kind takes no parameters."""

    KIND = "none"


@dataclass
class LikelihoodParams(KindParams):
    KIND = "likelihood"
    short: float = 10
    long: float = 8640
    learning: float = 150
    reestimate: float = 100
    min_std: float = 0.05
    refractory: float = 0
    damp: float = 0.5
    certain: float = 0
    alert: float = 0
    hold: float = 0

    def problems(self) -> list[str]:
        out = []
        if self.short < 1 or self.long < self.short or self.long > 10**7:
            out.append("need 1 <= short <= long <= 1e7")
        if self.learning < 0 or self.reestimate < 1 or self.min_std <= 0:
            out.append("need learning >= 0, reestimate >= 1, min_std > 0")
        if self.refractory < 0 or self.refractory > 10**7 or not 0 <= self.damp <= 1:
            out.append("need 0 <= refractory <= 1e7 and 0 <= damp <= 1")
        if self.certain < 0 or self.alert < 0 or self.hold < 0:
            out.append("need certain, alert, hold >= 0")
        return out

    def state_bytes(self) -> int:
        # the history as a growing array of doubles: measured 124 KiB per stream at long=8640 (~15 bytes a
        # value with the allocator's slack; a deque of floats took 385 KiB); short and refractory deques ~45
        return int(15 * self.long + 45 * (self.short + max(self.refractory, 1))) + 512


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


@dataclass
class LevelsParams(KindParams):
    KIND = "levels"
    bins: float = 8
    range_rows: float = 384
    rest: float = 100
    cap: float = 4096

    def problems(self) -> list[str]:
        if self.bins < 1 or self.range_rows < 1 or self.range_rows > 10**7 or self.rest < 0 or self.cap < 1:
            return ["need bins >= 1, 1 <= range_rows <= 1e7, rest >= 0, cap >= 1"]
        return []

    def state_bytes(self) -> int:
        # the first range_rows values as Python floats, then up to cap remembered levels in a set
        return int(45 * self.range_rows + 70 * min(self.cap, 4 * self.bins + 64)) + 512


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


@dataclass(frozen=True)
class KindSpec:
    """One registered post-process kind: its parameter schema and how to build it from parsed parameters."""

    name: str
    params: type[KindParams]
    build: Callable[[Any], PostProcessor]


KINDS: dict[str, KindSpec] = {}


def register_kind(name: str, params: type[KindParams], build: Callable[[Any], PostProcessor]) -> None:
    """Add a post-process kind (its name in the card, its parameter dataclass, its builder)."""
    if name == MAX_KIND:
        raise ValueError(f"{MAX_KIND!r} is the composite kind and cannot be replaced")
    KINDS[name] = KindSpec(name, params, build)


register_kind("none", NoParams, lambda _p: Identity())
register_kind("likelihood", LikelihoodParams, Likelihood)
register_kind("levels", LevelsParams, Levels)
import edgewatch.agent.subsequence  # noqa: E402,F401 - registers the "novelty" kind (its own module)
import edgewatch.agent.resonance  # noqa: E402,F401 - registers the "resonance" kind (its own module)


def spec_problems(spec: PostProcess) -> list[str]:
    """What keeps a card's post-process from running (unknown kind or parameter, out of range), or []."""
    if spec.kind == MAX_KIND:
        return [p for part in spec.parts for p in spec_problems(part)]
    kind = KINDS.get(spec.kind)
    if kind is None:
        return [f"unknown post-process kind {spec.kind!r}: this edgewatch knows "
                f"{', '.join(repr(k) for k in [*KINDS, MAX_KIND])}"]
    try:
        kind.params.from_dict(dict(spec.params), spec.kind)
    except BadModelFile as exc:
        return [str(exc)]
    return []


def state_bytes(spec: PostProcess) -> int:
    """Per-stream memory estimate of a (valid) post-process: the sum over a 'max' step's parts."""
    if spec.kind == MAX_KIND:
        return sum(state_bytes(part) for part in spec.parts) + 128
    kind = KINDS[spec.kind]
    return kind.params.from_dict(dict(spec.params), spec.kind).state_bytes()


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
    kind = KINDS[spec.kind]
    return kind.build(kind.params.from_dict(dict(spec.params), spec.kind))
