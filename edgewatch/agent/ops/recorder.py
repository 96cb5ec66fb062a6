"""``--record-run``: the agent's run as JSON lines, for ``edgewatch plot`` and offline study.

One line per message and one per scored window, so a plot can show the
signals, the score bars and the alerts exactly as the agent saw them.
Short keys keep a 20 Hz day near 100 MB instead of several hundred:

    {"run": 1, "features": [...], "threshold": 0.01, "window": 20, "stride": 3, "ranges": [[lo, hi], ...], ...}
    {"m": "eq-0", "t": 1723.45, "q": 17, "v": [0.41, 0.52, 0.33, 0.4]}                 a message
    {"w": "eq-0", "t": 1723.45, "q": 17, "s": 0.0123, "a": 1.21, "o": 1}               a scored window
    {"th": 0.02}                                                                       the threshold changed
    {"e": {"event": "start", ...}}                                                     an event as sent to sinks

The header's ``ranges`` are each feature's training range from the card
(null where it has none; :mod:`edgewatch.agent.watch.feature_ranges`); a window's
``s`` is its score, ``a`` its anomaly_score (1 = the threshold), ``o`` 1
when it was over.

Writes are buffered and flushed at least every ``flush_seconds`` (and at
close), so an agent killed hard loses at most that much of the record and
a reader tailing the file sees it grow. The hot path formats strings only;
no JSON encoder runs per message.

A disk that refuses a write (full, an I/O error) never stops the agent: the
lines of that flush are dropped, counted (``dropped_lines``), a part
written is cut off so that the file stays whole lines, the failure is
logged at most once a minute, and the next flush is tried again. Before,
the write's ``OSError`` left the loop and ended the agent (exit 1), its
alerts with it. Only at the start is a record that cannot be written an
error (the agent does not start).

A restarted agent appends to the file: each run begins with its own header
line, so a service's restarts never erase what it recorded before (``edgewatch
plot`` reads a file of several runs, :func:`edgewatch.plot.run_file.read_run`).
A line cut short by a hard kill is ended before the next run's header.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgewatch.agent.watch.feature_ranges import feature_ranges
from edgewatch.errors import EdgewatchError

RUN_FORMAT = 1
FLUSH_BYTES = 1 << 16  # a flush once this much is pending, whatever the interval
LOG_INTERVAL = 60.0

log = logging.getLogger(__name__)


class RunRecorder:
    """Appends every message, scored window and event to a JSONL file (after what earlier runs wrote
    there); an agent subscriber."""

    def __init__(self, path: str | Path, features: list[str], threshold: float, *,
                 flush_seconds: float = 1.0, messages: bool = True, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.messages = messages
        self.threshold = float(threshold)
        self.lines = 0
        self.dropped_lines = 0  # lines the disk refused this run
        self.write_error: str | None = None  # why the last flush failed; None once one succeeds
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._pending_lines = 0
        self._logged: float | None = None
        header = {"run": RUN_FORMAT, "features": list(features), "threshold": self.threshold,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        header.update(meta or {})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cut = _ends_mid_line(self.path)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size  # the end of the last whole line
            _write_all(self._fd, (("\n" if cut else "") + json.dumps(header, separators=(",", ":")) + "\n").encode())
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            if getattr(self, "_fd", None) is not None:
                os.close(self._fd)  # type: ignore[arg-type]
            raise EdgewatchError(f"cannot write the run record {self.path} ({exc.strerror}); "
                                 "pick another --record-run file") from exc
        self._last_flush = time.monotonic()

    @classmethod
    def for_agent(cls, agent: Any, path: str | Path, **kwargs: Any) -> RunRecorder:
        """A recorder whose header names the agent's model, window and stride; feed it with
        ``agent.subscribe(rec.on_event, rec.on_batch)``."""
        meta = {"window": agent.window, "stride": agent.stride, "agent": agent.options.agent_id,
                "model": {"family": agent.card.family, "sha256": agent.model.sha256},
                "ranges": feature_ranges(agent.card)}
        return cls(path, agent.features, agent.threshold, meta=meta, **kwargs)

    def _write(self, text: str, lines: int) -> None:
        self._pending.append(text)
        self._pending_bytes += len(text)
        self._pending_lines += lines

    def on_batch(self, view: Any) -> None:
        """Format the batch's lines and write them to the buffer; flush when the interval is up."""
        if self._fd is None:
            return
        parts: list[str] = []
        if view.threshold != self.threshold:
            self.threshold = float(view.threshold)
            parts.append(f'{{"th":{_num(self.threshold)}}}\n')
        if self.messages and view.streams:
            names: dict[str, str] = {}
            for stream, ts, seq, row in zip(view.streams, view.ts, view.seq, view.values.tolist()):
                name = names.get(stream)
                if name is None:
                    name = names[stream] = json.dumps(stream)
                parts.append(f'{{"m":{name},"t":{ts:.6f},"q":{seq},"v":[{",".join(_num(x) for x in row)}]}}\n')
        for sw in view.scored:
            parts.append(f'{{"w":{json.dumps(sw.stream)},"t":{sw.ts:.6f},"q":{sw.seq},'
                         f'"s":{_num(sw.score)},"a":{_num(sw.anomaly)},"o":{1 if sw.over else 0}}}\n')
        self.lines += len(parts)
        self._write("".join(parts), len(parts))
        self._maybe_flush()

    def on_event(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            return
        self._write('{"e":' + json.dumps(event, separators=(",", ":"), default=str) + "}\n", 1)
        self.lines += 1
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds or self._pending_bytes >= FLUSH_BYTES:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        """Write what is pending; a refused write drops it, counted (the module docstring)."""
        if self._fd is None or not self._pending:
            return
        data = "".join(self._pending).encode()
        lines = self._pending_lines
        self._pending, self._pending_bytes, self._pending_lines = [], 0, 0
        try:
            self._size = os.fstat(self._fd).st_size  # the file's own end: it may have been emptied in place
            _write_all(self._fd, data)
        except OSError as exc:
            self._refused(exc, lines)
            return
        if self.write_error is not None:
            log.warning("run record %s takes writes again (%d line(s) could not be recorded)", self.path,
                        self.dropped_lines)
            self.write_error = None

    def _refused(self, exc: OSError, lines: int) -> None:
        self.dropped_lines += lines
        self.write_error = exc.strerror or str(exc)
        try:
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]  # whole lines only
        except OSError:
            pass
        now = time.monotonic()
        if self._logged is None or now - self._logged >= LOG_INTERVAL:
            self._logged = now
            log.error("run record %s: %s; the agent goes on, %d line(s) not recorded so far (logged at most once a "
                      "minute)", self.path, self.write_error, self.dropped_lines)

    def close(self) -> None:
        """Flush and close; later batches are ignored (the agent may still be draining)."""
        self.flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self.dropped_lines:
            log.warning("%d line(s) could not be written to the run record %s this run", self.dropped_lines,
                        self.path)

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` holds a last line without its newline (the previous run was killed mid-write)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return False
            fh.seek(-1, 2)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _num(x: float) -> str:
    """Six significant digits, and ``null`` for a non-finite value (JSON has no NaN)."""
    if not math.isfinite(x):
        return "null"
    return f"{x:.6g}"
