"""Faults the equipment simulator injects, and their ground truth.

A fault is a type, the features it touches and a half-open interval of
message sequence numbers ``[start, end)``. Faults are applied block by block
to the nominal signal, so the same fault gives the same values whether the
stream is produced in one array or message by message. Every fault draws its
randomness from its own seed, never from the signal's generator.

The sizes are chosen so that a detector trained on nominal data can see
them; ``slow_drift`` is the exception by design: its first part is within
the nominal range, so expect it to be caught late, if at all.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from edgewatch.errors import BadInput

FEATURES: tuple[str, ...] = ("cpu", "memory", "traffic", "fan")
"""The four metrics of the simulated equipment, in message order. ``fan`` is the step-like one."""

FAN_LEVELS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
"""The discrete values the ``fan`` metric takes on nominal data."""


class FaultType(str, Enum):
    """What goes wrong. The value is the name used on the command line and in the truth file."""

    SPIKE = "spike"
    LEVEL_SHIFT = "level_shift"
    NOISE_BURST = "noise_burst"
    FROZEN = "frozen"
    OVERLOAD = "overload"
    SLOW_DRIFT = "slow_drift"


DEFAULT_LENGTH: dict[FaultType, int] = {
    FaultType.SPIKE: 6,
    FaultType.LEVEL_SHIFT: 160,
    FaultType.NOISE_BURST: 100,
    FaultType.FROZEN: 200,
    FaultType.OVERLOAD: 120,
    FaultType.SLOW_DRIFT: 400,
}
"""Fault lengths in messages (at the default 20 Hz: 0.3 s, 8 s, 5 s, 10 s, 6 s, 20 s)."""

DEFAULT_FEATURES: dict[FaultType, tuple[str, ...]] = {
    FaultType.SPIKE: ("cpu",),
    FaultType.LEVEL_SHIFT: ("traffic",),
    FaultType.NOISE_BURST: ("memory",),
    FaultType.FROZEN: ("cpu",),
    FaultType.OVERLOAD: FEATURES,
    FaultType.SLOW_DRIFT: ("memory",),
}

RANDOM_FEATURES: dict[FaultType, tuple[str, ...]] = {
    FaultType.SPIKE: ("cpu", "memory", "traffic"),
    FaultType.LEVEL_SHIFT: ("cpu", "memory", "traffic"),
    FaultType.NOISE_BURST: ("cpu", "memory", "traffic"),
    FaultType.FROZEN: ("cpu", "traffic"),
    FaultType.OVERLOAD: FEATURES,
    FaultType.SLOW_DRIFT: ("cpu", "memory"),
}
"""Which features a random fault of each type may pick one of (overload takes all)."""

SPIKE_SIZE = 0.55
SHIFT_SIZE = 0.3
NOISE_SIGMA = 0.12
DRIFT_SIZE = 0.4
OVERLOAD_LEVEL = {"cpu": 0.98, "memory": 0.93, "traffic": 0.98, "fan": 1.0}


@dataclass(frozen=True)
class FaultSpec:
    """One fault to inject: ``[start, end)`` in message sequence numbers."""

    type: FaultType
    start: int
    end: int
    features: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", FaultType(self.type))
        if not self.features:
            object.__setattr__(self, "features", DEFAULT_FEATURES[self.type])
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise BadInput(f"unknown feature(s) {unknown} in fault {self.type.value}; use some of {list(FEATURES)}")
        if self.start < 0 or self.end <= self.start:
            raise BadInput(f"fault {self.type.value} needs 0 <= start < end, got [{self.start}, {self.end})")

    @classmethod
    def at(cls, type: FaultType | str, start: int, length: int | None = None,
           features: Sequence[str] = (), seed: int = 0) -> FaultSpec:
        """A fault of the type's default length starting at message ``start``."""
        kind = FaultType(type)
        return cls(kind, start, start + (length or DEFAULT_LENGTH[kind]), tuple(features), seed)


@dataclass(frozen=True)
class FaultRecord:
    """One line of the ground-truth JSONL file, written when the fault ends.

    ``end_index`` is exclusive; ``end_ts`` is the timestamp of message
    ``end_index`` (the first one after the fault). ``truncated`` marks a
    fault cut short because the stream stopped.
    """

    fault: str
    features: list[str]
    start_index: int
    end_index: int
    start_ts: float
    end_ts: float
    stream: str
    truncated: bool = False

    def to_json(self) -> str:
        """One JSON line (no newline); ``truncated`` only appears when true."""
        data = asdict(self)
        if not self.truncated:
            del data["truncated"]
        return json.dumps(data, separators=(",", ":"))


