"""The agent loop: parse → window → score (batched) → post-process → decide → emit.

There is one loop for every model family. What differs between families
(window length, scaling, how the score is computed, an optional stateful
post-processing step, the threshold) lives in the model file, so nothing
here asks which family it runs.

Sources put items on one queue; the loop drains up to ``max_batch`` of them
at a time and scores every window that fell due in that batch, across all
streams, in as few ONNX Runtime calls as ``SCORE_BATCH`` allows. A batch of
clean JSON messages of held streams (the usual traffic) is handled column-wise
in NumPy; any other batch message by message, with the same results.
"""

from __future__ import annotations

import logging
import math
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from edgewatch.agent import events
from edgewatch.agent.episodes import EpisodeTracker, Transition
from edgewatch.agent.events import BatchView, ScoredWindow, Subscribers
from edgewatch.agent.lifecycle.shadow import ShadowScorer
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.postprocess import PostProcessor
from edgewatch.agent.runtime import DriftSettings, ModelRuntime, Overrides
from edgewatch.agent.sinks import Sink
from edgewatch.agent.sources import Item, Kind, Source
from edgewatch.agent.sources.columns import parse_columns
from edgewatch.agent.sources.parsing import (DEFAULT_MAX_BYTES, BadReason, Measurement, StateCells, check_values,
                                             parse_message, sane_timestamp, value_keys_beside)
from edgewatch.agent.sources.rows import CLOCK_WARN_AFTER, RowAssembler
from edgewatch.agent.sources.supervision import RestartPolicy, SourceSupervisor
from edgewatch.agent.streams import StreamTable
from edgewatch.agent.windows import StreamWindows, group_by_slot
from edgewatch.contract import ModelCard

log = logging.getLogger("edgewatch.agent")

BAD_LOG_INTERVAL = 60.0
DEFAULT_STREAM_TTL = 3600.0  # seconds without a message before a stream's state is dropped
# a score the graph could not give as a finite number (inputs near float32's limit) is reported as this,
# and counts as over the threshold: it is as anomalous as a score can be
SCORE_CAP = float(np.finfo(np.float32).max)
# how long a stop waits for its sources to end once nothing is queued: a source blocked in a read that no
# stop can interrupt (stdin kept open by the process feeding it) would otherwise hold the agent forever,
# and its thread is a daemon that ends with the process
SOURCE_STOP_GRACE = 5.0
# Most windows per ONNX Runtime call; a batch's due windows are split into equal parts of at most this.
# The int8 S0 costs 63-70 µs per window from 16 windows a call up (its LSTM kernel's work per window does
# not shrink with the call), PyTorch eager 165-190 at 16 and 150-165 at 32: the network is 2.6-3.2x
# PyTorch at 16 and 2.4-2.5x at 32, while the whole agent differs by 1-3 % since it decides once per
# drained batch (docs/benchmarks.md, issue 28). Smaller calls also keep ORT's arena, and the peak, low.
SCORE_BATCH = 16


@dataclass
class AgentOptions:
    """Run-time choices; ``None`` means "take the model file's value"."""

    stride: int | None = None
    threshold: float | None = None
    k: int | None = None
    n: int | None = None
    close_after: int | None = None  # quiet windows before an episode ends (the card's m)
    sensitivity: float = 1.0  # anomaly_score's multiplier; windows alert above anomaly_score 1
    quiet_start: float = 0.0  # seconds of each stream's own time whose episodes are held, counted (0: none)
    agent_id: str = field(default_factory=socket.gethostname)
    max_batch: int = 1024
    queue_size: int = 1024
    max_message_bytes: int = DEFAULT_MAX_BYTES
    top_features: int = 3
    drift_every: int = 512  # messages per stream between drift checks; 0 turns drift checks off
    drift_sample: int = 512  # inputs kept per stream for the KS check
    drift_keep_every: int = 10  # keep every n-th input, so the sample spans n x drift_sample messages
    drift_min_statistic: float = 0.25  # and a KS distance at least this large (see DriftWatch)
    # a message of a new stream past this is bad input, too_many_streams; None: what fits the unit's
    # MemoryMax=512M with the model given at start (ModelRuntime.default_max_streams: 10,000 for S0)
    max_streams: int | None = None
    stream_ttl: float | None = DEFAULT_STREAM_TTL  # evict streams idle this long (None/0: never)
    source_restart: RestartPolicy = field(default_factory=RestartPolicy)  # for sources whose thread died

    def overrides(self) -> Overrides:
        return Overrides(stride=self.stride, threshold=self.threshold, k=self.k, n=self.n, m=self.close_after,
                         sensitivity=self.sensitivity, quiet_start=self.quiet_start)

    def drift_settings(self) -> DriftSettings:
        return DriftSettings(every=self.drift_every, sample=self.drift_sample, keep_every=self.drift_keep_every,
                             min_statistic=self.drift_min_statistic)


@dataclass(frozen=True)
class StreamState:
    """One held stream as a metrics scrape sees it (:meth:`Agent.stream_states`)."""

    slot: int
    name: str
    age: float  # seconds since its last message
    alerting: bool  # in an open episode


