"""The websocket source against the real simulator: 20 server restarts, backoff, idle detection."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import BadReason
from edgewatch.agent.sources import Backoff, Item, Kind, WebSocketSource
from edgewatch.data.simulator_server import ServerConfig, SimulatorServer
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

WINDOW = 5


@pytest.fixture
def model(tmp_path: Path) -> ScoringModel:
    return ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=WINDOW, threshold=10.0)))


class TapSource(WebSocketSource):
    """The real source, plus a record of the simulator's sequence number of every frame it hands on."""

    def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*a, **kw)
        self.seqs: list[list[int]] = []

    def _put(self, item: Item, force: bool = False) -> bool:
        if item.kind == Kind.RAW:
            while len(self.seqs) < self.connects:
                self.seqs.append([])
            self.seqs[self.connects - 1].append(json.loads(item.payload)["seq"])
        return super()._put(item, force)


def test_twenty_server_restarts_lose_nothing_and_reset_windows(model: ScoringModel) -> None:
    server = SimulatorServer(ServerConfig(rate=1000, with_time=True, seed=3)).start()
    src = TapSource(server.url, idle_timeout=2.0, backoff=Backoff(base=0.02, cap=0.3, rng=random.Random(1)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0))
    agent.add_source(src)
    runner = threading.Thread(target=agent.run)
    runner.start()
    last_sent: list[int] = []
    try:
        for i in range(20):
            assert wait_until(lambda: src.connects == i + 1 and src.per_connection[-1] >= 10), f"no resume {i}"
            server.stop()
            last_sent.append(server.sequence - 1)
            server.start()
        assert wait_until(lambda: src.connects == 21 and src.per_connection[-1] >= 10)
    finally:
        agent.request_stop()
        runner.join(20)
        server.stop()
    assert not runner.is_alive()
    assert src.connects == 21 and len(src.per_connection) == 21
    # every connection got a gap-free run of the stream, up to the last message sent before the kill
    for k, seqs in enumerate(src.seqs):
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"gap in connection {k}"
        if k < 20:
            assert seqs[-1] == last_sent[k], f"connection {k} missed messages sent before the server stopped"
            assert src.seqs[k + 1][0] > seqs[-1]
    # the counters add up: server-side frames == source frames == agent messages
    assert [len(s) for s in src.seqs] == src.per_connection
    assert agent.summary.messages == src.received == sum(src.per_connection)
    assert agent.summary.bad == {}
    # each reconnect reset the window: a connection of m messages gives m - WINDOW + 1 windows
    assert agent.summary.windows == sum(max(0, m - WINDOW + 1) for m in src.per_connection)
    assert agent.metrics.reconnects.labels(server.url)._value.get() == 20


def test_backoff_is_exponential_jittered_and_capped() -> None:
    b = Backoff(base=0.1, cap=2.0, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(12)]
    for i, d in enumerate(delays):
        nominal = min(2.0, 0.1 * 2**i)
        assert 0.5 * nominal <= d < 1.5 * nominal
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter: capped delays still differ
    b.reset()
    assert b.next_delay() < 0.15


class SilentServer:
    """Accepts the websocket handshake, then sends ``send`` (nothing by default) and never anything more nor
    answers pings (a half-open peer)."""

    def __init__(self, send: bytes = b"") -> None:
        self.send = send
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.send)
            self.conns.append(conn)
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_dead_connection_is_detected_and_reopened() -> None:
    silent = SilentServer()
    src = WebSocketSource(f"ws://127.0.0.1:{silent.port}/", idle_timeout=0.3, backoff=Backoff(base=0.02, cap=0.1))
    src.start(__import__("queue").Queue())
    try:
        assert wait_until(lambda: src.connects >= 2, 10), "a silent peer that ignores pings was never dropped"
        assert src.dead_connections >= 1 and silent.accepted >= 2
    finally:
        src.stop()
        src.join(5)
        silent.close()