class FaultPlan(Protocol):
    """Where the faults of one stream come from (a fixed schedule or a random draw)."""

    def upto(self, end: int) -> list[FaultSpec]:
        """All faults starting before message ``end``, in start order."""
        ...


@dataclass
class ScheduledFaults:
    """A fixed list of faults; they must not overlap, so that each episode is separable."""

    faults: Sequence[FaultSpec] = ()

    def __post_init__(self) -> None:
        self.faults = sorted(self.faults, key=lambda f: f.start)
        for a, b in zip(self.faults, self.faults[1:]):
            if b.start < a.end:
                raise BadInput(
                    f"faults overlap: {a.type.value} [{a.start}, {a.end}) and {b.type.value} "
                    f"[{b.start}, {b.end}); leave a nominal gap between faults so episodes stay separable"
                )
        self._starts = [f.start for f in self.faults]

    def upto(self, end: int) -> list[FaultSpec]:
        return list(self.faults[: bisect.bisect_left(self._starts, end)])


@dataclass
class RandomFaults:
    """Faults of random types at random times, drawn lazily and reproducibly from ``seed``.

    The nominal gap before each fault is ``every * U(0.5, 1.5)`` messages,
    never less than ``min_gap``, so that a detector sees clean data between
    episodes (and fills its window before the first one).
    """

    every: int = 300
    seed: int = 0
    types: tuple[FaultType, ...] = tuple(FaultType)
    min_gap: int = 100
    _faults: list[FaultSpec] = field(default_factory=list, init=False, repr=False)
    _starts: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.every <= 0:
            raise BadInput(f"the mean gap between random faults must be positive, got {self.every}")
        self.types = tuple(FaultType(t) for t in self.types)
        self._rng = np.random.default_rng([self.seed, 0xFA017])
        self._next_start = self._gap()

    def _gap(self) -> int:
        return max(self.min_gap, int(round(self.every * self._rng.uniform(0.5, 1.5))))

    def _draw(self) -> FaultSpec:
        kind = self.types[int(self._rng.integers(len(self.types)))]
        pool = RANDOM_FEATURES[kind]
        features = FEATURES if kind is FaultType.OVERLOAD else (pool[int(self._rng.integers(len(pool)))],)
        length = max(2, int(round(DEFAULT_LENGTH[kind] * self._rng.uniform(0.7, 1.3))))
        spec = FaultSpec(kind, self._next_start, self._next_start + length, features,
                         int(self._rng.integers(2**31)))
        self._next_start = spec.end + self._gap()
        return spec

    def upto(self, end: int) -> list[FaultSpec]:
        while self._next_start < end:
            self._faults.append(self._draw())
            self._starts.append(self._faults[-1].start)
        return self._faults[: bisect.bisect_left(self._starts, end)]


