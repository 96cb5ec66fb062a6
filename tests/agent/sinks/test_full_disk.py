"""A full disk loses nothing silently: the agent's spool on a small tmpfs this test mounts and fills,
the broker down, faults fed fast; then space freed and the broker started (with --metrics: the broker
first, on the full disk), in one run of the agent.

Every event is delivered or counted as dropped (delivered + dropped == sent), delivery resumes without a
restart, the failures are logged once, not per event, and /readyz says why the agent is not ready.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import fill, free_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

EPISODES = 60  # 120 events: a few fit in the 4 KiB left on disk, some more in memory, the rest are dropped


def _rows(episodes: int, t0: float) -> str:
    out = []
    for e in range(episodes):  # 5 rows far out (an episode starts), 5 normal ones (it ends)
        for i in range(10):
            d = 2.0 if i < 5 else 0.5
            out.append(json.dumps({"values": [0.5, 0.5, 0.5, d], "ts": t0 + 10 * e + i}))
    return "\n".join(out) + "\n"


def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _run_through_a_full_disk(tmp_path: Path, make_broker, collector, small_tmpfs, metrics: bool) -> None:  # noqa: ANN001
    broker = make_broker().start()
    sub = collector(broker, "full/fd/#", client_id=f"c-full-{metrics}", persistent=True)
    broker.stop()  # the collector's session and subscription stay with the broker
    disk = small_tmpfs(2 * 2**20)
    filler = fill(disk, leave=4096)
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    seen = tmp_path / "seen.jsonl"  # what the agent emitted, on a disk with room
    summary = tmp_path / "summary.json"
    port = free_port()
    cmd = [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", "stdin",
           "--sink", f"mqtt://{broker.host}:{broker.port}/full", "--sink", f"jsonl:{seen}", "--agent-id", "fd",
           "--spool-dir", str(disk / "spool"), "--spool-memory-mb", "0.01", "--stride", "1", "--k", "1", "--n", "1",
           "--summary-json", str(summary)]
    if metrics:
        cmd += ["--metrics", f"127.0.0.1:{port}"]
    stderr = (tmp_path / "agent.err").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
                            text=True)
    try:
        if metrics:  # no broker, nothing emitted yet: not ready, and why
            assert wait_until(lambda: _health(port)[1].get("ready_reason") == "alerts_undeliverable", 30)
        proc.stdin.write(_rows(EPISODES, 1_700_000_000.0))
        proc.stdin.flush()
        assert wait_until(lambda: len(_jsonl(seen)) == 2 * EPISODES, 60), "the agent did not emit every event"
        if metrics:
            assert wait_until(lambda: _health(port)[1].get("ready_reason") == "spool_unwritable", 20)
            code, h = _health(port)
            assert code == 503 and h["spool_error"] == "No space left on device"
            assert h["spool_in_memory"] > 0 and h["spool_dropped"] > 0
            assert h["spool_depth"] + h["spool_dropped"] == 2 * EPISODES  # depth: on disk and in memory
            assert f"edgewatch_spool_dropped {float(h['spool_dropped'])}" in _get(port, "/metrics")
        if metrics:  # the broker first, the disk still full: what waits is delivered, the sender lives on
            broker.start()
            assert wait_until(lambda: _health(port)[1].get("spool_depth") == 0, 30), _health(port)
            code, h = _health(port)
            assert (code, h["ready_reason"]) == (503, "spool_unwritable") and h["spool_in_memory"] == 0
            filler.unlink()
        else:  # space first (on disk now), then the broker
            filler.unlink()
            broker.start()
        # one more episode after the outage: delivery is in order, so once it arrives, so did the rest
        proc.stdin.write(_rows(1, 1_700_100_000.0))
        proc.stdin.flush()
        assert wait_until(lambda: len(_jsonl(seen)) == 2 * EPISODES + 2, 30)
        last = {e["id"] for e in _jsonl(seen)[-2:]}
        assert sub.wait_for(lambda c: last <= {e["id"] for e in c.events()}, 60), \
            "delivery did not resume: " + (tmp_path / "agent.err").read_text()[-3000:]
        if metrics:
            assert wait_until(lambda: _health(port)[0] == 200, 20), _health(port)
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        stderr.close()
    err = (tmp_path / "agent.err").read_text()
    delivery = json.loads(summary.read_text())["delivery"]
    received = {e["id"] for e in sub.events()}
    emitted = [e["id"] for e in _jsonl(seen)]
    assert delivery["sent"] == len(emitted) == 2 * EPISODES + 2
    assert delivery["dropped"] > 0 and delivery["waiting"] == 0
    assert delivery["delivered"] + delivery["dropped"] == delivery["sent"]
    assert len(received) == delivery["delivered"] and received <= set(emitted)
    # the newest went when memory was full: what arrived is what came first, in order, plus the last episode
    kept = emitted[:2 * EPISODES - delivery["dropped"]] + emitted[-2:]
    assert [i for i in dict.fromkeys(e["id"] for e in sub.events())] == kept
    assert "Traceback" not in err, err[-3000:]
    assert err.count("cannot be written:") == 1 and err.count("dropped a new one") == 1, err[-3000:]
    assert "the disk takes writes again" in err
    assert f"dropped {delivery['dropped']}" in err  # the run summary on stderr says it too


def test_full_disk_with_metrics_and_readyz(tmp_path: Path, make_broker, collector, small_tmpfs) -> None:
    _run_through_a_full_disk(tmp_path, make_broker, collector, small_tmpfs, metrics=True)


def test_full_disk_in_the_default_form(tmp_path: Path, make_broker, collector, small_tmpfs) -> None:
    _run_through_a_full_disk(tmp_path, make_broker, collector, small_tmpfs, metrics=False)


def _jsonl_sink_on_a_full_disk(tmp_path: Path, small_tmpfs, metrics: bool) -> None:  # noqa: ANN001
    """A jsonl: sink whose disk is full: events counted as dropped, logged once, the stdout sink goes on."""
    disk = small_tmpfs(1 * 2**20)
    out = disk / "alerts.jsonl"
    out.write_text("")
    filler = fill(disk, leave=0)
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    port = free_port()
    cmd = [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", "stdin",
           "--sink", f"jsonl:{out}", "--sink", "stdout", "--stride", "1", "--k", "1", "--n", "1"]
    if metrics:
        cmd += ["--metrics", f"127.0.0.1:{port}"]
    stdout = (tmp_path / "stdout.jsonl").open("w")
    stderr = (tmp_path / "agent.err").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, text=True)
    try:
        proc.stdin.write(_rows(10, 1_700_000_000.0))
        proc.stdin.flush()
        assert wait_until(lambda: len(_jsonl(tmp_path / "stdout.jsonl")) == 20, 60), "stdout did not get every event"
        if metrics:
            assert wait_until(lambda: _health(port)[1].get("ready_reason") == "sink_unwritable", 20), _health(port)
            assert 'edgewatch_sink_dropped_total{sink="jsonl"} 20.0' in _get(port, "/metrics")
        filler.unlink()
        proc.stdin.write(_rows(1, 1_700_100_000.0))
        proc.stdin.flush()
        assert wait_until(lambda: len(_jsonl(out)) == 2, 30), "writing did not resume once the disk had room"
        if metrics:
            assert wait_until(lambda: _health(port)[0] == 200, 20), _health(port)
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        stdout.close()
        stderr.close()
    err = (tmp_path / "agent.err").read_text()
    assert "Traceback" not in err, err[-3000:]
    assert err.count(f"event not written to {out}: No space left on device") == 1, err[-3000:]
    assert "takes writes again (20 event(s) could not be written)" in err
    assert "20 event(s) could not be written to" in err  # said again when the agent stops
    assert [e["id"] for e in _jsonl(out)] == [e["id"] for e in _jsonl(tmp_path / "stdout.jsonl")][-2:]


def test_a_jsonl_sink_on_a_full_disk_with_metrics(tmp_path: Path, small_tmpfs) -> None:
    _jsonl_sink_on_a_full_disk(tmp_path, small_tmpfs, metrics=True)


def test_a_jsonl_sink_on_a_full_disk_in_the_default_form(tmp_path: Path, small_tmpfs) -> None:
    _jsonl_sink_on_a_full_disk(tmp_path, small_tmpfs, metrics=False)
