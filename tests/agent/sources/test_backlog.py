"""A broker's backlog after the agent's connection was cut (agent/sources/rows.py, the staleness limit).

The agent's session is persistent and QoS 1: what the plant published while
the agent's link was down waits at the broker and arrives at the reconnect,
within milliseconds. Values without their own ``ts`` are timed by their
arrival, so the gaps inside that burst measure the delivery, not the
sensors; they must not make a slow sensor's held value look stale for the
rows after it. The link is cut by a real TCP relay between the agent and a
real mosquitto, so the broker sees the agent go and keeps its session.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import make_source
from tests.agent.sources.test_mqtt import Publisher, running_with
from tests.conftest import restart_safe_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FEATURES = ["pressure", "flow", "temperature"]
TEMPERATURE_EVERY = 3  # ticks: a slow sensor beside two fast ones, held in the rows between its readings


class Relay:
    """A TCP relay on 127.0.0.1 that can cut every connection through it and refuse new ones until resumed."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = restart_safe_port()  # below the ephemeral range: no client socket takes it
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.resume()

    def resume(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                down, _ = server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: close alone would not
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def _tick(pub: Publisher, i: int) -> None:
    """One tick of the plant (no ``ts``: timed by arrival)."""
    names = (["temperature"] if i % TEMPERATURE_EVERY == 0 else []) + ["pressure", "flow"]
    for name in names:
        pub.send(f"plant/pump-1/{name}", b"0.5")



def _mark(pub: Publisher, agent: Agent, name: str, timeout: float = 30.0) -> bool:
    """Wait until the agent has read everything published before: one publisher's messages come in order."""
    for feature in FEATURES:
        pub.send(f"plant/{name}/{feature}", b"0.5")
    return wait_until(lambda: name in agent.streams, timeout=timeout)


def test_a_backlog_after_a_cut_link_does_not_make_held_values_stale(tmp_path: Path, make_broker) -> None:
    broker = make_broker().start()
    relay = Relay(broker.port)
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3, features=FEATURES)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="backlog"))
    # the default form: no max_age, each feature held for three of its own intervals
    src = make_source(f"mqtt://127.0.0.1:{relay.port}/plant/{{stream}}/{{feature}}", FEATURES, agent_id="backlog")
    try:
        with running_with(agent, broker, src) as pub:
            for i in range(24):  # live: a tick every 0.1 s, temperature every 0.3 s
                _tick(pub, i)
                time.sleep(0.1)
            assert _mark(pub, agent, "mark-1")
            relay.cut()
            assert wait_until(lambda: not src.connection.connected)
            for i in range(24, 24 + 90):  # 9 s of the plant, kept by the broker for the agent's session
                _tick(pub, i)
            relay.resume()
            assert _mark(pub, agent, "mark-2", timeout=60) and src.connects == 2
            for i in range(24 + 90, 24 + 90 + 24):  # live again
                _tick(pub, i)
                time.sleep(0.1)
            assert _mark(pub, agent, "mark-3")
    finally:
        relay.cut()
    # temperature is held in two rows of three; none of them is judged stale because the backlog came fast
    assert agent.summary.bad.get("stale_feature", 0) == 0, agent.summary.bad
    assert agent.summary.windows > 100