@dataclass
class RunSummary:
    messages: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    windows: int = 0
    events: dict[str, int] = field(default_factory=dict)
    streams: int = 0  # streams seen since start
    seconds: float = 0.0
    nonfinite_scores: dict[str, int] = field(default_factory=dict)  # windows whose score was nan/inf, by kind
    evicted_streams: int = 0
    source_restarts: int = 0
    source_failures: dict[str, str] = field(default_factory=dict)  # sources that ended unexpectedly: why
    # what ended the run: "sources" (every source ended), "stop" (request_stop, a signal), "duration", "messages"
    ended_by: str = ""
    delivery: dict[str, int] = field(default_factory=dict)  # spooling sinks' counts (MqttSink.delivery), summed
    episodes_held: int = 0  # episodes not sent: their stream was in its --quiet-start
    sparkplug_rebirths: int = 0  # rebirth requests (NCMD) MQTT sources sent to edge nodes whose births they missed


class Agent:
    """Scores many streams with one model runtime and emits alert events to sinks.

    Given a :class:`ScoringModel`, the runtime is built from it and the
    options' overrides (:class:`BadModelFile` / :class:`BadOverride` when it
    cannot run). Who else receives its events and batches is said once, by
    :meth:`subscribe` (the assembly calls it for the live page, the run
    recorder and the fleet member); which model runs next, by
    :meth:`queue_model` (the lifecycle's ``accept`` calls it).
    """

    def __init__(self, model: ScoringModel | ModelRuntime, sinks: list[Sink], options: AgentOptions | None = None,
                 metrics: AgentMetrics | None = None, learner: Any = None) -> None:
        self.options = options or AgentOptions()
        self.learner = learner  # a StreamLearner (agent/learn.py): each stream learns and runs its own model
        self.metrics = metrics or AgentMetrics()
        self.sinks = list(sinks)
        self.subscribers = Subscribers()
        self.sources: list[Source] = []
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=self.options.queue_size)
        self.summary = RunSummary()
        self._last_sweep = time.monotonic()
        self._nonfinite_logged = 0.0
        self._bad_logged: dict[BadReason, float] = {}
        self._failures: dict[str, list[float]] = {}  # a sink's or subscriber's name -> [failures, last logged]
        self._stop = threading.Event()
        self._swap_lock = threading.Lock()
        self._pending: tuple[ModelRuntime, dict[str, Any]] | None = None
        self._pending_shadow: tuple[ShadowScorer | None, dict[str, Any]] | None = None
        self.shadow: ShadowScorer | None = None  # a model scoring the same windows beside this one, never alerting
        self._posted: deque[dict[str, Any]] = deque()
        self._closed = False
        self.started_at = time.time()
        self.last_message_at: float | None = None  # wall time of the last message (good or bad)
        self.last_row_at: float | None = None  # wall time of the last message that was not refused
        self._rows: dict[str, RowAssembler] = {}  # per source: objects keyed by feature name, on raw lines
        self.heartbeat = time.monotonic()  # the loop's last turn; a watchdog checks it is recent
        if isinstance(model, ScoringModel):
            model = ModelRuntime.build(model, self.options.overrides(), self.options.drift_settings())
        self.runtime = model
        self.table = StreamTable(model, self.options.max_streams or model.default_max_streams())
        # a feature named v or value is keyed by name, not the values form; a swap keeps the features (queue_model)
        self._value_keys = value_keys_beside(self.features)
        # state features read from text ("Run"), in arrays on raw lines; a swap keeps them too (check_fits)
        self._states = StateCells.of(self.features, self.runtime.card.states, "agent")

    # -- model ---------------------------------------------------------------------

    @property
    def model(self) -> ScoringModel:
        return self.runtime.model

    @property
    def card(self) -> ModelCard:
        return self.runtime.card

    @property
    def features(self) -> list[str]:
        return self.runtime.card.features

    @property
    def window(self) -> int:
        return self.runtime.window

    @property
    def stride(self) -> int:
        return self.runtime.stride

    @property
    def threshold(self) -> float:
        return self.runtime.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        """Change the running threshold in place (tests, an operator's live change); must be finite.

        ``value`` has ``--threshold``'s raw meaning; with a sensitivity other
        than 1 the agent then alerts where the sensitivity puts it.
        """
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"threshold {value} is not finite")
        self.runtime.set_threshold(value)

    @property
    def tracker(self) -> EpisodeTracker:
        return self.runtime.tracker

    @property
    def post(self) -> PostProcessor:
        return self.runtime.post

    @property
    def drift(self):  # noqa: ANN201 - DriftWatch | None
        return self.runtime.drift

    @property
    def max_streams(self) -> int:
        return self.table.max_streams

    @property
    def windows(self) -> StreamWindows:
        return self.table.windows

    def subscribe(self, on_event: Callable[[dict[str, Any]], None] | None = None,
                  on_batch: Callable[[BatchView], None] | None = None,
                  on_forget: Callable[[list[str]], None] | None = None) -> Callable[[], None]:
        """Call ``on_event`` with every event the sinks get, ``on_batch`` with every processed batch,
        ``on_forget`` with the names of the streams each ``--stream-ttl`` sweep dropped.

        All run in the loop's thread and must be quick; what they raise ends
        the run (a bug, not data). A batch view costs the hot path, so it is
        built only while someone subscribed to batches. A dropped stream's
        open episode has ended (its ``end`` event went out) before
        ``on_forget`` hears of it. Returns the call that ends the subscription.
        """
        return self.subscribers.add(on_event, on_batch, on_forget)

    def queue_model(self, runtime: ModelRuntime, info: dict[str, Any] | None = None) -> None:
        """Run ``runtime`` from the next batch on (no message is dropped); it must read the same features.

        ``info`` (the fleet's message id, action, note) goes into the ``model_swapped`` event.
        """
        runtime.check_fits(self.runtime)
        with self._swap_lock:
            self._pending = (runtime, dict(info or {}))

    def queue_shadow(self, scorer: ShadowScorer | None, info: dict[str, Any] | None = None) -> None:
        """Score beside the live model with ``scorer`` from the next batch on (None ends shadow scoring)."""
        if scorer is not None:
            scorer.check_fits(scorer.runtime, self.runtime)
        with self._swap_lock:
            self._pending_shadow = (scorer, dict(info or {}))

    def post_event(self, event: dict[str, Any]) -> None:
        """Hand an event from another thread to the loop, which sends it to the sinks (thread-safe)."""
        self._posted.append(event)

    def _emit_posted(self) -> None:
        while self._posted:
            self._emit(self._posted.popleft())

    def _apply_pending(self) -> None:
        with self._swap_lock:
            pending, self._pending = self._pending, None
            shadow, self._pending_shadow = self._pending_shadow, None
        if shadow is not None:
            self.shadow = shadow[0]
            if shadow[0] is not None:
                self._emit({**events.model_shadow_event(agent=self.options.agent_id, now=time.time(),
                                                        live=self.model, shadow=shadow[0].runtime.model),
                            **shadow[1]})
        if pending is None:
            return
        runtime, info = pending
        old = self.model
        # close open episodes: their scores came from another model
        now = time.time()
        for slot in self.tracker.open_slots():
            self._close_episode(self.runtime, slot, "model swapped")
        self.runtime = runtime
        self.table.install(runtime)
        for rows in self._rows.values():  # the new card's logging steps: how long a first value is held
            rows.use_logged_every(runtime.card.logged_every)
            rows.use_totalisers(runtime.card.totalisers)  # and the totalisers it takes as their rate
        self.metrics.model_swaps.labels("ok").inc()
        self._emit({**events.model_event(agent=self.options.agent_id, now=now, previous=old, model=runtime.model,
                                         warnings=runtime.warnings), **info})
        log.info("model swapped: %s -> %s", old.sha256[:12], runtime.model.sha256[:12])

    # -- streams -------------------------------------------------------------------

    def _new_stream(self, stream: str, source: str) -> int | None:
        """The slot of a stream not held yet, or None past ``max_streams``."""
        slot = self.table.add(stream, source)
        if slot is not None:
            self.metrics.streams.set(len(self.table))
        return slot

    def _reset_source(self, source: str, streams: tuple[str, ...] | None = None) -> None:
        """Reset the streams of ``source``, or only ``streams`` (a Sparkplug death): it reconnected."""
        for slot in self.table.of_source(source, streams):
            self.table.reset(slot)

    def evict_idle(self, now: float | None = None) -> int:
        """Drop the state of streams without a message for ``stream_ttl`` seconds; returns how many.

        An open episode of such a stream is ended first (reason "stream
        idle"). Its slot is reused by the next new stream, so memory stays
        bounded by ``max_streams`` however many ids come and go.
        """
        ttl = self.options.stream_ttl
        if not ttl:
            return 0
        now = time.monotonic() if now is None else now
        self._last_sweep = now
        idle = self.table.idle(now, ttl)
        names = [str(self.table.names[slot]) for slot in idle]
        for slot in idle:
            self._close_episode(self.table.runtime_of(slot), slot, "stream idle")
            self.table.release(slot)
            self.metrics.stream_series.forget(slot)
        if idle:
            for rows in self._rows.values():  # held values and a totaliser's last count: it comes back as new
                for name in names:
                    rows.reset(name)
            if self.learner is not None:
                self.learner.forget(names)
            for forget in self.subscribers.on_forget:
                self._guarded(forget, names)
            held = len(self.table)
            self.summary.evicted_streams += len(idle)
            self.metrics.streams.set(held)
            self.metrics.evicted_streams.inc(len(idle))
            log.info("dropped %d stream(s) idle for %gs or more (--stream-ttl); %d held", len(idle), ttl, held)
        return len(idle)

    def _sweep_due(self, now: float) -> bool:
        """Whether the idle streams are to be looked for now: at most every second (or half the TTL).

        Also when no message comes at all: the sweep ran only with a batch, so
        a stream that opened an episode and then fell silent with every other
        stream (a device that died mid-fault, the only one on the agent) kept
        it open for ever, not ``--stream-ttl`` seconds."""
        ttl = self.options.stream_ttl
        return bool(ttl) and now - self._last_sweep >= min(1.0, ttl / 2)

    @property
    def streams(self) -> list[str]:
        """The streams held now (evicted ones are gone until they send again)."""
        return self.table.held

    def stream_states(self) -> list[StreamState]:
        """Every held stream's age and alert state, for a metrics scrape (another thread).

        It copies the lists it reads and takes no lock, so a scrape never
        holds the loop up; a stream added or evicted during the copy shows
        up at the next scrape.
        """
        now = time.monotonic()
        t = self.table
        names, seen, own = list(t.names), list(t.last_seen), dict(t.runtimes)
        return [StreamState(slot, name, now - seen[slot],
                            own.get(slot, self.runtime).tracker.open_episode(slot) is not None)
                for slot, name in enumerate(names) if name is not None and slot < len(seen)]

    # -- the hot path --------------------------------------------------------------

    def process(self, items: list[Item]) -> None:
        """Handle one batch of items from the sources, in order; its events share one fsync (:meth:`_one_sync`)."""
        with self._one_sync():
            self._process(items)

    def _process(self, items: list[Item]) -> None:
        if self._pending is not None or self._pending_shadow is not None:
            self._apply_pending()
        if self._posted:
            self._emit_posted()
        n_features = self.card.n_features
        max_bytes = self.options.max_message_bytes
        value_keys, states = self._value_keys, self._states
        table = self.table
        windows = table.windows
        last_seen = table.last_seen
        now = time.monotonic()
        if self._sweep_due(now):
            self.evict_idle(now)
        if (self.learner is None and not table.runtimes and not self.runtime.card.totalisers
                and self._process_columns(items, now)):  # totalisers: each row through its source's assembler
            return
        want_view = bool(self.subscribers.on_batch)  # they get every message; the drift watch only rows
        want_rows = want_view or self.drift is not None
        due_x: list[np.ndarray] = []
        due_meta: list[tuple[int, float, int]] = []
        msg_slots: list[int] = []
        msg_rows: list[list[float]] = []
        msg_ts: list[float] = []
        msg_seq: list[int] = []
        good = 0
        bad: dict[BadReason, int] = {}
        slots_of, seqs, push, learning = table.slots, table.seq, windows.push, self.learner is not None
        last_ts, own_runtime = table.last_ts, table.runtimes
        for kind, source, payload, received in items:
            if kind == Kind.RAW:
                m = parse_message(payload, n_features, max_bytes, value_keys, states)  # type: ignore[arg-type]
                if m is BadReason.NO_VALUES:
                    m = self._keyed_row(payload, source, received)  # type: ignore[arg-type]
                elif type(m) is Measurement:
                    if m.ts is not None and abs(m.ts - received) >= CLOCK_WARN_AFTER:
                        self._rows_of(source).check_clock(m.stream or source, m.ts, received)
                    m = self._rows_of(source).whole(m, source, received)  # totalisers to their rate, if any
                if type(m) is not Measurement:
                    bad[m] = bad.get(m, 0) + 1  # type: ignore[index]
                    continue
            elif kind == Kind.MEASUREMENT:  # parsed by its source (replay): the same checks as raw input
                m = payload  # type: ignore[assignment]
                reason = check_values(m.values, n_features)
                if reason is None and not sane_timestamp(m.ts):
                    reason = BadReason.BAD_TIMESTAMP
                if reason is not None:
                    bad[reason] = bad.get(reason, 0) + 1
                    continue
            elif kind == Kind.BAD:
                bad[payload] = bad.get(payload, 0) + 1  # type: ignore[index]
                continue
            elif kind == Kind.RESET:
                self._reset_source(source, payload)  # type: ignore[arg-type]
                if payload is None:
                    self.metrics.reconnects.labels(source).inc()
                continue
            elif kind == Kind.REBIRTH:
                self.summary.sparkplug_rebirths += 1
                self.metrics.sparkplug_rebirths.labels(source).inc()
                continue
            else:
                continue
            slot = slots_of.get(m.stream or source)
            if slot is None:
                slot = self._new_stream(m.stream or source, source)
                if slot is None:
                    bad[BadReason.TOO_MANY_STREAMS] = bad.get(BadReason.TOO_MANY_STREAMS, 0) + 1
                    continue
            good += 1
            last_seen[slot] = now
            seq = seqs[slot]
            seqs[slot] = seq + 1
            ts = m.ts if m.ts is not None else received
            last_ts[slot] = ts
            due = push(slot, m.values)
            if learning and slot not in own_runtime and not self._learn(slot, m.values):
                due = False  # still learning: the row fills its window, nothing is scored
            if due:
                due_x.append(windows.latest(slot).copy())
                due_meta.append((slot, ts, seq))
            if want_rows:
                msg_slots.append(slot)
                msg_rows.append(m.values)
                if want_view:
                    msg_ts.append(ts)
                    msg_seq.append(seq)
        self._finish_batch(good, bad, due_x, due_meta, msg_slots, msg_rows, msg_ts, msg_seq)

    def _process_columns(self, items: list[Item], now: float) -> bool:
        """A batch of clean raw messages of held streams, column-wise; False (nothing done) for any other batch.

        What :meth:`process` does message by message, with the same
        results: parse (:func:`parse_columns`), per-slot counters once per
        stream, windows appended in bulk (:meth:`StreamWindows.push_many`).
        A bad message, a new stream, another item kind or a learning agent
        send the batch the message-by-message way, which gives every bad
        message its reason and every new stream its slot in arrival order.
        """
        if set(map(itemgetter(0), items)) != {Kind.RAW}:
            return False
        cols = parse_columns(list(map(itemgetter(2), items)), self.card.n_features, self.options.max_message_bytes)
        if cols is None:
            return False
        table = self.table
        slot_list = list(map(table.slots.get, cols.streams or list(map(itemgetter(1), items))))
        if None in slot_list:
            return False
        slots = np.array(slot_list, dtype=np.intp)
        groups = group_by_slot(slots)
        due, x = table.windows.push_many(cols.values, groups)
        received = list(map(itemgetter(3), items))
        seqs, last_seen, last_ts = table.seq, table.last_seen, table.last_ts
        distinct = groups.slots.tolist()
        first_seq = np.array([seqs[s] for s in distinct], dtype=np.int64)
        counts = groups.counts.tolist()
        for s, k, last in zip(distinct, counts, groups.order[groups.starts + groups.counts - 1].tolist()):
            seqs[s] += k
            last_seen[s] = now
            last_ts[s] = received[last]
        seq = np.empty(slots.size, dtype=np.int64)
        seq[groups.order] = np.repeat(first_seq, groups.counts) + groups.rank
        due_list = due.tolist()
        due_meta = list(zip(slots[due].tolist(), [received[i] for i in due_list], seq[due].tolist()))
        view = bool(self.subscribers.on_batch)
        self._finish_batch(len(items), {}, x, due_meta, slots, cols.values, received if view else [],
                           seq.tolist() if view else [], groups.order)
        return True

    def _finish_batch(self, good: int, bad: dict[BadReason, int], due_x: list[np.ndarray] | np.ndarray,
                      due_meta: list[tuple[int, float, int]], msg_slots: list[int] | np.ndarray,
                      msg_rows: list[list[float]] | np.ndarray, msg_ts: list[float], msg_seq: list[int],
                      slot_order: np.ndarray | None = None) -> None:
        """Count a parsed batch, score its due windows, feed the drift watch and the batch subscribers.

        ``slot_order``: ``msg_slots``' stable argsort, when the batch was grouped by slot already.
        """
        n_bad = sum(bad.values())
        if good or n_bad:
            self.last_message_at = time.time()
            if good:
                self.last_row_at = self.last_message_at
        self.summary.messages += good + n_bad
        self.metrics.messages.inc(good + n_bad)
        if bad:
            self._count_bad(bad)
        scored = self._score(due_x, due_meta) if len(due_meta) else []
        if self.drift is not None and len(msg_slots):
            self.drift.observe_many(np.asarray(msg_slots), np.asarray(msg_rows, dtype=np.float64), slot_order)
            for ev in self.drift.due_events():
                self._emit(self._drift_event(ev))
        if self.subscribers.on_batch and (len(msg_slots) or scored):
            names = self.table.names
            view = BatchView([names[s] for s in np.asarray(msg_slots, dtype=np.intp).tolist()], msg_ts, msg_seq,
                             np.asarray(msg_rows, dtype=np.float32).reshape(-1, self.card.n_features), scored,
                             self.threshold)
            for on_batch in self.subscribers.on_batch:
                self._guarded(on_batch, view)

    def _learn(self, slot: int, values: list[float]) -> bool:
        """A learning stream's row: True when the stream has a model from the state folder (the row scores);
        else the row goes to the learner, and once it fits, later rows score with the stream's own model."""
        stream = self.table.names[slot]
        rt = self.learner.runtime(stream)
        if rt is not None:
            self.table.runtimes[slot] = rt
            return True
        rt = self.learner.observe(stream, values)
        if rt is not None:
            self.table.runtimes[slot] = rt
        return False

    def _score(self, due_x: list[np.ndarray] | np.ndarray, due_meta: list[tuple[int, float, int]]
               ) -> list[ScoredWindow]:
        own = self.table.runtimes
        if not own:
            return self._score_with(self.runtime, due_x, due_meta)
        groups: dict[int, tuple[ModelRuntime, list[np.ndarray], list[tuple[int, float, int]]]] = {}
        for x, meta in zip(due_x, due_meta):
            rt = own.get(meta[0], self.runtime)
            group = groups.setdefault(id(rt), (rt, [], []))
            group[1].append(x)
            group[2].append(meta)
        out: list[ScoredWindow] = []
        for rt, xs, metas in groups.values():
            out += self._score_with(rt, xs, metas)
        return out

    def _score_with(self, rt: ModelRuntime, due_x: list[np.ndarray] | np.ndarray, due_meta: list[tuple[int, float, int]]
                    ) -> list[ScoredWindow]:
        """Score a batch's due windows in calls of at most SCORE_BATCH (equal parts), then decide on all at once.

        Why decide once: post-process, threshold, per-stream series and the
        k-of-n tracker cost the same per call whatever the call's size, and a
        drained batch makes a dozen calls; their order per stream is kept.
        """
        n = len(due_meta)
        parts = -(-n // min(self.options.max_batch, SCORE_BATCH))
        bounds = [n * i // parts for i in range(parts + 1)]
        got: list[Any] = []
        seconds: list[float] = []
        for lo, hi in zip(bounds, bounds[1:]):
            x = due_x[lo:hi] if isinstance(due_x, np.ndarray) else np.stack(due_x[lo:hi])
            t0 = time.perf_counter()
            got.append(rt.model.score_many(x))
            seconds.append(time.perf_counter() - t0)
        # observed after the calls: right after one, the histograms' objects are out of the CPU's caches
        # (measured 8.8 µs a call against 3.3 back to back)
        for s, lo, hi in zip(seconds, bounds, bounds[1:]):
            self.metrics.latency.observe(s)
            self.metrics.batch_size.observe(hi - lo)
        if parts == 1:
            raw, feature_error, aux = got[0].scores, got[0].feature_error, got[0].aux
        else:
            raw = np.concatenate([g.scores for g in got])
            feature_error = np.concatenate([g.feature_error for g in got])
            aux = None if got[0].aux is None else np.concatenate([g.aux for g in got])
        slot_list, ts_list, seq_list = (list(c) for c in zip(*due_meta))
        slots = np.array(slot_list, dtype=np.int64)
        times = np.array(ts_list, dtype=np.float64)
        scores = self._finite_scores(rt.post.update_many(slots, raw, aux, times))
        if self.shadow is not None and rt is self.runtime:  # one more batched call on the same windows
            x = due_x if isinstance(due_x, np.ndarray) else np.stack(due_x)
            self.shadow.score(x, slots, due_meta, scores, self.table.names, rt.threshold)
        # Python floats and bools once per batch: indexing NumPy arrays per window costs more
        score_list, over_list = scores.tolist(), (scores > rt.threshold).tolist()
        self.metrics.stream_series.scored(slot_list, score_list, rt.scale)
        out: list[ScoredWindow] = []  # for the batch subscribers (the live page, the recorder) only
        if self.subscribers.on_batch:
            names = self.table.names
            out = [ScoredWindow(slot, names[slot], ts, seq, s, o, a) for slot, ts, seq, s, o, a
                   in zip(slot_list, ts_list, seq_list, score_list, over_list, rt.scale.scores(scores).tolist())]
        for i, tr in rt.tracker.update_many(slot_list, over_list, score_list, ts_list, seq_list,
                                            feature_error if self.features else None):
            self._emit(self._alert(tr, feature_error[i], runtime=rt))
        if rt.tracker.held:
            held = rt.tracker.take_held()
            self.summary.episodes_held += held
            self.metrics.episodes_held.inc(held)
        self.summary.windows += n
        self.metrics.windows.inc(n)
        return out

    def _finite_scores(self, scores: np.ndarray) -> np.ndarray:
        """Scores as finite numbers: NaN and +inf become SCORE_CAP (over any threshold), -inf -SCORE_CAP.

        Why: a window whose values are near float32's limit can overflow the
        graph; it is anomalous, and its alert must still serialise as strict
        JSON on every sink (an episode's end must never be unsendable).
        """
        scores = np.asarray(scores, dtype=np.float64)
        if math.isfinite(float(scores.sum())):  # one sum is cheaper than a mask (an overflowing sum: the mask)
            return scores
        bad = ~np.isfinite(scores)
        if not bad.any():
            return scores
        scores = scores.copy()
        counts = {"nan": int(np.isnan(scores).sum()), "inf": int(np.isposinf(scores).sum()),
                  "-inf": int(np.isneginf(scores).sum())}
        scores[np.isnan(scores) | np.isposinf(scores)] = SCORE_CAP
        scores[np.isneginf(scores)] = -SCORE_CAP
        for kind, n in counts.items():
            if n:
                self.summary.nonfinite_scores[kind] = self.summary.nonfinite_scores.get(kind, 0) + n
                self.metrics.nonfinite_scores.labels(kind).inc(n)
        now = time.monotonic()
        if now - self._nonfinite_logged >= BAD_LOG_INTERVAL:
            self._nonfinite_logged = now
            log.warning("%d window score(s) not finite (%s) in one batch: reported as %.6g, over the threshold "
                        "(logged at most once a minute)", int(bad.sum()),
                        ", ".join(f"{k} {v}" for k, v in counts.items() if v), SCORE_CAP)
        return scores

    # -- events --------------------------------------------------------------------

    def _alert(self, tr: Transition, feature_error: np.ndarray | None = None, reason: str | None = None,
               runtime: ModelRuntime | None = None) -> dict[str, Any]:
        rt = runtime or self.runtime
        now = time.time()
        return events.episode_event(tr, agent=self.options.agent_id, stream=self.table.names[tr.slot],
                                    threshold=rt.threshold, scale=rt.scale, model=rt.model, now=now,
                                    contributions=None if feature_error is None or not self.features else
                                    events.top_features(feature_error, self.features, self.options.top_features)
                                    if tr.episode.lead is None else
                                    events.lead_features(tr.episode.lead, self.features, self.options.top_features),
                                    reason=reason)

    def _close_episode(self, rt: ModelRuntime, slot: int, reason: str) -> None:
        """End ``slot``'s open episode for ``reason`` (not its data), at its last message's time.

        Why that time and not the wall clock: the episode's start is a
        message's time too, and a replay of last year's data would otherwise
        get a duration of a year; the wall time goes in ``closed_at``. Never
        before the episode's start (the tracker's rule: a clock that went backwards).
        """
        if rt.tracker.open_episode(slot) is None:
            return
        tr = rt.tracker.close(slot, self.table.last_ts[slot], self.table.seq[slot])
        if tr:
            self._emit(self._alert(tr, reason=reason, runtime=rt))

    def _drift_event(self, ev: Any) -> dict[str, Any]:
        if ev.features:
            self.metrics.drift.inc()
            if ev.reason:
                log.warning("stream %s: %s", self.table.names[ev.slot], ev.reason)
        return events.drift_event(ev, agent=self.options.agent_id, stream=self.table.names[ev.slot],
                                  model=self.model, ts=self.table.last_ts[ev.slot], now=time.time())

    def _emit(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "?")
        self.summary.events[kind] = self.summary.events.get(kind, 0) + 1
        if kind in ("start", "end"):
            self.metrics.alerts.labels(kind).inc()
            if self.shadow is not None:
                self.shadow.on_live_event(event)
        for sink in self.sinks:
            self._guarded(sink.send, event)
        for on_event in self.subscribers.on_event:
            self._guarded(on_event, event)

    def _guarded(self, call: Callable[[Any], None], arg: Any) -> None:
        """``call(arg)`` for a sink or a subscriber; what it raises is logged, never the loop's end.

        One broken sink must not silence the others, and a subscriber (the
        run recorder, Home Assistant, the live page) must not stop the agent:
        before, only sinks were guarded, and a full disk under ``--record-run``
        ended the agent. Logged with the traceback at most once a minute per
        callee, with its count: a sink failing on every event logged every one.
        """
        try:
            call(arg)
        except Exception:
            name = getattr(call, "__qualname__", None) or type(call).__name__
            seen = self._failures.setdefault(name, [0, -math.inf])
            seen[0] += 1
            now = time.monotonic()
            if now - seen[1] >= BAD_LOG_INTERVAL:
                seen[1] = now
                log.exception("%s failed (%d time(s) so far; the agent goes on; logged at most once a minute)",
                              name, seen[0])

    def _count_bad(self, bad: dict[BadReason, int]) -> None:
        now = time.monotonic()
        for reason, n in bad.items():
            self.summary.bad[reason.value] = self.summary.bad.get(reason.value, 0) + n
            self.metrics.bad_messages.labels(reason.value).inc(n)
            last = self._bad_logged.get(reason)
            if last is None or now - last >= BAD_LOG_INTERVAL:
                self._bad_logged[reason] = now
                log.warning("skipped bad input: %s (%d so far; logged at most once a minute per reason)",
                            reason.value, self.summary.bad[reason.value])

    # -- running -------------------------------------------------------------------

    def add_source(self, source: Source) -> None:
        self.sources.append(source)
        rows = getattr(source, "rows", None)  # an embedder's own source need not have one
        if rows is not None:
            rows.use_logged_every(self.runtime.card.logged_every)  # each feature's step in the normal data
            rows.use_totalisers(self.runtime.card.totalisers)  # totalisers turned into the rate the model knows
            self._rows[source.name] = rows

    def _keyed_row(self, raw: str | bytes, source: str, received: float) -> Measurement | BadReason:
        """A raw line that is an object keyed by feature name, through its source's row assembler."""
        return self._rows_of(source).keyed_message(raw, source, received, self.options.max_message_bytes)

    def _rows_of(self, source: str) -> RowAssembler:
        """The row assembler of a source whose raw lines the loop parses (stdin, websockets): its rules, its logs."""
        rows = self._rows.get(source)
        if rows is None:
            rows = self._rows[source] = RowAssembler(self.features, source=source, states=self.runtime.card.states,
                                                     logged_every=self.runtime.card.logged_every,
                                                     totalisers=self.runtime.card.totalisers)
        return rows

    def request_stop(self) -> None:
        """Stop reading; what is already queued is still processed (safe from a signal handler)."""
        self._stop.set()

    def run(self, duration: float | None = None, max_messages: int | None = None) -> RunSummary:
        """Run until every source has ended, ``duration`` passed, or :meth:`request_stop`.

        However it ends (also by an exception), sources are stopped, open
        episodes get their ``end`` and the sinks are closed (flushed). A
        source whose thread dies is started again (:mod:`.sources.supervision`);
        one that ended unexpectedly is in ``summary.source_failures``.
        """
        t0 = time.monotonic()
        supervisor = SourceSupervisor(self.sources, self.queue, self.metrics, self.options.source_restart)
        try:
            self._loop(t0, duration, max_messages, supervisor)
        finally:
            for src in self.sources:
                src.stop()
            for src in self.sources:
                src.join(timeout=2.0)
            try:
                with self._one_sync():
                    self.close_episodes("agent stopped")
                    self._emit_posted()
            finally:
                self.close()
            self.summary.streams = self.table.seen
            self.summary.seconds = time.monotonic() - t0
            self.summary.source_restarts = supervisor.restarts
            self.summary.source_failures = supervisor.failures()
        return self.summary

    def _stop_reason(self, t0: float, duration: float | None, max_messages: int | None) -> str | None:
        if self._stop.is_set():
            return "stop"
        if duration is not None and time.monotonic() - t0 >= duration:
            return "duration"
        if max_messages is not None and self.summary.messages >= max_messages:
            return "messages"
        return None

    def _loop(self, t0: float, duration: float | None, max_messages: int | None,
              supervisor: SourceSupervisor) -> None:
        supervisor.start_all()
        stopping = False
        stopped_at: float | None = None  # when the agent told its sources to stop
        q = self.queue
        limit = self.options.max_batch
        while True:
            self.heartbeat = time.monotonic()
            if not stopping:
                reason = self._stop_reason(t0, duration, max_messages)
                if reason is not None:
                    stopping = True
                    stopped_at = time.monotonic()
                    self.summary.ended_by = reason
                    supervisor.stop_all()
                else:
                    supervisor.tick()
            try:
                first = q.get(timeout=0.1)
            except queue.Empty:
                if stopping and supervisor.all_ended:
                    break
                if stopped_at is not None and time.monotonic() - stopped_at >= SOURCE_STOP_GRACE:
                    log.warning("source(s) %s did not end within %.0f s of the stop (blocked in a read); "
                                "stopping without them", ", ".join(supervisor.running_names()), SOURCE_STOP_GRACE)
                    break
                if self._pending is not None or self._pending_shadow is not None or self._posted:
                    with self._one_sync():
                        self._apply_pending()
                        self._emit_posted()
                now = time.monotonic()
                if self._sweep_due(now):  # every stream silent: the TTL still ends their episodes
                    if self.table.idle(now, self.options.stream_ttl):  # type: ignore[arg-type]
                        with self._one_sync():  # only then: a group wakes every spooling sink's sender
                            self.evict_idle(now)
                    else:
                        self._last_sweep = now
                continue
            items = [first]
            take = limit if max_messages is None else min(limit, max(1, max_messages - self.summary.messages))
            try:
                while len(items) < take:
                    items.append(q.get_nowait())
            except queue.Empty:
                pass
            if max_messages is not None and self.summary.messages >= max_messages:
                # --max-messages N scores N messages, not N and a batch (what is still queued is left unread)
                items = [it for it in items if it.kind in (Kind.END, Kind.FAILED)]
            for it in items:
                if it.kind == Kind.END:
                    supervisor.ended(it.payload)  # type: ignore[arg-type]
                elif it.kind == Kind.FAILED:
                    supervisor.failed(*it.payload)  # type: ignore[misc]
            self.process(items)
            if supervisor.all_ended and q.empty():
                if not stopping:
                    stopping = True
                    self.summary.ended_by = "sources"
                if supervisor.threads_done:
                    break

    @contextmanager
    def _one_sync(self) -> Iterator[None]:
        """One loop iteration's events share one fsync in each spooling sink (``begin_group``/``end_group``).

        Each alert was fsynced on its own: 0.14 ms here, 5-10 ms on an SD
        card, so the 2,500 ends of a model swap held scoring for 12-25 s there.
        The group ends before the loop goes on, so every event of an
        iteration is on disk (and only then published) when the next starts.
        """
        grouped = [s for s in self.sinks if hasattr(s, "begin_group")]
        for sink in grouped:
            sink.begin_group()
        try:
            yield
        finally:
            for sink in grouped:
                try:
                    sink.end_group()
                except Exception:  # one broken sink must not keep the others' events from their disk
                    log.exception("sink %s failed to sync its spool", type(sink).__name__)

    def close_episodes(self, reason: str) -> None:
        """Send an ``end`` for every open episode, so no consumer waits forever for one."""
        for rt in [self.runtime, *{id(r): r for r in self.table.runtimes.values()}.values()]:
            for slot in rt.tracker.open_slots():
                self._close_episode(rt, slot, reason)
        if self.learner is not None:
            self.learner.save()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Close (flush) every sink once; a failing sink does not keep the others open."""
        if self._closed:
            return
        self._closed = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", type(sink).__name__)
            delivery = getattr(sink, "delivery", None)
            if delivery is not None:
                for key, n in delivery().items():
                    self.summary.delivery[key] = self.summary.delivery.get(key, 0) + n

