"""``ws://`` and ``wss://``: a websocket client that reconnects forever.

A frame is an array, ``{"values": [...]}``, or an object keyed by feature
name (rows assembled by :mod:`.rows`). ``max_age`` (``?max_age=10s``, taken
out of the URL before it is opened, or a TOML key) sets their staleness limit.
"""

from __future__ import annotations

import logging
import time

from edgewatch.agent.sources.parsing import BadReason
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edgewatch.agent.sources.base import (Backoff, Item, Kind, Source, SourceConfigError, SourceContext,
                                          SourceSpec, row_assembler)
from edgewatch.agent.sources.registry import register

log = logging.getLogger("edgewatch.agent.sources")

CONNECT_ERROR_LOG_INTERVAL = 60.0
# A message's bytes (its frames together) read before the parser judges it (too_large past the agent's 64 KiB).
# Past this the frame is not read at all: websocket-client reads a frame whole, whatever length its header
# says, so one peer's frame of 2 GiB was 2 GiB of the agent's memory (and a header claiming 1 TiB a read that
# never ended). The connection is dropped and made again, the message counted too_large.
MAX_FRAME_BYTES = 16 << 20


class FrameTooLarge(Exception):
    """A frame header says more bytes than :data:`MAX_FRAME_BYTES` (with the frames of its message before it)."""


class WebSocketSource(Source):
    """A websocket client that never gives up: reconnects with jittered backoff.

    On every reconnect the stream's window is reset (the agent gets a RESET
    item): rows before the gap are not the recent past of rows after it.
    Idle detection: after ``idle_timeout`` seconds without a frame the source
    pings; no pong within another ``idle_timeout`` means a dead (half-open)
    connection, which is dropped and re-opened. A peer that answers pings
    but sends no data is only logged as idle: a quiet sensor is not a fault
    of the connection. Frames up to ``max_frame_bytes`` (a message's
    fragments together) are read and then judged by the parser
    (``too_large``); a larger one is not read: ``too_large``, and the
    connection is made again. Binary frames are counted as ``binary``.
    """

    def __init__(self, url: str, idle_timeout: float = 10.0, backoff: Backoff | None = None,
                 max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        super().__init__()
        self.url = url
        self.max_frame_bytes = max_frame_bytes
        self.name = url
        self.idle_timeout = idle_timeout
        self.backoff = backoff or Backoff()
        self.connects = 0
        self.received = 0  # frames handed to the agent, all connections
        self.per_connection: list[int] = []  # frames per connection, in order
        self.dead_connections = 0  # dropped because a ping got no pong
        self.failed_connects = 0
        self._failure_logged: float | None = None  # when a failed connect was last logged (once a minute)
        self._ws = None

    def run(self) -> None:
        import websocket  # websocket-client

        while not self.stopping:
            try:
                ws = websocket.create_connection(self.url, timeout=self.idle_timeout,
                                                 skip_utf8_validation=True, enable_multithread=True)
            except Exception as exc:  # refused, DNS, handshake...
                delay = self.backoff.next_delay()
                self.failed_connects += 1
                now = time.monotonic()
                if self._failure_logged is None or now - self._failure_logged >= CONNECT_ERROR_LOG_INTERVAL:
                    self._failure_logged = now
                    log.warning("websocket %s: cannot connect: %s: %s (%d failed attempt(s); retrying with "
                                "backoff; logged at most once a minute)", self.url, type(exc).__name__, exc,
                                self.failed_connects)
                else:
                    log.debug("websocket %s: connect failed (%s); retry in %.2fs", self.url, exc, delay)
                self._stop.wait(delay)
                continue
            _bound_frames(ws, self.max_frame_bytes)
            self._ws = ws
            if self.connects:
                self._put(Item(Kind.RESET, self.name, None, time.time()))
            self.connects += 1
            self.per_connection.append(0)
            self.backoff.reset()
            self._failure_logged = None  # a later failure is news again
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
            except FrameTooLarge as exc:
                self.bad_reading(BadReason.TOO_LARGE, f"a message of {exc} bytes, over {self.max_frame_bytes}: not "
                                 "read; reconnecting")
                return
            except (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException) as exc:
                # a frame that breaks the protocol: counted, and the connection (out of step now) made again
                self.bad_reading(BadReason.BAD_REPLY, f"a frame that breaks the websocket protocol ({exc}); "
                                 "reconnecting")
                return
            except Exception as exc:  # closed, reset
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


def _bound_frames(ws, limit: int) -> None:  # noqa: ANN001
    """Make ``ws`` raise :class:`FrameTooLarge` at a header whose length, with its message's fragments before
    it, is over ``limit``, before the payload is read (websocket-client reads ``frame_buffer.recv_length``,
    then the whole payload)."""
    buf = ws.frame_buffer
    read_length = buf.recv_length
    held = [0]  # bytes of the message's data frames so far (control frames may come between its fragments)

    def recv_length() -> None:
        read_length()
        fin, opcode = buf.header[0], buf.header[4]
        if opcode >= 0x8:
            return
        held[0] += buf.length
        if held[0] > limit:
            size, held[0] = held[0], 0
            raise FrameTooLarge(size)
        if fin:
            held[0] = 0

    buf.recv_length = recv_length


@register("ws", "wss")
def build(spec: SourceSpec, ctx: SourceContext) -> WebSocketSource:
    """``ws://host:port/path`` or ``wss://...``; the URL (without a login) names the source and its stream."""
    url, parts = spec.url, urlsplit(spec.url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    max_age = next((v for k, v in query if k == "max_age"), None)
    if max_age is not None:  # ours, not the server's: taken out (any other query goes to the server as it is)
        url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "max_age"])))
    unknown = sorted(set(spec.options) - {"max_age"})
    if unknown:
        raise SourceConfigError(f"source {spec.name!r} takes no settings besides url and max_age (got {unknown})")
    source = WebSocketSource(url, idle_timeout=ctx.idle_timeout)
    source.rows = row_assembler(source.name, ctx.features, spec.options.get("max_age", max_age), ctx.states)
    return source
