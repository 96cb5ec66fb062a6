"""Sources end only when told to (issue 24, item 2).

A source thread that dies is started again by the agent and counted; one
that keeps dying is given up, and when every source has ended that way
the agent exits 1 naming it; a replay or stdin reaching its end is still a
clean exit 0. The sources themselves count a reading they cannot use and
go on: stdin bytes that are not UTF-8 and lines without end, CSV rows the
csv module refuses.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import MemorySink
from edgewatch.agent.sources import Item, Kind, ReplaySource, Source
from edgewatch.agent.sources.supervision import RestartPolicy
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FAST = RestartPolicy(limit=3, window=60.0, base=0.05, cap=0.2)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5))


class Flaky(Source):
    """A source with a bug: its first ``failures`` runs raise, later ones send a row every 10 ms until stopped."""

    def __init__(self, failures: int, name: str = "flaky") -> None:
        super().__init__()
        self.name = name
        self.failures = failures
        self.runs = 0

    def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise KeyError(self.runs)  # what the short Modbus reply raised before the replies were checked
        while not self.stopping:
            self._put(Item(Kind.RAW, self.name, b"[0.5, 0.5, 0.5, 0.5]", time.time()))
            self._stop.wait(0.01)


def _run(agent: Agent, **kw: object) -> threading.Thread:
    runner = threading.Thread(target=agent.run, kwargs=kw, daemon=True)
    runner.start()
    return runner


def test_a_source_that_dies_is_started_again_and_counted(model_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(ScoringModel(model_path), [], AgentOptions(drift_every=0, source_restart=FAST))
    flaky = Flaky(failures=2)
    agent.add_source(flaky)
    with caplog.at_level(logging.WARNING, logger="edgewatch.agent"):
        runner = _run(agent)
        try:
            assert wait_until(lambda: agent.summary.windows >= 20)
        finally:
            agent.request_stop()
            runner.join(10)
    assert flaky.runs == 3 and agent.summary.source_restarts == 2
    assert agent.metrics.source_restarts.labels("flaky")._value.get() == 2
    assert agent.summary.source_failures == {} and agent.summary.ended_by == "stop"
    died = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(died) == 2 and "source flaky died (KeyError: 1); restarting it in" in died[0]


def test_a_source_that_keeps_dying_is_given_up_and_named(model_path: Path) -> None:
    sink = MemorySink()
    agent = Agent(ScoringModel(model_path), [sink], AgentOptions(drift_every=0, source_restart=FAST))
    broken = Flaky(failures=99, name="broken")
    agent.add_source(broken)
    agent.add_source(Flaky(failures=0, name="healthy"))
    runner = _run(agent)
    try:
        assert wait_until(lambda: broken.runs == FAST.limit and agent.metrics.sources_running._value.get() == 1)
        windows = agent.summary.windows
        assert wait_until(lambda: agent.summary.windows > windows + 10)
        assert runner.is_alive()  # one source given up: the others still count, the agent goes on
    finally:
        agent.request_stop()
        runner.join(10)
    assert agent.summary.source_restarts == FAST.limit - 1
    assert agent.summary.source_failures == {"broken": "died 3 times in 60s, giving up; last: KeyError: 3"}
    assert agent.summary.ended_by == "stop"  # stopped on request: not a failure of the run


def test_every_source_ended_is_the_end_of_the_run(model_path: Path, tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 30)
    agent = Agent(ScoringModel(model_path), [], AgentOptions(drift_every=0, source_restart=FAST))
    agent.add_source(Flaky(failures=99, name="broken"))
    agent.add_source(ReplaySource(csv, ["a", "b", "c", "d"]))
    summary = agent.run(duration=60)
    assert summary.ended_by == "sources" and summary.messages == 30
    assert list(summary.source_failures) == ["broken"]


def _agent_cmd(model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), *args]


def test_stdin_that_fails_exits_1_naming_it_and_one_that_ends_exits_0(model_path: Path, tmp_path: Path) -> None:
    """The README's form with stdin: its end is a clean end (0); a stdin that breaks is not (1).

    Broken for real: standard input is a TCP connection (``nc host port | edgewatch ...`` without the
    pipe) that the peer resets, so the agent's read fails with ECONNRESET after the first rows.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        reader = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    with reader, peer:
        proc = subprocess.Popen(_agent_cmd(model_path, "--source", "stdin"), stdin=reader.fileno(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peer.sendall(b"[0.5, 0.5, 0.5, 0.5]\n" * 5)
        time.sleep(3)  # the agent has read them
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    assert "Error: every source has ended; stdin: ConnectionResetError" in err
    assert "exit 1 so that its service manager starts it again" in err
    assert "messages 5 " in err  # the summary still comes
    lines = "\n".join(json.dumps([0.5] * 4) for _ in range(10)) + "\n"
    ended = subprocess.run(_agent_cmd(model_path, "--source", "stdin", "--summary-json", str(tmp_path / "s.json")),
                           input=lines, capture_output=True, text=True, timeout=120)
    assert ended.returncode == 0, ended.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ended_by"] == "sources" and summary["messages"] == 10 and summary["windows"] == 7


def test_stdin_bytes_that_are_not_text_and_endless_lines_are_counted(model_path: Path, tmp_path: Path) -> None:
    good = b"[0.5, 0.5, 0.5, 0.5]\n"
    data = (good * 5 + b"[0.5, \xff\xfe 0.5]\n" + b"[" + b"0.5, " * 40_000 + b"0.5]\n" + good * 5
            + b"x" * 300_000)  # the last line has no end at all
    proc = subprocess.run(_agent_cmd(model_path, "--source", "stdin", "--summary-json", str(tmp_path / "s.json")),
                          input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["bad"] == {"binary": 1, "too_large": 2} and summary["messages"] == 13
    assert summary["windows"] == 7  # 10 good rows, window 4: the bad ones in between are skipped, not a gap


def test_a_csv_row_the_csv_module_refuses_is_counted_and_the_replay_goes_on(model_path: Path,
                                                                          tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_bytes(b"a,b,c,d\n" + b"0.5,0.5,0.5,0.5\n" * 5 + b"0.5," + b"9" * 200_000 + b",0.5,0.5\n"
                    + b"0.5,\xff,0.5,0.5\n" + b"0.5,0.5,0.5,0.5\n" * 5)
    agent = Agent(ScoringModel(model_path), [], AgentOptions(drift_every=0))
    agent.add_source(ReplaySource(csv, ["a", "b", "c", "d"]))
    summary = agent.run(duration=60)
    assert summary.ended_by == "sources" and summary.source_failures == {}
    assert summary.bad == {"bad_reply": 1, "not_number": 1} and summary.messages == 12  # the \xff cell
