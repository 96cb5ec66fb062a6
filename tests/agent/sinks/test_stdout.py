"""The ``stdout`` sink (the default sink) when its reader stops reading or goes away.

Before: the agent wrote standard output in its loop, so a reader that stopped
reading (a pipe to a consumer that hangs) blocked the loop for good once the
pipe's 64 KiB were full: no stream was scored and no other sink got an event.
A reader that went away (EPIPE) cost an error with a traceback per event,
and the events were counted nowhere. Real processes and real pipes here.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.sinks import JsonlSink, MemorySink
from edgewatch.agent.sinks.stdout import StdoutSink
from edgewatch.agent.sources.replay import ReplaySource
from tests.modelkit import make_card, write_model

SCRIPT = Path(sys.executable).parent / "edgewatch"  # the console script the README runs
EPISODES = 100  # one every 30 rows: 200 events of ~0.6 KiB, twice what a 64 KiB pipe holds


def _rows(n: int = 30 * EPISODES) -> list[list[float]]:
    return [[3.0] * 4 if i % 30 < 10 else [0.5] * 4 for i in range(n)]


def _stdin_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"values": r, "stream": "press-1"}) + "\n" for r in _rows()))
    return path


def _model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))


def test_default_form_a_reader_that_never_reads_does_not_stop_the_agent(tmp_path: Path) -> None:
    """``edgewatch agent run --model M --source stdin | a consumer that hangs``: the agent reads all its input,
    scores it, ends at the end of input (the stop gives the reader 5 s), exit 0; the reader gets whole lines, the
    first events in order, and the log counts the rest as not written."""
    assert SCRIPT.exists(), f"the console script {SCRIPT} is not installed (pip install -e .)"
    read_end, write_end = os.pipe()
    try:
        with _stdin_file(tmp_path).open() as stdin:
            proc = subprocess.Popen([str(SCRIPT), "agent", "run", "--model", str(_model(tmp_path)), "--source",
                                     "stdin", "--summary-json", str(tmp_path / "summary.json")],
                                    stdin=stdin, stdout=write_end, stderr=subprocess.PIPE, text=True)
        os.close(write_end)
        write_end = -1
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"the agent hung on a full stdout: {err[-2000:]}") from None
        assert proc.returncode == 0, err[-2000:]
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["messages"] == 30 * EPISODES and summary["events"] == {"start": EPISODES, "end": EPISODES}
        got = b""
        os.set_blocking(read_end, False)
        while True:
            try:
                chunk = os.read(read_end, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        lines = got.decode().splitlines()
        assert got.endswith(b"\n") and 0 < len(lines) < 2 * EPISODES
        events = [json.loads(line) for line in lines]
        assert [e["event"] for e in events] == ["start", "end"] * (len(events) // 2) + ["start"] * (len(events) % 2)
        dropped = 2 * EPISODES - len(lines)
        assert f"{dropped} event(s) could not be written to stdout this run" in err, err[-2000:]
        assert "Traceback" not in err
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_default_form_a_reader_gone_costs_one_log_line_not_a_traceback_per_event(tmp_path: Path) -> None:
    """stdout's reader has gone before the first event (``... | head -c 0``): every event is EPIPE; the agent
    scores everything, logs the failure once, exit 0."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with _stdin_file(tmp_path).open() as stdin:
        proc = subprocess.run([str(SCRIPT), "agent", "run", "--model", str(_model(tmp_path)), "--source", "stdin"],
                              stdin=stdin, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=90)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("not written to stdout: Broken pipe") == 1, proc.stderr[-3000:]
    assert f"{2 * EPISODES} event(s) could not be written to stdout this run" in proc.stderr
    assert f"events {{'start': {EPISODES}, 'end': {EPISODES}}}" in proc.stderr


def test_with_other_sinks_a_full_stdout_silences_none_and_is_counted(tmp_path: Path) -> None:
    """In the loop's terms: a stdout pipe of 4 KiB that nobody reads, a queue of 10 events, a JSONL file and a
    memory sink beside it. The other sinks get every event while stdout's are dropped past the queue, counted
    in ``edgewatch_sink_dropped_total{sink="stdout"}`` and ``/readyz``'s ``sink_unwritable``."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    csv = tmp_path / "r.csv"
    csv.write_text("a,b,c,d\n" + "".join(",".join(f"{v:g}" for v in r) + "\n" for r in _rows()))
    metrics = AgentMetrics(exported=True)
    stdout = StdoutSink(metrics=metrics, max_waiting=10, fd=write_end)
    memory = MemorySink()
    jsonl = JsonlSink(tmp_path / "alerts.jsonl", fsync=False, metrics=metrics)
    agent = Agent(ScoringModel(_model(tmp_path)), [stdout, jsonl, memory], AgentOptions(stride=1, drift_every=0),
                  metrics=metrics)
    agent.add_source(ReplaySource(csv, ["a", "b", "c", "d"]))
    started = time.monotonic()
    try:
        agent.run(duration=120)
        assert time.monotonic() - started < 60, "the loop waited for stdout's reader"
        assert len(memory.events) == 2 * EPISODES
        assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 2 * EPISODES
        assert stdout.not_ready_reason() == "sink_unwritable"
        dropped = metrics.registry.get_sample_value("edgewatch_sink_dropped_total", {"sink": "stdout"})
        assert dropped == stdout.dropped >= 2 * EPISODES - 10 - 4096 // 500, (dropped, stdout.written)
        assert stdout.written + stdout.dropped == 2 * EPISODES
    finally:
        os.close(read_end)
        os.close(write_end)
