"""``stdout``: one JSON line per event on standard output (logs go to stderr).

The process's standard output is written by a thread of its own, through a
bounded queue. Why: a reader that stops reading (a pipe to a consumer that
hangs, a terminal on hold) blocked the write once the pipe's 64 KiB were
full, and with it the agent's loop: every stream stopped being scored and
every other sink (the MQTT spool too) stopped getting events. Now the loop
never waits for this sink: at most ``MAX_WAITING`` events wait for the
reader, and past that an event is dropped. A reader that is gone (EPIPE)
drops them too; before, each event logged an error with a traceback. Both
are counted in ``edgewatch_sink_dropped_total{sink="stdout"}``, logged at
most once a minute, and ``/readyz`` says ``sink_unwritable`` until a write
succeeds again. At the stop, the queue is written for up to ``CLOSE_WAIT``
seconds; what is left is counted as dropped and logged. The MQTT, webhook
and Alertmanager sinks are where alerts wait on disk; this is a view.

A stream given by embedding code (``StdoutSink(io.StringIO())``), or a
standard output without a file descriptor (click's test runner), is written
in the caller's thread as before: memory does not hang.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from typing import IO, Any

from edgewatch.agent.sinks.base import SinkContext, SinkSpec
from edgewatch.agent.sinks.registry import no_options, register
from edgewatch.wire.json import dumps

log = logging.getLogger(__name__)

MAX_WAITING = 10_000  # events (~0.5 KiB each: ~5 MiB) waiting for a slow reader
CLOSE_WAIT = 5.0  # seconds the stop gives a slow reader, as it gives the spool
LOG_INTERVAL = 60.0


class StdoutSink:
    """One JSON line per event on standard output; see the module docstring for a reader that hangs or goes."""

    def __init__(self, stream: IO[str] | None = None, metrics: Any = None, max_waiting: int = MAX_WAITING,
                 fd: int | None = None) -> None:
        """``stream``: written in the caller's thread; else ``fd`` (default: the process's standard output) by
        the sink's thread."""
        self.metrics = metrics
        self.written = 0
        self.dropped = 0  # events this run that the reader did not take
        self.write_error: str | None = None  # why the last write failed; None once one succeeds
        self._logged: float | None = None
        self._lock = threading.Lock()  # the counts: the loop drops on a full queue, the writer on an error
        self._writing = False  # the writer holds an event it has not written yet
        self._abandoned = False  # the stop gave up on the writer: what it holds was counted as dropped
        self.stream = stream
        self.fd = fd
        if stream is None and fd is None:
            try:
                self.fd = sys.stdout.fileno()
                sys.stdout.flush()  # anything printed before goes first; this sink bypasses the text buffer
            except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError too
                self.stream = sys.stdout
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_waiting)
        self._writer: threading.Thread | None = None
        if self.fd is not None:
            self._writer = threading.Thread(target=self._write_lines, name="stdout-sink", daemon=True)
            self._writer.start()

    def send(self, event: dict[str, Any]) -> None:
        line = dumps(event) + "\n"
        if self.stream is not None:
            try:
                self.stream.write(line)
                self.stream.flush()
            except OSError as exc:
                self._refused(exc.strerror or str(exc))
            else:
                self._took()
            return
        try:
            self._queue.put_nowait(line.encode())
        except queue.Full:
            self._refused(f"its reader took nothing while {self._queue.maxsize} events waited")

    def _write_lines(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            self._writing = True
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]  # type: ignore[arg-type]
            except OSError as exc:  # EPIPE: the reader is gone (Python ignores SIGPIPE)
                if self._abandoned:  # the stop counted it already
                    return
                self._refused(exc.strerror or str(exc))
            else:
                if self._abandoned:
                    return
                self._took()
            self._writing = False

    def _took(self) -> None:
        with self._lock:
            self.written += 1
            if self.write_error is None:
                return
            self.write_error = None
        log.warning("stdout takes events again (%d could not be written)", self.dropped)

    def _refused(self, why: str, n: int = 1) -> None:
        with self._lock:
            self.dropped += n
            self.write_error = why
        if self.metrics is not None:
            self.metrics.sink_dropped.labels("stdout").inc(n)
        now = time.monotonic()
        if self._logged is None or now - self._logged >= LOG_INTERVAL:
            self._logged = now
            log.error("event(s) not written to stdout: %s (%d dropped so far; logged at most once a minute)",
                      why, self.dropped)

    def not_ready_reason(self) -> str | None:
        """``sink_unwritable`` while standard output takes no events, else None (``/readyz``)."""
        return "sink_unwritable" if self.write_error is not None else None

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            deadline = time.monotonic() + CLOSE_WAIT
            try:
                self._queue.put(None, timeout=CLOSE_WAIT)
            except queue.Full:
                pass
            writer.join(max(0.0, deadline - time.monotonic()))
            if writer.is_alive():  # the reader took nothing for CLOSE_WAIT s: what waits is not written
                self._abandoned = True
                left = self._drain() + self._writing
                if left:
                    self._logged = None  # said now, whatever was said within the minute
                    self._refused(f"its reader took nothing for {CLOSE_WAIT:g} s at the stop", left)
        elif self.stream is not None:
            try:
                self.stream.flush()
            except OSError:
                pass
        if self.dropped:
            log.warning("%d event(s) could not be written to stdout this run", self.dropped)

    def _drain(self) -> int:
        n = 0
        while True:
            try:
                data = self._queue.get_nowait()
            except queue.Empty:
                return n
            n += data is not None


@register("stdout", form="stdout")
def _build(spec: SinkSpec, context: SinkContext) -> StdoutSink:
    no_options(spec)
    return StdoutSink(metrics=context.metrics)
