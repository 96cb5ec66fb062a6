"""An agent that stops while its broker hangs (a real mosquitto sent SIGSTOP: TCP open, nothing answered).

The stop must not wait on the broker (before, 12 s: the sink's drain, the
status' goodbye and the connection's drain, one after the other), and must
lose nothing: what the broker did not acknowledge stays in the spool, the run
summary and the log say how many, and the next start delivers them in order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from edgewatch.agent.sinks.spool import Spool
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until


def _rows(episodes: int, t0: float) -> str:
    out = []
    for e in range(episodes):  # 5 rows far out (an episode starts), 5 normal ones (it ends)
        for i in range(10):
            out.append(json.dumps({"values": [0.5, 0.5, 0.5, 2.0 if i < 5 else 0.5], "ts": t0 + 10 * e + i}))
    return "\n".join(out) + "\n"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _agent(tmp_path: Path, model: Path, broker, seen: Path, summary: Path, stderr) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", "stdin",
         "--sink", f"mqtt://{broker.host}:{broker.port}/hung", "--sink", f"jsonl:{seen}", "--agent-id", "h1",
         "--spool-dir", "spool", "--stride", "1", "--k", "1", "--n", "1", "--summary-json", str(summary)],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def _acked(tmp_path: Path) -> int:
    """The highest spool record the agent has recorded as acknowledged by the broker."""
    files = list((tmp_path / "spool").glob("*/acked"))
    return int(files[0].read_text() or 0) if files else 0


def test_a_stop_on_a_hung_broker_leaves_what_it_did_not_take_in_the_spool(tmp_path: Path, make_broker,
                                                                          collector) -> None:
    broker = make_broker().start()
    sub = collector(broker, "hung/h1/alerts", client_id="c-hung", persistent=True)
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    seen, summary = tmp_path / "seen.jsonl", tmp_path / "summary.json"
    log = (tmp_path / "agent.err").open("w")
    proc = _agent(tmp_path, model, broker, seen, summary, log)
    stopped = False
    try:
        proc.stdin.write(_rows(3, 1_700_000_000.0))
        proc.stdin.flush()
        assert wait_until(lambda: _acked(tmp_path) == 6, 60), "the healthy broker did not take the first alerts"
        broker.proc.send_signal(signal.SIGSTOP)
        stopped = True
        proc.stdin.write(_rows(5, 1_700_100_000.0))
        proc.stdin.flush()
        assert wait_until(lambda: len(_jsonl(seen)) == 16, 60), "the agent did not emit every event"
        proc.stdin.close()  # end of input: the agent stops with the broker still hung
        try:
            proc.wait(60)  # a hang check, not a speed claim (the stop took 12 s before; 2 s now)
        except subprocess.TimeoutExpired:
            raise AssertionError("the agent did not stop within 60 s of the end of its input") from None
    finally:
        proc.kill()
        log.close()
        if stopped:
            broker.proc.send_signal(signal.SIGCONT)
    err = (tmp_path / "agent.err").read_text()
    assert proc.returncode == 0, err[-3000:]

    emitted = [e["id"] for e in _jsonl(seen)]
    assert json.loads(summary.read_text())["delivery"] == {"sent": 16, "delivered": 6, "dropped": 0, "waiting": 10}
    spool_dir = next((tmp_path / "spool").iterdir())
    spool = Spool(spool_dir)
    left = [json.loads(record.partition(b"\n")[2])["id"] for _, record in spool.pending()]
    spool.close()
    assert left == emitted[6:], "the spool does not hold exactly what the broker did not acknowledge"
    assert "the broker has answered nothing for" in err  # it stopped on the broker's silence, not a timeout
    assert f"10 alert(s) left in the spool spool/{spool_dir.name}; they are sent at the next start" in err
    assert "left in the spool for the next start 10" in err  # the run summary
    assert "Traceback" not in err, err[-3000:]

    # the next start, the broker answering again: the ten go out, after the six, in order
    seen2, summary2 = tmp_path / "seen2.jsonl", tmp_path / "summary2.json"
    again = _agent(tmp_path, model, broker, seen2, summary2, subprocess.PIPE)
    _, err2 = again.communicate("", timeout=60)
    assert again.returncode == 0, err2[-3000:]
    assert sub.wait_for(lambda c: set(emitted) <= {e["id"] for e in c.events()}, 60), \
        f"missing {set(emitted) - {e['id'] for e in sub.events()}}"
    assert list(dict.fromkeys(e["id"] for e in sub.events())) == emitted
    assert json.loads(summary2.read_text())["delivery"]["waiting"] == 0


def test_a_stop_before_a_hung_broker_ever_answered_keeps_every_alert(tmp_path: Path, make_broker) -> None:
    """Hung from the start: the TCP connection is accepted (the kernel's backlog), the CONNACK never comes."""
    broker = make_broker().start()
    broker.proc.send_signal(signal.SIGSTOP)
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    seen, summary = tmp_path / "seen.jsonl", tmp_path / "summary.json"
    log = (tmp_path / "agent.err").open("w")
    proc = _agent(tmp_path, model, broker, seen, summary, log)
    try:
        proc.stdin.write(_rows(5, 1_700_000_000.0))
        proc.stdin.close()
        try:
            proc.wait(60)  # a hang check, not a speed claim
        except subprocess.TimeoutExpired:
            raise AssertionError("the agent did not stop within 60 s of the end of its input") from None
    finally:
        proc.kill()
        log.close()
        broker.proc.send_signal(signal.SIGCONT)
    err = (tmp_path / "agent.err").read_text()
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(summary.read_text())["delivery"] == {"sent": 10, "delivered": 0, "dropped": 0, "waiting": 10}
    spool = Spool(next((tmp_path / "spool").iterdir()))
    left = [json.loads(record.partition(b"\n")[2])["id"] for _, record in spool.pending()]
    spool.close()
    assert left == [e["id"] for e in _jsonl(seen)]
    assert "the broker has not answered the connection for" in err
    assert "left in the spool for the next start 10" in err