class FaultInjector:
    """Applies a plan's faults to consecutive blocks of nominal values.

    Blocks must come in order (the frozen value and the shift direction are
    taken from the first message of the fault). ``cut(at)`` ends every fault
    still running at ``at``, so the truth stays exact when a stream stops.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._state: dict[FaultSpec, dict[str, object]] = {}
        self._cut: dict[FaultSpec, int] = {}

    def end_of(self, fault: FaultSpec) -> int:
        """Where the fault really ends (earlier than planned if it was cut)."""
        return self._cut.get(fault, fault.end)

    def faults(self, end: int) -> list[FaultSpec]:
        """Faults starting before ``end`` that were not cut before they began."""
        return [f for f in self.plan.upto(end) if self.end_of(f) > f.start]

    def cut(self, at: int) -> None:
        """End every fault still running at message ``at`` there (one starting at ``at`` never begins)."""
        for f in self.plan.upto(at + 1):
            if f.start <= at < self.end_of(f):
                self._cut[f] = max(f.start, at)

    def forget(self, start: int) -> None:
        """Drop what was learnt from faults starting at or after ``start`` (before injecting them again)."""
        for f in [f for f in self._state if f.start >= start]:
            del self._state[f]

    def apply(self, block: np.ndarray, first: int) -> np.ndarray:
        """Inject the faults overlapping ``[first, first + len(block))`` in place; returns the block clipped to [0, 1]."""
        last = first + len(block)
        for f in self.faults(last):
            lo, hi = max(f.start, first), min(self.end_of(f), last)
            if lo < hi:
                self._apply_one(f, block, first, lo, hi)
        np.clip(block, 0.0, 1.0, out=block)
        return block

    def _apply_one(self, f: FaultSpec, block: np.ndarray, first: int, lo: int, hi: int) -> None:
        state = self._state.setdefault(f, {})
        cols = [FEATURES.index(name) for name in f.features]
        rows = slice(lo - first, hi - first)
        seg = block[rows][:, cols]
        if "start" not in state:  # the first message of the fault is in this block
            start_values = block[f.start - first, cols].copy() if f.start >= first else seg[0].copy()
            state["start"] = start_values
            state["sign"] = np.where(start_values < 0.5, 1.0, -1.0)
            state["rng"] = np.random.default_rng([f.seed, f.start])
        start_values = state["start"]
        sign = state["sign"]
        rng: np.random.Generator = state["rng"]  # type: ignore[assignment]
        kind = f.type
        if kind is FaultType.SPIKE:
            seg = seg + np.where(seg < 0.45, SPIKE_SIZE, -SPIKE_SIZE)
        elif kind is FaultType.LEVEL_SHIFT:
            seg = seg + sign * SHIFT_SIZE
        elif kind is FaultType.NOISE_BURST:
            seg = seg + rng.normal(0.0, NOISE_SIGMA, size=seg.shape)
        elif kind is FaultType.FROZEN:
            seg = np.broadcast_to(start_values, seg.shape)
        elif kind is FaultType.OVERLOAD:
            level = np.array([OVERLOAD_LEVEL[name] for name in f.features])
            jitter = rng.normal(0.0, 0.005, size=seg.shape)
            seg = np.where(np.array(f.features) == "fan", level, level + jitter)
        elif kind is FaultType.SLOW_DRIFT:
            progress = (np.arange(lo, hi) - f.start + 1) / (f.end - f.start)
            seg = seg + np.outer(progress, sign * DRIFT_SIZE)
        block[rows, cols] = seg


_SPEC = re.compile(
    r"^\s*(?P<type>[a-z_]+)\s*@\s*(?P<start>[0-9.]+)\s*(?::\s*(?P<dur>[0-9.]*)\s*)?(?::\s*(?P<feat>[a-z_,+ ]+))?\s*$"
)


def parse_fault(text: str, rate: float, seed: int = 0) -> FaultSpec:
    """Parse ``TYPE@START[:DURATION][:FEATURES]`` (seconds from the stream start) into a spec in messages.

    Examples: ``spike@12``, ``frozen@30:10``, ``level_shift@60:8:cpu,traffic``,
    ``overload@90::``. An empty or absent duration takes the type's default length.
    """
    m = _SPEC.match(text.lower())
    if not m:
        raise BadInput(f"cannot read fault {text!r}; write TYPE@START[:DURATION][:FEATURES], e.g. spike@12 or frozen@30:10:cpu")
    try:
        kind = FaultType(m["type"])
    except ValueError:
        raise BadInput(f"unknown fault type {m['type']!r}; use one of {[t.value for t in FaultType]}") from None
    try:
        start = int(round(float(m["start"]) * rate))
        length = int(round(float(m["dur"]) * rate)) if m["dur"] else DEFAULT_LENGTH[kind]
    except ValueError:
        raise BadInput(f"bad number in fault {text!r}; START and DURATION are seconds, e.g. 12.5") from None
    features = tuple(s.strip() for s in re.split(r"[,+]", m["feat"] or "") if s.strip())
    return FaultSpec(kind, start, start + max(1, length), features, seed)


def read_schedule(lines: Iterable[str], rate: float) -> list[FaultSpec]:
    """Fault specs from a schedule file: one ``TYPE@START[:DURATION][:FEATURES]`` per line, ``#`` comments."""
    specs = []
    for n, raw in enumerate(lines):
        line = raw.split("#", 1)[0].strip()
        if line:
            specs.append(parse_fault(line, rate, seed=n))
    return specs


def labels_for(records: Iterable[FaultRecord], n: int) -> np.ndarray:
    """A 0/1 label per message (1 inside a fault), for evaluating a detector on a simulated series."""
    labels = np.zeros(n, dtype=np.int8)
    for r in records:
        labels[r.start_index : min(r.end_index, n)] = 1
    return labels
