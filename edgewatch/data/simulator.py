"""A simulated piece of network equipment: four metrics in [0, 1] and injectable faults.

The signal is what the S0 detector is trained on when there is no real
equipment: a load cycle (a day compressed to ``period`` messages) drives
``cpu``, ``memory`` (lagged, smoother) and ``traffic`` (noisier), and
``fan`` jumps between a few discrete levels as the load crosses thresholds,
so one metric is discontinuous. Everything is a function of the message
index plus seeded noise, vectorised, so 200,000 rows take well under a
second and a stream produced in blocks equals the same stream made at once.

NumPy only: the agent and its tests may import this module without torch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from edgewatch.data.faults import (
    FAN_LEVELS,
    FEATURES,
    FaultInjector,
    FaultPlan,
    FaultRecord,
    FaultSpec,
    ScheduledFaults,
    labels_for,
)
from edgewatch.errors import BadInput
from edgewatch.files import replacing

__all__ = [
    "FEATURES",
    "EquipmentStream",
    "SimulatedSeries",
    "Simulator",
    "SimulatorConfig",
    "record_csv",
    "simulate_series",
]

FAN_THRESHOLDS = (0.36, 0.5, 0.64)


@dataclass(frozen=True)
class SimulatorConfig:
    """Shape of the nominal signal. ``period`` is one load cycle in messages (30 s at 20 Hz)."""

    period: int = 600
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.period < 10:
            raise BadInput(f"the load period must be at least 10 messages, got {self.period}")
        if self.noise_scale < 0:
            raise BadInput(f"noise_scale must be >= 0, got {self.noise_scale}")


class Simulator:
    """Nominal measurements of one piece of equipment, reproducible from ``seed``.

    ``generate`` continues where the previous call stopped; the values of
    message ``i`` depend only on the seed and ``i``, not on how the calls
    were split.
    """

    def __init__(self, seed: int = 0, config: SimulatorConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimulatorConfig()
        params = np.random.default_rng([seed, 1])
        self._phases = params.uniform(0, 2 * np.pi, size=4)
        self._cycle_offset = params.uniform(0, 1)
        self._noise = np.random.default_rng([seed, 2])
        self.position = 0

    @classmethod
    def nominal(cls, n: int, seed: int = 0, config: SimulatorConfig | None = None) -> np.ndarray:
        """``n`` nominal rows ``[n, 4]`` in FEATURES order, for training without a socket."""
        return cls(seed, config).generate(n)

    def load(self, t: np.ndarray) -> np.ndarray:
        """The equipment's load at message indices ``t`` (noise-free, roughly 0.1 to 0.9)."""
        p = self.config.period
        x = 2 * np.pi * (t / p + self._cycle_offset)
        ph = self._phases
        return (
            0.5
            - 0.27 * np.cos(x)
            + 0.07 * np.sin(3 * x + ph[0])
            + 0.05 * np.sin(x / 7.3 + ph[1])
            + 0.03 * np.sin(x / 2.9 + ph[2])
        )

    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` nominal rows as float64 ``[n, 4]``, clipped to [0, 1]."""
        if n < 0:
            raise BadInput(f"cannot generate a negative number of rows ({n})")
        t = np.arange(self.position, self.position + n, dtype=np.float64)
        self.position += n
        p = self.config.period
        load = self.load(t)
        noise = self._noise.standard_normal((n, 3)) * self.config.noise_scale
        out = np.empty((n, 4))
        out[:, 0] = 0.08 + 0.75 * load + 0.015 * noise[:, 0]
        out[:, 1] = 0.30 + 0.45 * self.load(t - p / 10) + 0.006 * noise[:, 1]
        out[:, 2] = 0.05 + 0.80 * self.load(t + p / 60) + 0.025 * noise[:, 2]
        out[:, 3] = np.asarray(FAN_LEVELS)[np.digitize(self.load(t - p / 30), FAN_THRESHOLDS)]
        np.clip(out, 0.0, 1.0, out=out)
        return out


class StreamClock:
    """Timestamps of messages: epoch seconds at ``rate``, re-anchored when a stream (re)starts."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise BadInput(f"the rate must be positive, got {rate}")
        self.rate = rate
        self._seqs: list[int] = []
        self._t0: list[float] = []

    def anchor(self, seq: int, epoch: float) -> None:
        """Message ``seq`` is sent at ``epoch``; later ones follow at ``rate``."""
        if self._seqs and seq <= self._seqs[-1]:
            self._seqs.pop()
            self._t0.pop()
        self._seqs.append(seq)
        self._t0.append(epoch)

    def ts(self, seq: int) -> float:
        """The timestamp of message ``seq``."""
        if not self._seqs:
            self.anchor(0, 0.0)
        i = max(0, bisect.bisect_right(self._seqs, seq) - 1)
        return self._t0[i] + (seq - self._seqs[i]) / self.rate

    def many(self, first: int, n: int) -> np.ndarray:
        """Timestamps of messages ``first .. first+n-1`` (within the current anchor)."""
        return self.ts(first) + np.arange(n) / self.rate


@dataclass
class EquipmentStream:
    """One equipment: nominal signal + faults + clock, consumed message by message or in blocks.

    Truth records come out through ``finished`` once a fault's last message
    has been taken, and through ``close`` for faults cut short.
    """

    name: str
    simulator: Simulator
    plan: FaultPlan = field(default_factory=ScheduledFaults)
    clock: StreamClock = field(default_factory=lambda: StreamClock(20.0))
    block: int = 4096

    def __post_init__(self) -> None:
        self.injector = FaultInjector(self.plan)
        self._buffer = np.empty((0, 4))
        self._nominal = np.empty((0, 4))
        self._buffer_first = 0
        self.position = 0
        self._reported: set[FaultSpec] = set()

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` measurements ``[n, 4]`` (faults applied); ``position`` advances by ``n``."""
        have = self._buffer_first + len(self._buffer) - self.position
        if have < n:
            first = self.simulator.position
            nominal = self.simulator.generate(max(n - have, self.block))
            fresh = self.injector.apply(nominal.copy(), first)
            start = self.position - self._buffer_first
            self._buffer = np.concatenate([self._buffer[start:], fresh])
            self._nominal = np.concatenate([self._nominal[start:], nominal])
            self._buffer_first = self.position
        lo = self.position - self._buffer_first
        self.position += n
        return self._buffer[lo : lo + n]

    def _record(self, f: FaultSpec, end: int, truncated: bool) -> FaultRecord:
        self._reported.add(f)
        return FaultRecord(
            fault=f.type.value,
            features=list(f.features),
            start_index=f.start,
            end_index=end,
            start_ts=round(self.clock.ts(f.start), 6),
            end_ts=round(self.clock.ts(end), 6),
            stream=self.name,
            truncated=truncated,
        )

    def finished(self) -> list[FaultRecord]:
        """Truth of the faults whose last message has been taken since the previous call."""
        # Faults never overlap, so they end in start order: only the unreported tail needs a look.
        records = []
        for f in self.injector.faults(self.position)[len(self._reported):]:
            if self.injector.end_of(f) > self.position:
                break
            records.append(self._record(f, self.injector.end_of(f), False))
        return records

    def close(self) -> list[FaultRecord]:
        """End the faults still running at ``position`` (so later blocks are nominal there) and report them."""
        running = [
            f for f in self.injector.faults(self.position)
            if f not in self._reported and self.injector.end_of(f) > self.position
        ]
        records = self.finished()
        self.injector.cut(self.position)
        if running:
            # Rows generated ahead of ``position`` may hold the cut faults: inject them again.
            lo = self.position - self._buffer_first
            self.injector.forget(self.position)
            self._buffer[lo:] = self.injector.apply(self._nominal[lo:].copy(), self.position)
            for f in running:
                records.append(self._record(f, max(self.position, f.start), True))
        return records


@dataclass
class SimulatedSeries:
    """A series made without sockets: values ``[n, 4]``, timestamps, 0/1 labels and the fault truth."""

    values: np.ndarray
    timestamps: np.ndarray
    labels: np.ndarray
    truth: list[FaultRecord]
    features: tuple[str, ...] = FEATURES


def as_plan(faults: FaultPlan | Sequence[FaultSpec] | None) -> FaultPlan:
    """Accept a plan, a list of specs or nothing (no faults)."""
    if faults is None:
        return ScheduledFaults([])
    if hasattr(faults, "upto"):
        return faults  # type: ignore[return-value]
    return ScheduledFaults(list(faults))  # type: ignore[arg-type]


def simulate_series(
    n: int,
    *,
    seed: int = 0,
    faults: FaultPlan | Sequence[FaultSpec] | None = None,
    rate: float = 20.0,
    start_ts: float = 0.0,
    config: SimulatorConfig | None = None,
    stream: str = "eq-0",
) -> SimulatedSeries:
    """The same values and truth the live simulator would send for this seed and faults, as arrays.

    Useful for training and evaluation code that wants labelled data without
    a websocket. Faults still running at ``n`` are reported as truncated.
    """
    clock = StreamClock(rate)
    clock.anchor(0, start_ts)
    eq = EquipmentStream(stream, Simulator(seed, config), as_plan(faults), clock, block=max(n, 1))
    values = eq.take(n).copy()
    truth = eq.close()
    return SimulatedSeries(values, clock.many(0, n), labels_for(truth, n), truth)


def write_truth(records: Iterable[FaultRecord], out: IO[str]) -> int:
    """Append truth lines and flush, so a reader tailing the file sees each fault as it ends."""
    count = 0
    for r in records:
        out.write(r.to_json() + "\n")
        count += 1
    if count:
        out.flush()
    return count


def record_csv(
    path: Path,
    n: int,
    *,
    seed: int = 0,
    faults: FaultPlan | Sequence[FaultSpec] | None = None,
    rate: float = 20.0,
    start_ts: float = 0.0,
    config: SimulatorConfig | None = None,
    truth_path: Path | None = None,
    chunk: int = 65536,
    progress: bool = False,
) -> list[FaultRecord]:
    """Write ``n`` rows ``timestamp,cpu,memory,traffic,fan`` to ``path`` at full speed.

    The file is written beside its destination and renamed into place, so
    a reader never sees half a file. Returns the truth (also written to
    ``truth_path`` as JSONL when given).
    """
    if n < 0:
        raise BadInput(f"--count must be >= 0, got {n}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clock = StreamClock(rate)
    clock.anchor(0, start_ts)
    eq = EquipmentStream("eq-0", Simulator(seed, config), as_plan(faults), clock, block=chunk)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="row", desc=f"writing {path.name}", leave=False)
    try:
        with replacing(path) as tmp, tmp.open("w", newline="") as out:
            out.write("timestamp," + ",".join(FEATURES) + "\n")
            done = 0
            while done < n:
                k = min(chunk, n - done)
                rows = np.column_stack([clock.many(done, k), eq.take(k)])
                np.savetxt(out, rows, fmt=["%.6f"] + ["%.5f"] * 4, delimiter=",")
                done += k
                if bar is not None:
                    bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    truth = eq.close()
    if truth_path is not None:
        with open(truth_path, "w") as t:
            write_truth(truth, t)
    return truth
