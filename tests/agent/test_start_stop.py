"""A stop that comes while the agent is still starting (``docker stop`` or ``systemctl stop`` right after a start).

The signal handlers used to be installed after the agent was built: a
SIGTERM during the build killed the process with nothing closed (exit -15)
and a SIGINT ended it as a click abort (exit 1). Both now stop it as any
stop does: exit 0, what was opened closed, the spool kept. Real processes,
real sockets on 127.0.0.1: an "MQTT broker" that accepts and never answers
CONNACK, and a webhook token file that is a pipe nobody writes (the build
reads it, as a token on a hung network mount would be read), which holds the
build where the test can signal it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.agent.sinks.spool import Spool
from edgewatch.mqtt.connection import _safe
from tests.conftest import free_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until


class SilentBroker:
    """Accepts TCP connections on 127.0.0.1 and never answers (no CONNACK, no close)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.close()


def _agent(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=60)  # a hang check
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the agent did not stop: {err}")
    return err


def test_default_form_stops_cleanly_while_its_mqtt_source_waits_for_connack(tmp_path: Path,
                                                                             silent: SilentBroker) -> None:
    """The documented form, no optional flags: the stop comes while the source's broker has not answered."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    proc = _agent(["--model", str(model), "--source", f"mqtt://127.0.0.1:{silent.port}/plant/%23"])
    try:
        assert wait_until(lambda: silent.accepted, 60), "the source never connected"
        proc.send_signal(signal.SIGTERM)
        err = _finish(proc)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_the_agent_is_built_exits_0_and_keeps_the_spool(tmp_path: Path, silent: SilentBroker,
                                                                     signum: int) -> None:
    """The build is held reading the webhook's token file (a pipe); the MQTT sink before it has opened its
    spool, which holds 3 alerts of an earlier run. The stop must close that sink and keep the 3 alerts."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    spool_root = tmp_path / "spool"
    mqtt_spool = spool_root / _safe(f"127.0.0.1_{silent.port}_plant")
    earlier = Spool(mqtt_spool)
    for i in range(3):
        earlier.append(f'{{"id": "earlier-{i}", "event": "start"}}'.encode())
    earlier.close()
    token = tmp_path / "token"
    os.mkfifo(token)
    hook = f"http://127.0.0.1:{free_port()}/hook?token_file={token}"
    proc = _agent(["--model", str(model), "--source", f"mqtt://127.0.0.1:{silent.port}/plant/%23",
                   "--sink", f"mqtt://127.0.0.1:{silent.port}/plant", "--sink", hook,
                   "--spool-dir", str(spool_root)])
    writer = None
    try:
        def reader_waits() -> bool:  # the agent has the pipe open for reading: it is in the build, in read()
            nonlocal writer
            try:
                writer = os.open(token, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody reads it yet
                return proc.poll() is not None
            return True

        assert wait_until(reader_waits, 60) and proc.poll() is None, "the agent never read its token file"
        proc.send_signal(signum)
        err = _finish(proc)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        assert "while starting: stopped before reading anything" in err
        kept = Spool(mqtt_spool)
        assert [p for _, p in kept.pending()] == [f'{{"id": "earlier-{i}", "event": "start"}}'.encode()
                                                  for i in range(3)]
        kept.close()
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
