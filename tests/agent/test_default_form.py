"""The agent in the README's default form (issue 24, item 1): ``edgewatch agent run --model M --source S``.

Every test here runs the real command, and the features that once ran only
with an option set (``--metrics``, ``--agent-id``, ``--spool-dir``) run
without it too: stream eviction, an overflowing score and the live page's
event stream (without ``--metrics`` all three killed the agent), the MQTT
sink with the default agent id and spool folder, and ``--watch-model``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.agent.ops.metrics import METRICS, AgentMetrics, Unexported
from tests.conftest import free_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


@contextlib.contextmanager
def _agent(model: Path, *args: str, cwd: Path) -> Iterator[subprocess.Popen]:
    """``edgewatch agent run --model MODEL ARGS`` with pipes; killed on the way out if still running (a test that
    failed before :func:`_finish`), so no agent outlives its test."""
    proc = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish(proc: subprocess.Popen, last: bytes = b"", err: Drain | None = None) -> None:
    """Write ``last``, close stdin (the stream's end, as a pipe's writer ends it) and assert that the agent exits 0
    within 60 s; its stderr's tail is the message (``err``: the stderr already drained in the background)."""
    if last:
        proc.stdin.write(last)
    proc.stdin.close()
    code = proc.wait(60)
    if err is not None:
        err.join(10)
    assert code == 0, (err.text if err is not None else proc.stderr.read()).decode()[-3000:]


def _row(values: list[float], stream: str) -> bytes:
    return (json.dumps({"values": values, "stream": stream}) + "\n").encode()


class EventReader(threading.Thread):
    """The live page's ``/events`` stream as a browser reads it: (kind, data) pairs, until closed."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", path)
        self.response = self.conn.getresponse()
        self.events: list[tuple[str, dict]] = []
        self.start()

    def run(self) -> None:
        kind = None
        try:
            while True:
                line = self.response.fp.readline()
                if not line:
                    return
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    kind = text[7:]
                elif text.startswith("data: ") and kind:
                    self.events.append((kind, json.loads(text[6:])))
        except OSError:
            return

    def frames(self) -> list[dict]:
        return [d for k, d in self.events if k == "frame"]

    def close(self) -> None:
        self.conn.close()


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_every_metric_exists_exported_or_not() -> None:
    """One table: each name the code uses is in it, and both forms have every one with every verb."""
    used = set()
    for path in (ROOT / "edgewatch").rglob("*.py"):
        used |= set(re.findall(r"\bmetrics\.([a-z_]+)\.(?:labels|inc|set|observe)\(", path.read_text()))
    assert used and used <= set(METRICS), sorted(used - set(METRICS))
    off, on = AgentMetrics(exported=False), AgentMetrics(exported=True)
    assert off.registry is None
    for attr, spec in METRICS.items():
        assert isinstance(getattr(off, attr), Unexported)
        for metrics in (off, on):
            metric = getattr(metrics, attr)
            if spec.labels:
                metric = metric.labels(*["x"] * len(spec.labels))
            getattr(metric, "observe" if spec.buckets else ("set" if spec.kind.value == "Gauge" else "inc"))(1)
    names = {m.name for m in on.registry.collect()}
    assert names == {s.name for s in METRICS.values()}
    with pytest.raises(AttributeError, match="add it to METRICS"):
        off.not_a_metric  # noqa: B018


@pytest.mark.parametrize("with_metrics", [False, True], ids=["default", "metrics"])
def test_eviction_overflow_and_the_live_page_with_and_without_metrics(model: Path, tmp_path: Path,
                                                                      with_metrics: bool) -> None:
    ui_port, metrics_port = free_port(), free_port()
    extra = ["--metrics", f"127.0.0.1:{metrics_port}"] if with_metrics else []
    reader = None
    with _agent(model, "--source", "stdin", "--stream-ttl", "1", "--ui", f"127.0.0.1:{ui_port}",
                "--summary-json", "s.json", *extra, cwd=tmp_path) as proc:
        try:
            assert wait_until(lambda: _listening(ui_port) or proc.poll() is not None), "no live page"
            reader = EventReader(ui_port, "/events?stream=b")  # the page: one event stream, open all along
            assert reader.response.status == 200
            proc.stdin.write(_row([0.5] * 4, "a"))
            proc.stdin.flush()
            time.sleep(2.5)  # a is idle past --stream-ttl 1: dropped when the next message comes
            rows = [[0.5] * 4] * 8 + [[1e20, 0.5, 0.5, 0.5]] * 6 + [[0.5] * 4] * 8  # (1e20)^2 overflows float32
            proc.stdin.write(b"".join(_row(r, "b") for r in rows))
            proc.stdin.flush()
            assert wait_until(lambda: sum(len(f["w"]["s"]) for f in reader.frames()) >= 19 or proc.poll() is not None)
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # still running
            assert max(s for f in reader.frames() for s in f["w"]["s"]) > 1e38  # the page shows the capped score
            assert max(a for f in reader.frames() for a in f["w"]["a"]) > 1e38  # and its anomaly_score, capped too
            if with_metrics:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
                assert _metric(text, "edgewatch_streams_evicted_total") == 1
                assert _metric(text, "edgewatch_ui_clients") == 1
                assert _metric(text, 'edgewatch_nonfinite_scores_total{kind="inf"}') >= 1
                # per-stream series under the default --metrics-max-streams: the evicted stream a is gone
                assert _metric(text, 'edgewatch_stream_windows_total{stream="b"}') >= 19
                assert _metric(text, 'edgewatch_stream_windows_total{stream="a"}') is None
                assert _metric(text, 'edgewatch_anomaly_score{stream="b"}') < 1  # its last window is calm again
                assert _metric(text, "edgewatch_streams_aggregated") == 0
            _finish(proc, _row([0.5] * 4, "b"))
        finally:
            if reader is not None:
                reader.close()
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e["stream"]) for e in events] == [("start", "b"), ("end", "b")], err[-3000:]
    assert all(e["anomaly_score"] > 1 and e["score"] > e["threshold"] == 0.5 for e in events)
    assert events[0]["score"] > 1e38 and "reason" not in events[1]  # the data ended it, not the stop
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["evicted_streams"] == 1 and summary["nonfinite_scores"]["inf"] >= 1
    assert summary["messages"] == 24 and "Traceback" not in err


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_mqtt_sink_with_the_default_agent_id_and_spool(model: Path, tmp_path: Path, broker, collector) -> None:
    """The README's MQTT line without --agent-id or --spool-dir: the host name, ./spool in the working folder."""
    host = socket.gethostname()
    sub = collector(broker, "plant1/#", client_id="c-default-form", persistent=False)
    rows = [[0.5] * 4] * 6 + [[3.0] * 4] * 4 + [[0.5] * 4] * 6
    with _agent(model, "--source", "stdin", "--sink", f"mqtt://{broker.host}:{broker.port}/plant1",
                cwd=tmp_path) as proc:
        _finish(proc, b"".join(_row(r, "pump") for r in rows))
    assert sub.wait_for(lambda c: len(c.events(f"plant1/{host}/alerts")) == 2)
    assert [e["event"] for e in sub.events(f"plant1/{host}/alerts")] == ["start", "end"]
    assert sub.wait_for(lambda c: any(json.loads(p).get("state") == "offline" for p in c.on(f"{host}/status")))
    assert (tmp_path / "spool").is_dir()