def test_a_frame_that_breaks_the_protocol_is_counted_and_the_connection_made_again() -> None:
    row = b"[0.5, 0.5, 0.5, 0.5]"
    broken = SilentServer(send=bytes([0x81, len(row)]) + row + b"\x83\x00")  # a text frame, then opcode 3
    q: __import__("queue").Queue = __import__("queue").Queue()
    src = WebSocketSource(f"ws://127.0.0.1:{broken.port}/", idle_timeout=5.0, backoff=Backoff(base=0.02, cap=0.1))
    src.start(q)
    try:
        assert wait_until(lambda: src.connects >= 3, 10)
    finally:
        src.stop()
        src.join(5)
        broken.close()
    items = list(q.queue)
    raw = [it for it in items if it.kind == Kind.RAW]
    bad = [it.payload for it in items if it.kind == Kind.BAD]
    assert len(raw) >= 3 and all(it.payload == row for it in raw)
    assert len(bad) >= 2 and set(bad) == {BadReason.BAD_REPLY}
    assert not any(it.kind == Kind.FAILED for it in items)


def test_idle_but_alive_connection_is_kept() -> None:
    with SimulatorServer(ServerConfig(rate=0.05)) as server:  # answers pings, sends (almost) nothing
        src = WebSocketSource(server.url, idle_timeout=0.3)
        src.start(__import__("queue").Queue())
        try:
            time.sleep(2.0)
            assert src.connects == 1 and src.dead_connections == 0
        finally:
            src.stop()
            src.join(5)


def _frame(payload: bytes, fin: bool = True, opcode: int = 1, claimed: int | None = None) -> bytes:
    """A server's (unmasked) frame; ``claimed``: the length its header says, whatever follows."""
    n = len(payload) if claimed is None else claimed
    head = bytes([(0x80 if fin else 0) | opcode])
    head += bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big") if n < 65536 else \
        bytes([127]) + n.to_bytes(8, "big")
    return head + payload


@pytest.mark.parametrize("form", ["one frame of 1 TiB", "fragments past the limit"])
def test_a_message_too_large_to_read_is_not_read_counted_and_the_connection_made_again(form: str) -> None:
    """Before, websocket-client read a frame whole whatever its header said: a peer's 2 GiB frame was 2 GiB of
    the agent's memory, and a header claiming 1 TiB a read that never ended (the rows after it never came).
    Now the header is enough: too_large, the connection made again, the next rows read."""
    row = b"[0.5, 0.5, 0.5, 0.5]"
    if form == "one frame of 1 TiB":
        huge = _frame(b"x" * 100, claimed=1 << 40)
    else:  # 3 fragments of 600 bytes, a limit of 1,000: the second is refused
        huge = _frame(b"[" + b" " * 599, fin=False) + _frame(b" " * 600, fin=False, opcode=0) + _frame(b"]", opcode=0)
    server = SilentServer(send=_frame(row) + huge)
    q: __import__("queue").Queue = __import__("queue").Queue()
    src = WebSocketSource(f"ws://127.0.0.1:{server.port}/", idle_timeout=5.0, backoff=Backoff(base=0.02, cap=0.1),
                          max_frame_bytes=1000)
    src.start(q)
    try:
        assert wait_until(lambda: src.connects >= 3, 10), "the connection was not made again"
    finally:
        src.stop()
        src.join(5)
        server.close()
    items = list(q.queue)
    assert all(it.payload == row for it in items if it.kind == Kind.RAW) and sum(it.kind == Kind.RAW
                                                                                 for it in items) >= 3
    assert {it.payload for it in items if it.kind == Kind.BAD} == {BadReason.TOO_LARGE}


def test_a_fragmented_message_within_the_limit_is_read_whole() -> None:
    row = b"[0.5, 0.5, 0.5, 0.5]"
    server = SilentServer(send=_frame(row[:5], fin=False) + _frame(b"", opcode=9) + _frame(row[5:], opcode=0))
    q: __import__("queue").Queue = __import__("queue").Queue()
    src = WebSocketSource(f"ws://127.0.0.1:{server.port}/", idle_timeout=5.0, max_frame_bytes=len(row))
    src.start(q)
    try:
        assert wait_until(lambda: any(it.kind == Kind.RAW for it in list(q.queue)), 10)
    finally:
        src.stop()
        src.join(5)
        server.close()
    assert [it.payload for it in list(q.queue) if it.kind in (Kind.RAW, Kind.BAD)] == [row]
