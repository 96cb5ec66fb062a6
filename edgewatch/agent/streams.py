"""The streams an agent holds: one slot each, with its window, its counters and the runtime that scores it.

A stream is a small integer *slot* in the hot path (windows, trackers,
post-processors and drift samples are arrays or dicts by slot). Slots of
streams that went idle are reused, so memory stays bounded by
``max_streams`` however many ids come and go.

Why one :meth:`StreamTable.reset`: a reconnect (or a Sparkplug death) and an
eviction both mean "the rows before are not this stream's past", and each
used to reset a different runtime's state. A stream that learned its own
model (``--learn``) is scored by that model's runtime, so its tracker,
post-process and drift state live there; :meth:`reset` resets the state of
the runtime that scores the slot, whichever it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from edgewatch.agent.windows import StreamWindows

if TYPE_CHECKING:
    from edgewatch.agent.runtime import ModelRuntime


class StreamTable:
    """Slots by stream name, per-slot counters and windows, the free list, and learned streams' runtimes.

    The lists are indexed by slot and read in place by the agent's hot path
    (``names``, ``seq``, ``last_seen``, ``last_ts``, ``slots``); everything
    that changes which stream holds a slot goes through a method here.
    """

    def __init__(self, runtime: ModelRuntime, max_streams: int) -> None:
        self.max_streams = max_streams
        self.slots: dict[str, int] = {}
        self.names: list[str | None] = []  # by slot; None = a free slot
        self.seq: list[int] = []  # messages of the slot's stream so far
        self.last_seen: list[float] = []  # monotonic time of each slot's last message
        self.last_ts: list[float] = []  # the time (its own, or when received) of each slot's last message
        self.runtimes: dict[int, ModelRuntime] = {}  # slots scored by a runtime of their own (--learn)
        self.seen = 0  # streams seen since start
        self._free: list[int] = []
        self._by_source: dict[str, set[int]] = {}
        self.runtime = runtime
        self.windows = StreamWindows(runtime.window, runtime.card.n_features, runtime.stride,
                                     capacity=8, max_capacity=max_streams)
        self._fit_drift(runtime)

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def held(self) -> list[str]:
        """The streams held now (evicted ones are gone until they send again)."""
        return [n for n in self.names if n is not None]

    def install(self, runtime: ModelRuntime) -> None:
        """Score with ``runtime`` from now on; a model of the same window and features keeps the windows."""
        old = self.windows
        if old.window == runtime.window and old.n_features == runtime.card.n_features:
            old.stride = runtime.stride
        else:
            self.windows = StreamWindows(runtime.window, runtime.card.n_features, runtime.stride,
                                         capacity=max(8, len(self.seq)), max_capacity=self.max_streams)
        self._fit_drift(runtime)
        self.runtime = runtime

    def _fit_drift(self, runtime: ModelRuntime) -> None:
        if runtime.drift is not None:
            runtime.drift.max_slots = self.max_streams  # slots are reused: the sample buffers need no more

    def runtime_of(self, slot: int) -> ModelRuntime:
        """The runtime that scores ``slot``: its own (a learned stream), else the agent's."""
        return self.runtimes.get(slot, self.runtime)

    def add(self, stream: str, source: str) -> int | None:
        """A slot for a stream not held yet (a freed one if any), or None past ``max_streams``."""
        slot = self.slots.get(stream)
        if slot is not None:
            return slot
        if len(self.slots) >= self.max_streams:
            return None
        if self._free:
            slot = self._free.pop()
            self.names[slot] = stream
            self.seq[slot] = 0
        else:
            slot = len(self.names)
            self.names.append(stream)
            self.seq.append(0)
            self.last_seen.append(0.0)
            self.last_ts.append(0.0)
            self.windows.ensure(slot)
        self.slots[stream] = slot
        self.seen += 1
        self._by_source.setdefault(source, set()).add(slot)
        return slot

    def of_source(self, source: str, streams: Iterable[str] | None = None) -> list[int]:
        """The slots of every stream ``source`` brought, or of the named ``streams`` only."""
        if streams is None:
            return sorted(self._by_source.get(source, ()))
        return [self.slots[s] for s in streams if s in self.slots]

    def reset(self, slot: int) -> None:
        """Forget the slot's past: its window, and its tracker history, post-process and drift state.

        The state is the one of the runtime that scores the slot (a learned
        stream's own runtime included). An open episode is left to be closed
        by the caller or by the quiet windows to come.
        """
        self.windows.reset(slot)
        rt = self.runtime_of(slot)
        rt.tracker.reset(slot)
        rt.post.reset(slot)
        if rt.drift is not None:
            rt.drift.reset(slot)

    def idle(self, now: float, ttl: float) -> list[int]:
        """Slots without a message for ``ttl`` seconds (``now`` on the monotonic clock)."""
        last = self.last_seen
        return [slot for slot in self.slots.values() if now - last[slot] >= ttl]

    def release(self, slot: int) -> None:
        """Give the slot up (its stream was idle): :meth:`reset`, drop its tracker and runtime, free it.

        End its open episode first: the tracker forgets it here.
        """
        self.reset(slot)
        self.runtime_of(slot).tracker.forget(slot)
        self.runtimes.pop(slot, None)
        del self.slots[self.names[slot]]  # type: ignore[arg-type]
        self.names[slot] = None
        for slots in self._by_source.values():
            slots.discard(slot)
        self._free.append(slot)
