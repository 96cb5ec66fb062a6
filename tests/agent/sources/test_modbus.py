"""The Modbus TCP source against a real (minimal) Modbus server on loopback: types, word order, scale,
exception responses, a silent server, and reconnects after restarts."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pymodbus", reason="install edgewatch[modbus]")

from edgewatch.agent.engine import Agent, AgentOptions  # noqa: E402
from edgewatch.agent.model import ScoringModel  # noqa: E402
from edgewatch.agent.sources import SourceConfigError, make_source  # noqa: E402
from edgewatch.agent.sources.modbus import Register, parse_register, plan_reads  # noqa: E402
from edgewatch.data.modbus_server import ModbusServer, encode_value  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.modelkit import make_card, write_model  # noqa: E402
from tests.waiting import wait_until

FEATURES = ["cpu", "memory", "traffic", "fan"]
WINDOW = 3


def _agent(tmp_path: Path, spec) -> tuple[Agent, object, threading.Thread]:  # noqa: ANN001
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=WINDOW, features=FEATURES)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="mb"))
    src = make_source(spec, FEATURES)
    agent.add_source(src)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    return agent, src, runner


class Rows:
    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def on_batch(self, view) -> None:  # noqa: ANN001
        self.rows.extend(view.values.tolist())

    def on_event(self, event: dict) -> None:
        pass


def test_register_specs_and_decoding() -> None:
    assert parse_register("10:f32:0.5:-1") == Register(10, "f32", 0.5, -1.0)
    assert plan_reads([Register(0, "u16"), Register(1, "f32"), Register(200, "i16")]) == [(0, 3), (200, 1)]
    for kind, value, order in (("i16", -123, "big"), ("u32", 3_000_000_000, "little"), ("i32", -70000, "big"),
                               ("f32", 0.375, "little"), ("u16", 650.0, "big")):
        r = Register(4, kind, 0.5 if kind == "u16" else 1.0, 2.0 if kind == "u16" else 0.0)
        assert r.decode(encode_value(value, kind, r.scale, r.offset, order), order) == pytest.approx(value)
    for bad in ("x:u16", "0:u64", "0", "70000:u16", "0:f32:nan"):
        with pytest.raises(SourceConfigError):
            parse_register(bad)
    with pytest.raises(SourceConfigError, match="4 features"):
        make_source("modbus://127.0.0.1:5020/1?registers=0:u16,1:u16", FEATURES)


def test_polls_types_scale_and_bad_values(tmp_path: Path) -> None:
    with ModbusServer() as server:
        words = (encode_value(42.5, "u16", 0.1) + encode_value(-3.25, "f32", word_order="little")
                 + encode_value(-7, "i16") + encode_value(1234567, "u32", word_order="little"))
        server.set_registers(100, words, table="input")
        table = {"url": f"modbus://127.0.0.1:{server.port}/3", "table": "input", "word_order": "little",
                 "interval": 0.02, "timeout": 0.3,
                 "registers": {"fan": "104:u32", "cpu": "100:u16:0.1", "memory": "101:f32", "traffic": "103:i16"}}
        agent, src, runner = _agent(tmp_path, table)
        rows = Rows()
        agent.subscribe(rows.on_event, rows.on_batch)
        try:
            assert wait_until(lambda: src.measurements >= 3)
            server.exception_code = 2  # illegal data address
            assert wait_until(lambda: agent.summary.bad.get("exception_response", 0) >= 2)
            server.exception_code = None
            server.set_registers(101, encode_value(math.nan, "f32", word_order="little"), table="input")
            # a NaN register is a missing value: held for three polling intervals, then stale_feature
            assert wait_until(lambda: agent.summary.bad.get("stale_feature", 0) >= 2)
            server.set_registers(101, encode_value(math.inf, "f32", word_order="little"), table="input")
            assert wait_until(lambda: agent.summary.bad.get("non_finite", 0) >= 2)
            server.set_registers(101, encode_value(1.5, "f32", word_order="little"), table="input")
            seen = src.measurements
            assert wait_until(lambda: src.measurements > seen)
            server.silent = True  # a device that takes requests and never answers
            assert wait_until(lambda: src.timeouts >= 3 and src.connects >= 2)
            server.silent = False
            seen = src.measurements
            assert wait_until(lambda: src.measurements > seen + 2)
        finally:
            agent.request_stop()
            runner.join(10)
    assert rows.rows[0] == pytest.approx([42.5, -3.25, -7.0, 1234567.0])
    assert src.exceptions_by_code.get(2, 0) >= 2 and src.timeouts >= 3
    assert agent.summary.bad["timeout"] == src.timeouts
    assert agent.streams == [f"modbus://127.0.0.1:{server.port}/3"]
    assert agent.summary.messages == src.measurements + sum(agent.summary.bad.values())


def test_reconnects_with_backoff_after_restarts(tmp_path: Path) -> None:
    server = ModbusServer().start()
    port = server.port
    server.set_registers(0, [5, 6, 7, 8])
    agent, src, runner = _agent(tmp_path, f"modbus://127.0.0.1:{port}/1?registers=0:u16,1:u16,2:u16,3:u16"
                                          "&interval=0.02&timeout=0.3")
    try:
        for restart in range(3):
            assert wait_until(lambda: src.connects == restart + 1)
            seen = src.measurements
            assert wait_until(lambda: src.measurements >= seen + WINDOW + 1)
            server.stop()
            time.sleep(0.3)  # down for a while: refused connects, backoff
            server = ModbusServer(port=port)
            server.set_registers(0, [5, 6, 7, 8])
            server.start()
        assert wait_until(lambda: src.connects == 4)
    finally:
        agent.request_stop()
        runner.join(10)
        server.stop()
    assert agent.metrics.reconnects.labels(src.name)._value.get() == 3
    assert agent.summary.bad == {}


class FaultyServer(ModbusServer):
    """A Modbus TCP server that answers the requests listed in ``script`` wrongly, in order, then well.

    Kinds: ``fc4`` (the right registers under function code 4), ``short`` (6 of the 8 asked), ``fc2b`` (a
    well-formed function 0x2B reply), ``exception`` (0x83, illegal data address), ``exception_fc4`` (0x84
    to a function 3 request), ``byte_count`` (a byte count past the frame), ``garbage`` (bytes that are no
    Modbus TCP frame at all), ``good``.
    """

    def __init__(self, script: list[str]) -> None:
        super().__init__()
        self.script = list(script)
        self.sent: list[str] = []

    def _next(self) -> str:
        with self._lock:
            kind = self.script.pop(0) if self.script else "good"
        self.sent.append(kind)
        return kind

    def _serve(self, conn) -> None:  # noqa: ANN001
        try:
            while self._running.is_set():
                header = conn.recv(7)
                if len(header) < 7:
                    return
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = conn.recv(length - 1)
                kind = self._next()
                if kind == "garbage":
                    conn.sendall(b"\x12\x34 not modbus \xff\x00\x07\x01")
                    continue
                reply = self._answer(pdu)
                reply = {"fc4": lambda r: b"\x04" + r[1:],
                         "short": lambda r: b"\x03\x0c" + r[2:14],
                         "fc2b": lambda r: b"\x2b\x0e\x01\x01\x00\x00\x00",
                         "exception": lambda r: b"\x83\x02",
                         "exception_fc4": lambda r: b"\x84\x02",
                         "byte_count": lambda r: b"\x03\xc8" + r[2:]}.get(kind, lambda r: r)(reply)
                conn.sendall(struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply)
        except OSError:
            return
        finally:
            conn.close()


GOOD = [1.5, 2.5, -3.5, 4.5]
BAD_SCRIPT = ["fc4", "short", "fc2b", "exception", "good", "exception_fc4", "byte_count", "garbage", "short"]


def _faulty_server() -> FaultyServer:
    server = FaultyServer(["good"] * 4 + BAD_SCRIPT)
    words = [w for v in GOOD for w in encode_value(v, "f32")]
    server.set_registers(0, words)
    server.set_registers(0, [0x4700] * 8, table="input")  # what a reply with function code 4 carries: 32768.0
    return server.start()


def test_wrong_short_and_garbled_replies_are_counted_never_data(tmp_path: Path) -> None:
    server = _faulty_server()
    url = f"modbus://127.0.0.1:{server.port}/1?registers=0:f32,2:f32,4:f32,6:f32&interval=0.02&timeout=0.3"
    agent, src, runner = _agent(tmp_path, url)
    src.backoff.base = 0.05
    rows = Rows()
    agent.subscribe(rows.on_event, rows.on_batch)
    try:
        assert wait_until(lambda: len(server.sent) >= 4 + len(BAD_SCRIPT))
        scored = agent.summary.windows
        assert wait_until(lambda: agent.summary.windows >= scored + 10)  # it goes on scoring good replies
    finally:
        agent.request_stop()
        runner.join(10)
        server.stop()
    assert not runner.is_alive() and agent.summary.ended_by == "stop"
    assert src.bad_replies == {"function_code": 3, "register_count": 2, "undecodable": 2}
    assert src.exceptions_by_code == {2: 1}
    assert agent.summary.bad == {"bad_reply": 7, "exception_response": 1}
    assert agent.metrics.bad_messages.labels("bad_reply")._value.get() == 7
    assert rows.rows and all(r == pytest.approx(GOOD) for r in rows.rows)  # no bad reply became data
    assert src.connects == 3  # each reply that did not decode dropped the connection (its bytes may be out of step)
    assert agent.metrics.reconnects.labels(src.name)._value.get() == 2
    assert agent.summary.source_restarts == 0 and agent.summary.source_failures == {}


@pytest.mark.parametrize("metrics", [False, True], ids=["default", "metrics"])
def test_the_agent_command_outlives_bad_replies_of_its_only_source(tmp_path: Path, metrics: bool) -> None:
    """The issue's case: Modbus as the only source, a short reply and function code 0x2B; the README's form."""
    model = write_model(tmp_path / "m.onnx", make_card(window=WINDOW, features=FEATURES, threshold=100.0))
    server = _faulty_server()
    url = f"modbus://127.0.0.1:{server.port}/1?registers=0:f32,2:f32,4:f32,6:f32&interval=0.05&timeout=0.3"
    extra = ["--metrics", f"127.0.0.1:{free_port()}"] if metrics else []
    try:
        proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                               "--source", url, "--duration", "4", "--summary-json", str(tmp_path / "s.json"),
                               *extra], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ended_by"] == "duration" and summary["source_failures"] == {}
    assert summary["bad"] == {"bad_reply": 7, "exception_response": 1}
    assert summary["windows"] > 20  # polled every 0.05 s for 4 s, minus the faults and one reconnect
    assert "bad reply: a reply with function code 4 to a function 3 request" in proc.stderr  # once a minute
