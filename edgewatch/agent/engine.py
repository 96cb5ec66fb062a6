"""The agent loop: parse → window → score (batched) → post-process → decide → emit.

There is one loop for every model family. What differs between families
(window length, scaling, how the score is computed, an optional stateful
post-processing step, the threshold) lives in the model file, so nothing
here asks which family it runs.

Sources put items on one queue; the loop drains up to ``max_batch`` of them
at a time and scores every window that fell due in that batch, across all
streams, in a single ONNX Runtime call.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgewatch.agent import events
from edgewatch.agent.episodes import Transition
from edgewatch.agent.metrics import AgentMetrics
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.parsing import (DEFAULT_MAX_BYTES, BadReason, Measurement, check_values, parse_message,
                                     sane_timestamp)
from edgewatch.agent.runtime import CandidateCheck, DriftSettings, ModelRuntime, Overrides, load_runtime
from edgewatch.agent.sinks import Sink
from edgewatch.agent.sources import Item, Kind, Source
from edgewatch.agent.windows import StreamWindows
from edgewatch.errors import BadModelFile

log = logging.getLogger("edgewatch.agent")

BAD_LOG_INTERVAL = 60.0
# windows per ONNX Runtime call: per-window cost is flat from 32 to 341 windows (measured, S0 int8) but
# ORT's arena keeps its peak, so 1024-window calls cost ~60 MiB more resident memory than 128
SCORE_BATCH = 128


@dataclass
class AgentOptions:
    """Run-time choices; ``None`` means "take the model file's value"."""

    stride: int | None = None
    threshold: float | None = None
    k: int | None = None
    n: int | None = None
    agent_id: str = field(default_factory=socket.gethostname)
    max_batch: int = 1024
    queue_size: int = 4096
    max_message_bytes: int = DEFAULT_MAX_BYTES
    top_features: int = 3
    drift_every: int = 512  # messages per stream between drift checks; 0 turns drift checks off
    drift_sample: int = 512  # inputs kept per stream for the KS check
    drift_keep_every: int = 10  # keep every n-th input, so the sample spans n x drift_sample messages
    drift_min_statistic: float = 0.25  # and a KS distance at least this large (see DriftWatch)

    def overrides(self) -> Overrides:
        return Overrides(stride=self.stride, threshold=self.threshold, k=self.k, n=self.n)

    def drift_settings(self) -> DriftSettings:
        return DriftSettings(every=self.drift_every, sample=self.drift_sample, keep_every=self.drift_keep_every,
                             min_statistic=self.drift_min_statistic)


@dataclass
class ScoredWindow:
    slot: int
    stream: str
    ts: float
    seq: int
    score: float
    over: bool


@dataclass
class BatchView:
    """What one processed batch contained, for observers (live page, run recorder)."""

    streams: list[str]
    ts: list[float]
    seq: list[int]
    values: np.ndarray  # [messages, n_features]
    scored: list[ScoredWindow]
    threshold: float


class Observer(Protocol):
    def on_batch(self, view: BatchView) -> None: ...

    def on_event(self, event: dict[str, Any]) -> None: ...


@dataclass
class RunSummary:
    messages: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    windows: int = 0
    events: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    seconds: float = 0.0


class Agent:
    """Scores many streams with one model runtime and emits alert events to sinks.

    Given a :class:`ScoringModel`, the runtime is built from it and the
    options' overrides (:class:`BadModelFile` / :class:`BadOverride` when it
    cannot run). ``model_checks`` are run on every candidate model offered
    later (see :meth:`load_candidate`).
    """

    def __init__(self, model: ScoringModel | ModelRuntime, sinks: list[Sink], options: AgentOptions | None = None,
                 metrics: AgentMetrics | None = None, model_checks: list[CandidateCheck] | None = None) -> None:
        self.options = options or AgentOptions()
        self.metrics = metrics or AgentMetrics()
        self.sinks = list(sinks)
        self.model_checks: list[CandidateCheck] = list(model_checks or [])
        self.observers: list[Observer] = []
        self.sources: list[Source] = []
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=self.options.queue_size)
        self.summary = RunSummary()
        self._slots: dict[str, int] = {}
        self._stream_names: list[str] = []
        self._seq: list[int] = []
        self._source_streams: dict[str, set[int]] = {}
        self._bad_logged: dict[BadReason, float] = {}
        self._stop = threading.Event()
        self._swap_lock = threading.Lock()
        self._pending: ModelRuntime | None = None
        self._posted: deque[dict[str, Any]] = deque()
        self._closed = False
        self.started_at = time.time()
        self.last_message_at: float | None = None  # wall time of the last message (good or bad)
        self.heartbeat = time.monotonic()  # the loop's last turn; a watchdog checks it is recent
        if isinstance(model, ScoringModel):
            model = ModelRuntime.build(model, self.options.overrides(), self.options.drift_settings())
        self.windows: StreamWindows | None = None
        self._install(model)

    # -- model ---------------------------------------------------------------------

    @property
    def model(self) -> ScoringModel:
        return self.runtime.model

    @property
    def card(self):  # noqa: ANN201 - ModelCard
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
        """Change the running threshold in place (tests, an operator's live change); must be finite."""
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"threshold {value} is not finite")
        self.runtime.threshold = value

    @property
    def tracker(self):  # noqa: ANN201 - EpisodeTracker
        return self.runtime.tracker

    @property
    def post(self):  # noqa: ANN201 - PostProcessor
        return self.runtime.post

    @property
    def drift(self):  # noqa: ANN201 - DriftWatch | None
        return self.runtime.drift

    def _install(self, runtime: ModelRuntime) -> None:
        card = runtime.card
        old = self.windows
        if old is not None and old.window == runtime.window and old.n_features == card.n_features:
            old.stride = runtime.stride  # a swapped-in model of the same shape continues on the same windows
        else:
            self.windows = StreamWindows(runtime.window, card.n_features, runtime.stride,
                                         capacity=max(8, len(self._seq)))
        self.runtime = runtime

    def load_candidate(self, path: str | Path, expected_sha256: str | None = None,
                       data: bytes | None = None) -> ModelRuntime:
        """Build a runtime for a candidate file with this agent's overrides and checks, ready to swap.

        ``data``: the file's bytes when the caller already read (and checked)
        them; the runtime is then built from those very bytes. Fails
        (BadModelFile, BadOverride) with the reason when it cannot run here,
        including when it does not read this agent's features.
        """
        if data is None:
            runtime = load_runtime(path, self.options.overrides(), expected_sha256=expected_sha256,
                                   checks=self.model_checks, drift_settings=self.options.drift_settings())
        else:
            for check in self.model_checks:
                check(Path(path), data)
            runtime = ModelRuntime.build(ScoringModel(path, expected_sha256=expected_sha256, data=data),
                                         self.options.overrides(), self.options.drift_settings())
        self._check_fits(runtime)
        return runtime

    def _check_fits(self, runtime: ModelRuntime) -> None:
        if runtime.card.features != self.card.features:
            raise BadModelFile(f"{runtime.model.path} reads features {runtime.card.features}, the running model "
                               f"reads {self.card.features}: refusing to swap")

    def swap_runtime(self, runtime: ModelRuntime) -> None:
        """Queue a built runtime; it takes over between two batches, so no message is dropped."""
        self._check_fits(runtime)
        with self._swap_lock:
            self._pending = runtime

    def swap_model(self, model: ScoringModel) -> None:
        """Build a runtime for ``model`` with this agent's overrides and queue it (BadModelFile if it cannot run)."""
        self.swap_runtime(ModelRuntime.build(model, self.options.overrides(), self.options.drift_settings()))

    def refuse_model(self, reason: str, sha256: str | None = None, origin: str = "file") -> None:
        """Record a model that was offered and refused (metric, log, event); the running one stays."""
        self.metrics.model_swaps.labels("refused").inc()
        log.error("new model refused (%s), keeping %s: %s", origin, self.model.sha256[:12], reason)
        self.post_event(events.model_refused_event(agent=self.options.agent_id, now=time.time(), origin=origin,
                                                   reason=reason, sha256=sha256, running=self.model))

    def post_event(self, event: dict[str, Any]) -> None:
        """Hand an event from another thread to the loop, which sends it to the sinks (thread-safe)."""
        self._posted.append(event)

    def _emit_posted(self) -> None:
        while self._posted:
            self._emit(self._posted.popleft())

    def _apply_pending_model(self) -> None:
        with self._swap_lock:
            runtime, self._pending = self._pending, None
        if runtime is None:
            return
        old = self.model
        # close open episodes: their scores came from another model
        now = time.time()
        for slot in self.tracker.open_slots():
            tr = self.tracker.close(slot, now, self._seq[slot])
            if tr:
                self._emit(self._alert(tr, reason="model swapped"))
        self._install(runtime)
        self.metrics.model_swaps.labels("ok").inc()
        self._emit(events.model_event(agent=self.options.agent_id, now=now, previous=old, model=runtime.model,
                                      warnings=runtime.warnings))
        log.info("model swapped: %s -> %s", old.sha256[:12], runtime.model.sha256[:12])

    # -- streams -------------------------------------------------------------------

    def _slot(self, stream: str, source: str) -> int:
        slot = self._slots.get(stream)
        if slot is None:
            slot = len(self._stream_names)
            self._slots[stream] = slot
            self._stream_names.append(stream)
            self._seq.append(0)
            self.windows.ensure(slot)
            self.metrics.streams.set(len(self._stream_names))
        self._source_streams.setdefault(source, set()).add(slot)
        return slot

    def _reset_source(self, source: str) -> None:
        for slot in self._source_streams.get(source, ()):
            self.windows.reset(slot)
            self.tracker.reset(slot)
            self.post.reset(slot)
            if self.drift is not None:
                self.drift.reset(slot)

    @property
    def streams(self) -> list[str]:
        return list(self._stream_names)

    # -- the hot path --------------------------------------------------------------

    def process(self, items: list[Item]) -> None:
        """Handle one batch of items from the sources, in order."""
        if self._pending is not None:
            self._apply_pending_model()
        if self._posted:
            self._emit_posted()
        n_features = self.card.n_features
        max_bytes = self.options.max_message_bytes
        windows = self.windows
        want_view = bool(self.observers)  # observers get every message; the drift watch only rows
        want_rows = want_view or self.drift is not None
        due_x: list[np.ndarray] = []
        due_meta: list[tuple[int, float, int]] = []
        msg_slots: list[int] = []
        msg_rows: list[list[float]] = []
        msg_ts: list[float] = []
        msg_seq: list[int] = []
        good = 0
        bad: dict[BadReason, int] = {}
        for kind, source, payload, received in items:
            if kind == Kind.RAW:
                m = parse_message(payload, n_features, max_bytes)  # type: ignore[arg-type]
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
                self._reset_source(source)
                self.metrics.reconnects.labels(source).inc()
                continue
            else:
                continue
            good += 1
            slot = self._slots.get(m.stream or source)
            if slot is None:
                slot = self._slot(m.stream or source, source)
            seq = self._seq[slot]
            self._seq[slot] = seq + 1
            ts = m.ts if m.ts is not None else received
            if windows.push(slot, m.values):
                due_x.append(windows.latest(slot).copy())
                due_meta.append((slot, ts, seq))
            if want_rows:
                msg_slots.append(slot)
                msg_rows.append(m.values)
                if want_view:
                    msg_ts.append(ts)
                    msg_seq.append(seq)
        n_bad = sum(bad.values())
        if good or n_bad:
            self.last_message_at = time.time()
        self.summary.messages += good + n_bad
        self.metrics.messages.inc(good + n_bad)
        if bad:
            self._count_bad(bad)
        scored = self._score(due_x, due_meta) if due_x else []
        if self.drift is not None and msg_slots:
            self.drift.observe_many(np.asarray(msg_slots), np.asarray(msg_rows, dtype=np.float64))
            for ev in self.drift.due_events():
                self._emit(self._drift_event(ev))
        if want_view and (msg_slots or scored):
            view = BatchView([self._stream_names[s] for s in msg_slots], msg_ts, msg_seq,
                             np.asarray(msg_rows, dtype=np.float32).reshape(-1, n_features), scored,
                             self.threshold)
            for obs in self.observers:
                obs.on_batch(view)

    def _score(self, due_x: list[np.ndarray], due_meta: list[tuple[int, float, int]]) -> list[ScoredWindow]:
        out: list[ScoredWindow] = []
        step = min(self.options.max_batch, SCORE_BATCH)
        for lo in range(0, len(due_x), step):
            x = np.stack(due_x[lo:lo + step])
            meta = due_meta[lo:lo + step]
            t0 = time.perf_counter()
            batch = self.model.score_many(x)
            self.metrics.latency.observe(time.perf_counter() - t0)
            self.metrics.batch_size.observe(len(x))
            slots = np.fromiter((m[0] for m in meta), dtype=np.int64, count=len(meta))
            scores = self.post.update_many(slots, batch.scores, batch.aux)
            over = scores > self.threshold
            for i, (slot, ts, seq) in enumerate(meta):
                s = float(scores[i])
                o = bool(over[i])
                out.append(ScoredWindow(slot, self._stream_names[slot], ts, seq, s, o))
                tr = self.tracker.update(slot, o, s, ts, seq)
                if tr is not None:
                    self._emit(self._alert(tr, batch.feature_error[i]))
        self.summary.windows += len(due_x)
        self.metrics.windows.inc(len(due_x))
        return out

    # -- events --------------------------------------------------------------------

    def _alert(self, tr: Transition, feature_error: np.ndarray | None = None, reason: str | None = None
               ) -> dict[str, Any]:
        return events.episode_event(tr, agent=self.options.agent_id, stream=self._stream_names[tr.slot],
                                    threshold=self.threshold, model=self.model, now=time.time(),
                                    features=self.features, feature_error=feature_error,
                                    top=self.options.top_features, reason=reason)

    def _drift_event(self, ev: Any) -> dict[str, Any]:
        if ev.features:
            self.metrics.drift.inc()
        return events.drift_event(ev, agent=self.options.agent_id, stream=self._stream_names[ev.slot],
                                  model=self.model, now=time.time())

    def _emit(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "?")
        self.summary.events[kind] = self.summary.events.get(kind, 0) + 1
        if kind in ("start", "end"):
            self.metrics.alerts.labels(kind).inc()
        for sink in self.sinks:
            try:
                sink.send(event)
            except Exception:  # one broken sink must not silence the others
                log.exception("sink %s failed to take an event", type(sink).__name__)
        for obs in self.observers:
            obs.on_event(event)

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

    def request_stop(self) -> None:
        """Stop reading; what is already queued is still processed (safe from a signal handler)."""
        self._stop.set()

    def run(self, duration: float | None = None, max_messages: int | None = None) -> RunSummary:
        """Run until every source has ended, ``duration`` passed, or :meth:`request_stop`.

        However it ends (also by an exception), sources are stopped, open
        episodes get their ``end`` and the sinks are closed (flushed).
        """
        t0 = time.monotonic()
        try:
            self._loop(t0, duration, max_messages)
        finally:
            for src in self.sources:
                src.stop()
            for src in self.sources:
                src.join(timeout=2.0)
            try:
                self.close_episodes("agent stopped")
                self._emit_posted()
            finally:
                self.close()
            self.summary.streams = len(self._stream_names)
            self.summary.seconds = time.monotonic() - t0
        return self.summary

    def _loop(self, t0: float, duration: float | None, max_messages: int | None) -> None:
        for src in self.sources:
            src.start(self.queue)
        ended = 0
        stopping = False
        q = self.queue
        limit = self.options.max_batch
        while True:
            self.heartbeat = time.monotonic()
            if not stopping and (self._stop.is_set()
                                 or (duration is not None and time.monotonic() - t0 >= duration)
                                 or (max_messages is not None and self.summary.messages >= max_messages)):
                stopping = True
                for src in self.sources:
                    src.stop()
            try:
                first = q.get(timeout=0.1)
            except queue.Empty:
                if stopping and ended >= len(self.sources):
                    break
                if self._pending is not None:
                    self._apply_pending_model()
                if self._posted:
                    self._emit_posted()
                continue
            items = [first]
            try:
                while len(items) < limit:
                    items.append(q.get_nowait())
            except queue.Empty:
                pass
            ended += sum(1 for it in items if it.kind == Kind.END)
            self.process(items)
            if ended >= len(self.sources) and q.empty():
                if not stopping:
                    stopping = True
                if all(not (s._thread and s._thread.is_alive()) for s in self.sources):
                    break

    def close_episodes(self, reason: str) -> None:
        """Send an ``end`` for every open episode, so no consumer waits forever for one."""
        now = time.time()
        for slot in self.tracker.open_slots():
            tr = self.tracker.close(slot, now, self._seq[slot])
            if tr:
                self._emit(self._alert(tr, reason=reason))

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

