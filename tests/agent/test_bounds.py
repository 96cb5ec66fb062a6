"""Bounds on what data can grow (issue 12 item 5): streams, idle streams, live-page clients."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import MAX_STREAMS_CAP, load_runtime
from edgewatch.agent.sources import Item, Kind
from edgewatch.agent.sinks import MemorySink
from edgewatch.agent.ui.server import UiOptions
from tests.conftest import live_page
from tests.modelkit import make_card, write_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScoringModel:
    path = write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=3, threshold=0.5, k=1, n=1))
    return ScoringModel(path)


def _msg(stream: str, value: float = 0.5) -> Item:
    return Item(Kind.RAW, "gw", json.dumps({"stream": stream, "values": [value] * 4}), time.time())



def test_twenty_thousand_stream_ids_hold_at_most_the_default(model: ScoringModel) -> None:
    agent = Agent(model, [], AgentOptions(drift_every=0))
    assert agent.max_streams == MAX_STREAMS_CAP  # the test model is small: the cap applies
    items = [_msg(f"id-{i}") for i in range(20_000)]
    for lo in range(0, len(items), 1024):
        agent.process(items[lo:lo + 1024])
    assert len(agent.streams) == MAX_STREAMS_CAP
    assert agent.summary.bad == {"too_many_streams": 20_000 - MAX_STREAMS_CAP}
    assert agent.metrics.bad_messages.labels("too_many_streams")._value.get() == 20_000 - MAX_STREAMS_CAP
    assert agent.windows.capacity == MAX_STREAMS_CAP  # buffers stop growing at the bound
    agent.process([_msg("id-5", 0.6)])  # a held stream keeps being served
    assert agent.summary.bad["too_many_streams"] == 20_000 - MAX_STREAMS_CAP


def test_default_max_streams_follows_what_a_stream_of_the_model_costs(tmp_path: Path) -> None:
    cheap = load_runtime(write_model(tmp_path / "a.onnx", make_card(window=10)))
    props = make_card(window=10).to_props()
    props["edgewatch.postprocess"] = json.dumps({"kind": "likelihood", "params": {}})
    costly = load_runtime(write_model(tmp_path / "b.onnx", props=props))
    assert cheap.default_max_streams() == MAX_STREAMS_CAP
    # a likelihood step keeps 8640 values per stream (measured 124 KiB): fewer fit in 512M
    assert 1500 < costly.default_max_streams() < 3000
    assert costly.stream_bytes() * costly.default_max_streams() <= 256 * 2**20


def test_idle_streams_are_evicted_after_the_ttl_and_their_slots_reused(model: ScoringModel) -> None:
    sink = MemorySink()
    agent = Agent(model, [sink], AgentOptions(drift_every=0, stream_ttl=30.0, max_streams=5))
    agent.process([_msg(f"s{i}") for i in range(5) for _ in range(3)] + [_msg("s0", 3.0)])
    assert [e["event"] for e in sink.events] == ["start"]
    agent.process([_msg("late")])
    assert agent.summary.bad == {"too_many_streams": 1}
    assert agent.evict_idle(now=time.monotonic() + 31) == 5
    assert [e["event"] for e in sink.events] == ["start", "end"] and sink.events[1]["reason"] == "stream idle"
    assert agent.streams == [] and agent.metrics.evicted_streams._value.get() == 5
    agent.process([_msg(f"new{i}") for i in range(5) for _ in range(3)])
    assert sorted(agent.streams) == [f"new{i}" for i in range(5)] and agent.windows.capacity <= 8
    assert agent.summary.windows == 5 + 1 + 5  # the new streams start with fresh windows
    assert agent.summary.evicted_streams == 5


def test_live_page_clients_are_capped_with_a_counted_refusal(model: ScoringModel) -> None:
    agent = Agent(model, [], AgentOptions(drift_every=0))
    agent.process([_msg("s0") for _ in range(5)])
    server = live_page(agent, "127.0.0.1:0", UiOptions(max_clients=2))
    conns = []  # the responses: each holds its open event stream (dropping one closes it)
    try:
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            c.request("GET", "/events")
            conns.append(c.getresponse())
            assert conns[-1].status == 200
        third = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        third.request("GET", "/events")
        refused = third.getresponse()
        assert refused.status == 503 and "too many live-page clients" in refused.read().decode()
        assert agent.metrics.ui_refused._value.get() == 1 and agent.metrics.ui_clients._value.get() == 2
        conns.pop().close()
        deadline = time.monotonic() + 5
        while server.view.clients > 1 and time.monotonic() < deadline:  # the server notices the hang-up
            time.sleep(0.05)
        again = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        again.request("GET", "/events")
        conns.append(again.getresponse())
        assert conns[-1].status == 200
    finally:
        for c in conns:
            c.close()
        server.stop()


def test_a_connection_that_sends_nothing_does_not_hold_a_thread(model: ScoringModel) -> None:
    import socket

    agent = Agent(model, [], AgentOptions(drift_every=0))
    server = live_page(agent, "127.0.0.1:0", UiOptions(socket_timeout=0.3))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            t0 = time.monotonic()
            assert s.recv(1) == b""  # the server hung up on the silent client
            assert time.monotonic() - t0 < 4
    finally:
        server.stop()


def test_likelihood_history_ring_keeps_what_a_deque_kept_in_the_same_order() -> None:
    from collections import deque

    import numpy as np

    from edgewatch.agent.postprocess.likelihood import _Stream
    from edgewatch.contract.postprocess import LikelihoodParams

    rng = np.random.default_rng(3)
    for long in (1, 2, 7, 64):
        st, ref = _Stream(LikelihoodParams(short=1, long=long)), deque(maxlen=long)
        for v in rng.random(5 * long + 3):
            st.remember(float(v))
            ref.append(float(v))
            assert np.array_equal(st.past(), np.fromiter(ref, dtype=np.float64))  # same values, oldest first


@pytest.mark.parametrize("source", ["replay", "stdin"])
def test_max_messages_reads_exactly_that_many(tmp_path: Path, source: str) -> None:
    """``--max-messages 20`` as the CLI runs it: it read a whole batch before (304 rows of a replay, 200 of 200
    stdin lines)."""
    import subprocess
    import sys

    path = write_model(tmp_path / "m.onnx", make_card(window=3, threshold=0.5, k=1, n=1))
    lines = [json.dumps({"stream": "s", "values": [0.5] * 4}) for _ in range(200)]
    csv = tmp_path / "r.csv"
    csv.write_text("ts,a,b,c,d\n" + "".join(f"{1000 + i},0.5,0.5,0.5,0.5\n" for i in range(400)))
    url = f"replay:{csv}" if source == "replay" else "stdin"
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(path), "--source",
                          url, "--max-messages", "20", "--summary-json", str(tmp_path / "s.json"), "-q"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["messages"] == 20 and summary["ended_by"] == "messages", summary


def test_a_stream_silent_with_every_other_still_has_its_episode_ended_after_the_ttl(tmp_path: Path) -> None:
    """One device opens an episode and falls silent, the only stream of the agent (stdin kept open, nothing on
    it). The TTL sweep ran only when a message came, so its episode stayed open for ever; now it ends as
    ``stream idle`` after ``--stream-ttl`` and the stream starts again with a fresh window when it speaks."""
    import subprocess
    import sys

    from tests.waiting import wait_until

    path = write_model(tmp_path / "m.onnx", make_card(window=3, threshold=0.5, k=1, n=1))
    alerts = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(path), "--source",
                             "stdin", "--stream-ttl", "2", "--sink", f"jsonl:{alerts}", "--summary-json",
                             str(tmp_path / "s.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def events() -> list[dict]:
        return [json.loads(line) for line in alerts.read_text().splitlines()] if alerts.exists() else []

    try:
        proc.stdin.write("".join(json.dumps({"stream": "dev", "values": [3.0] * 4}) + "\n" for _ in range(3)))
        proc.stdin.flush()
        assert wait_until(lambda: [e["event"] for e in events()] == ["start"], 60), events()
        assert wait_until(lambda: len(events()) == 2, 30), "the silent stream's episode was never ended"
        assert events()[1]["event"] == "end" and events()[1]["reason"] == "stream idle"
        proc.stdin.write("".join(json.dumps({"stream": "dev", "values": [0.5] * 4}) + "\n" for _ in range(3)))
        proc.stdin.close()
        proc.stdin = None
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["evicted_streams"] == 1 and summary["windows"] == 1 + 1, summary  # fresh window: 3 rows, 1