@pytest.mark.parametrize("sources", [["stdin"], ["stdin", "opcua"]])
def test_the_first_retained_status_is_the_fleet_members_full_one(model: Path, tmp_path: Path, broker, collector,
                                                                  sources: list[str]) -> None:
    """With an MQTT sink the agent is a fleet member: no status of another form comes first.

    Before, the sink's connection published a minimal status (state and time) as soon as it connected, and
    the fleet member's full one (model, rates, spool) replaced it when the assembly reached it: an operator
    reading the retained status then, or a tool taking the first one, saw an agent without a model. An OPC
    UA source (its library is imported while the agent is built, 0.6 s here) made that every time.
    """
    urls = [f"opcua://127.0.0.1:{free_port()}/Objects/2:Pump" if s == "opcua" else s for s in sources]
    prefix = f"plant2-{len(sources)}"  # its own: the other case's retained status must not come first here
    sub = collector(broker, f"{prefix}/+/status", client_id="c-first-status", persistent=False)
    # an OPC UA source without its server never ends: the agent stops after stdin's one message
    stop = ["--max-messages", "1"] if "opcua" in sources else []
    with _agent(model, *[a for url in urls for a in ("--source", url)], *stop,
                "--sink", f"mqtt://{broker.host}:{broker.port}/{prefix}", cwd=tmp_path) as proc:
        assert sub.wait_for(lambda c: c.on("/status"), 30)
        _finish(proc, _row([0.5] * 4, "pump"))
    assert sub.wait_for(lambda c: any(json.loads(p)["state"] == "offline" for p in c.on("/status")))
    statuses = [json.loads(p) for p in sub.on("/status")]
    assert statuses[0]["state"] == "online"
    assert all("model" in s and "interval_s" in s for s in statuses), statuses


def test_watch_model_without_trust_keys_or_metrics(model: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.onnx"
    live.write_bytes(model.read_bytes())
    with _agent(live, "--source", "stdin", "--watch-model", "--watch-interval", "0.1", cwd=tmp_path) as proc:
        out, err = Drain(proc.stdout), Drain(proc.stderr)
        newer = write_model(tmp_path / "new.onnx", make_card(window=4, threshold=0.9, k=2, n=3))
        sha = hashlib.sha256(newer.read_bytes()).hexdigest()
        proc.stdin.write(_row([0.5] * 4, "s") * 5)
        proc.stdin.flush()
        # the start's log line comes after the watcher has looked at the file: a swap from then on is a swap
        assert wait_until(lambda: b"at most" in err.text or proc.poll() is not None, timeout=60)
        os.replace(newer, live)  # replaced atomically, as the flag's help says
        assert wait_until(lambda: b"model_swapped" in out.text or proc.poll() is not None)
        _finish(proc, err=err)
    out.join(10)
    events = [json.loads(line) for line in out.text.splitlines()]
    assert [(e["event"], e["sha256"]) for e in events] == [("model_swapped", sha)]


class Drain(threading.Thread):
    """Reads a pipe to its end in the background, so a test can look at what came so far."""

    def __init__(self, pipe) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.pipe = pipe
        self.text = b""
        self.start()

    def run(self) -> None:
        for line in self.pipe:
            self.text += line
