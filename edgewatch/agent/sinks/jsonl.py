"""``jsonl:FILE``: events appended to a file, one JSON line each.

Each line is written, and fsynced, before ``send`` returns, so a crash
loses none. A disk that refuses a write (full, read-only, an I/O error)
does not stop the agent and does not silence the other sinks: the event is
counted as dropped (``edgewatch_sink_dropped_total{sink="jsonl"}``), a
partly written line is cut off so that the file stays one JSON object per
line, the failure is logged at most once a minute (with the count, without
a traceback), and ``/readyz`` says ``sink_unwritable`` until a write
succeeds again. There is no queue: the MQTT sink's spool is where alerts
wait for a disk; this file is a local record.

A file moved or removed under the agent (logrotate without
``copytruncate``, an operator's ``rm``) is made again at its path before
the next event: each event compares the path's inode with the open file's
(one ``stat``; events are rare). Before, the agent went on appending to the
moved file, or to a removed one nobody could read, with nothing counted. A
path that cannot be made again (its folder removed) refuses the event as a
full disk does.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from edgewatch.agent.sinks.base import SinkContext, SinkSpec
from edgewatch.agent.sinks.registry import no_options, register
from edgewatch.wire.json import dumps

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0


class JsonlSink:
    """Appends events to a file; see the module docstring for what a refused write does."""

    def __init__(self, path: str | Path, fsync: bool = True, metrics: Any = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._size = 0  # the end of the last whole line
        self._inode: tuple[int, int] | None = None  # (device, inode) of the open file
        self._open()
        self.fsync = fsync
        self.metrics = metrics
        self.written = 0
        self.dropped = 0  # events this run that could not be written
        self.write_error: str | None = None  # why the last write failed; None once one succeeds
        self._logged: float | None = None

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        old, self._fd = self._fd, fd
        self._size, self._inode = st.st_size, (st.st_dev, st.st_ino)
        if old is not None:
            os.close(old)

    def _moved(self) -> bool:
        """Whether the path no longer names the open file (moved, removed, replaced)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def send(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            return
        data = (dumps(event) + "\n").encode()
        try:
            if self._moved():
                self._open()
                log.warning("%s was moved or removed: writing a new file there", self.path)
            # the end of the last whole line, from the file: copytruncate empties it in place, and a refused write
            # cut back to an end remembered from before grew the file by a run of NUL bytes
            self._size = os.fstat(self._fd).st_size
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._refused(exc)
            return
        self.written += 1
        if self.write_error is not None:
            log.warning("%s takes writes again (%d event(s) could not be written)", self.path, self.dropped)
            self.write_error = None

    def _refused(self, exc: OSError) -> None:
        self.dropped += 1
        self.write_error = exc.strerror or str(exc)
        if self.metrics is not None:
            self.metrics.sink_dropped.labels("jsonl").inc()
        try:
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]  # no half line before the next one
        except OSError:
            pass
        now = time.monotonic()
        if self._logged is None or now - self._logged >= LOG_INTERVAL:
            self._logged = now
            log.error("event not written to %s: %s (%d dropped so far; the next events are tried again; logged "
                      "at most once a minute)", self.path, self.write_error, self.dropped)

    def not_ready_reason(self) -> str | None:
        """``sink_unwritable`` while the file's disk refuses writes, else None (``/readyz``)."""
        return "sink_unwritable" if self.write_error is not None else None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self.dropped:
            log.warning("%d event(s) could not be written to %s this run", self.dropped, self.path)


@register("jsonl", form="jsonl:FILE")
def _build(spec: SinkSpec, context: SinkContext) -> JsonlSink:
    no_options(spec)
    return JsonlSink(spec.url[len("jsonl:"):], metrics=context.metrics)
