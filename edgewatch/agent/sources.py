"""Where measurements come from: a websocket, a CSV replay, standard input.

Every source runs in its own thread and puts :class:`Item` tuples on one
bounded queue that the agent loop drains. A full queue blocks the source,
which is the back-pressure we want (a replay slows down, a websocket peer
sees TCP push back) instead of unbounded memory.
"""

from __future__ import annotations

import csv
import logging
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from edgewatch.agent.parsing import BadReason, Measurement, iso_to_epoch
from edgewatch.errors import BadInput, EdgewatchError

log = logging.getLogger(__name__)


class Kind:
    RAW = 0  # payload: str | bytes, to be parsed
    MEASUREMENT = 1  # payload: Measurement, already parsed (replay)
    RESET = 2  # payload: None; the source reconnected, its streams' windows are stale
    END = 3  # payload: None; the source is finished for good
    BAD = 4  # payload: BadReason; refused before parsing (a binary websocket frame)


class Item(NamedTuple):
    kind: int
    source: str
    payload: object
    received: float


class Source:
    """Base: a named producer thread; ``stop()`` must make ``run`` return soon."""

    name: str = "source"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue: queue.Queue[Item] | None = None

    def start(self, q: queue.Queue[Item]) -> None:
        self.queue = q
        self._thread = threading.Thread(target=self._main, name=f"source:{self.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
        except Exception:  # a source bug must not take the agent down silently
            log.exception("source %s failed", self.name)
        finally:
            self._put(Item(Kind.END, self.name, None, time.time()), force=True)

    def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _put(self, item: Item, force: bool = False) -> bool:
        """Put with back-pressure, giving up only when asked to stop."""
        assert self.queue is not None
        while True:
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self._stop.is_set() and not force:
                    return False


@dataclass
class Backoff:
    """Jittered exponential backoff: base·2^attempt, capped, times a random factor in [0.5, 1.5)."""

    base: float = 0.1
    cap: float = 10.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return delay * (0.5 + self.rng.random())

    def reset(self) -> None:
        self.attempt = 0


class WebSocketSource(Source):
    """A websocket client that never gives up: reconnects with jittered backoff.

    On every reconnect the stream's window is reset (the agent gets a RESET
    item): rows before the gap are not the recent past of rows after it.
    Idle detection: after ``idle_timeout`` seconds without a frame the source
    pings; no pong within another ``idle_timeout`` means a dead (half-open)
    connection, which is dropped and re-opened. A peer that answers pings
    but sends no data is only logged as idle: a quiet sensor is not a fault
    of the connection. Frames of any size are read and then judged by the
    parser (``too_large``); binary frames are counted as ``binary``.
    """

    def __init__(self, url: str, idle_timeout: float = 10.0, backoff: Backoff | None = None) -> None:
        super().__init__()
        self.url = url
        self.name = url
        self.idle_timeout = idle_timeout
        self.backoff = backoff or Backoff()
        self.connects = 0
        self.received = 0  # frames handed to the agent, all connections
        self.per_connection: list[int] = []  # frames per connection, in order
        self.dead_connections = 0  # dropped because a ping got no pong
        self._ws = None

    def run(self) -> None:
        import websocket  # websocket-client

        while not self.stopping:
            try:
                ws = websocket.create_connection(self.url, timeout=self.idle_timeout,
                                                 skip_utf8_validation=True, enable_multithread=True)
            except Exception as exc:  # refused, DNS, handshake...
                delay = self.backoff.next_delay()
                log.info("websocket %s: connect failed (%s); retry in %.2fs", self.url, exc, delay)
                self._stop.wait(delay)
                continue
            self._ws = ws
            if self.connects:
                self._put(Item(Kind.RESET, self.name, None, time.time()))
            self.connects += 1
            self.per_connection.append(0)
            self.backoff.reset()
            log.info("websocket %s: connected (connection %d)", self.url, self.connects)
            self._read(ws)
            try:
                ws.shutdown()  # the close handshake, if any, happened in _read; just drop the socket
            except Exception:
                pass
            self._ws = None
            if not self.stopping:
                # even a connection that just dropped waits a little: a server that accepts and
                # closes at once must not be hammered
                self._stop.wait(self.backoff.next_delay())

    def _read(self, ws) -> None:  # noqa: ANN001
        import websocket

        ABNF = websocket.ABNF
        awaiting_pong = False
        idle_logged = False
        while not self.stopping:
            try:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                if awaiting_pong:
                    self.dead_connections += 1
                    log.warning("websocket %s: no data and no pong for %.1fs; connection is dead, reconnecting",
                                self.url, 2 * self.idle_timeout)
                    return
                awaiting_pong = True
                try:
                    ws.ping()
                except Exception:
                    return
                continue
            except Exception as exc:  # closed, reset, protocol error
                if not self.stopping:
                    log.info("websocket %s: connection lost (%s)", self.url, exc or type(exc).__name__)
                return
            if opcode == ABNF.OPCODE_PONG:
                awaiting_pong = False
                if not idle_logged:
                    idle_logged = True
                    log.info("websocket %s: connection alive but idle (no data for %.1fs)", self.url,
                             self.idle_timeout)
                continue
            if opcode == ABNF.OPCODE_PING:
                continue
            if opcode == ABNF.OPCODE_CLOSE:
                return
            awaiting_pong = idle_logged = False
            if opcode == ABNF.OPCODE_TEXT:
                item = Item(Kind.RAW, self.name, frame.data, time.time())  # bytes; the parser decodes
            else:
                item = Item(Kind.BAD, self.name, BadReason.BINARY, time.time())
            if not self._put(item):
                return
            self.received += 1
            self.per_connection[-1] += 1

    def stop(self) -> None:
        super().stop()
        ws = self._ws
        if ws is not None:
            try:
                ws.abort()
            except Exception:
                pass


class ReplaySource(Source):
    """Replays a CSV file: header row, numeric feature columns, an optional time column.

    ``rate`` None replays as fast as the agent takes it; otherwise rows are
    paced at ``rate`` per second. Column names must match the model's
    features when a header names them all; extra columns are ignored.
    """

    TIME_COLUMNS = ("timestamp", "time", "ts", "t")

    def __init__(self, path: str | Path, features: list[str], rate: float | None = None,
                 stream: str | None = None, loop: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInput(f"replay file {self.path} does not exist")
        self.features = features
        self.rate = rate
        self.loop = loop
        self.name = stream or f"replay:{self.path.name}"
        self.rows_sent = 0
        with self.path.open(newline="") as fh:
            header = next(csv.reader(fh), None)
        if not header:
            raise BadInput(f"replay file {self.path} is empty")
        self.columns = self._pick_columns([h.strip() for h in header])

    def _pick_columns(self, header: list[str]) -> tuple[int | None, list[int]]:
        time_col = next((i for i, h in enumerate(header) if h.lower() in self.TIME_COLUMNS), None)
        if all(f in header for f in self.features):
            return time_col, [header.index(f) for f in self.features]
        rest = [i for i in range(len(header)) if i != time_col]
        if len(rest) != len(self.features):
            raise BadInput(f"replay file {self.path} has columns {header}; the model needs "
                           f"{len(self.features)} features {self.features}")
        return time_col, rest

    def run(self) -> None:
        time_col, cols = self.columns
        period = 1.0 / self.rate if self.rate else 0.0
        next_t = time.monotonic()
        while True:
            with self.path.open(newline="") as fh:
                reader = csv.reader(fh)
                next(reader, None)
                for row in reader:
                    if self.stopping:
                        return
                    if not row:
                        continue
                    try:
                        values = [float(row[i]) for i in cols]
                        ts = _csv_time(row[time_col]) if time_col is not None else None
                    except (ValueError, IndexError):
                        # hand the raw text to the parser so it is counted like any bad message
                        self._put(Item(Kind.RAW, self.name, ",".join(row), time.time()))
                        continue
                    if period:
                        next_t += period
                        delay = next_t - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                    if not self._put(Item(Kind.MEASUREMENT, self.name, Measurement(values, ts),
                                          time.time())):
                        return
                    self.rows_sent += 1
            if not self.loop:
                return


def _csv_time(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return iso_to_epoch(text)


class StdinSource(Source):
    """One message per line on standard input (JSON array or object)."""

    name = "stdin"

    def __init__(self, stream=None) -> None:  # noqa: ANN001
        super().__init__()
        self.stream = stream or sys.stdin

    def run(self) -> None:
        for line in self.stream:
            if self.stopping:
                return
            line = line.strip()
            if line:
                self._put(Item(Kind.RAW, self.name, line, time.time()))


def make_source(spec: str, features: list[str], idle_timeout: float = 10.0) -> Source:
    """Build a source from its command-line form.

    ``ws://host:port/path`` (or ``wss://``), ``replay:FILE.csv`` with optional
    ``?rate=HZ`` and ``&loop=1``, or ``stdin`` / ``-``.
    """
    if spec.startswith(("ws://", "wss://")):
        return WebSocketSource(spec, idle_timeout=idle_timeout)
    if spec in ("stdin", "-"):
        return StdinSource()
    if spec.startswith("replay:"):
        path, _, query = spec[len("replay:"):].partition("?")
        opts = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        rate = float(opts["rate"]) if "rate" in opts else None
        return ReplaySource(path, features, rate=rate, loop=opts.get("loop") in ("1", "true"))
    raise EdgewatchError(f"unknown source {spec!r}: use ws://host:port/path, replay:FILE.csv[?rate=HZ], or stdin")
