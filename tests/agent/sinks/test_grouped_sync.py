"""One fsync per loop iteration for all the alerts written in it, not one per alert.

Each alert was fsynced on its own in the agent's loop: on an SD card (5-10 ms
a sync) the 2,500 ends of a model swap or a stop held scoring for tens of
seconds. The spool now writes an iteration's records and syncs them once at
its end; a record is handed out for delivery only once synced. The count of
fsync calls is taken by strace on the real agent process (the speed is in
benchmarks/test_spool_sync.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgewatch.agent.sinks.spool import Spool
from tests.conftest import free_port
from tests.modelkit import make_card, write_model


def test_records_written_without_their_sync_are_not_delivered_before_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    numbers = [spool.append(f"alert {i}".encode(), sync=False) for i in range(3)]
    assert spool.pending() == [] and spool.depth == 3  # written, kept, not yet handed to a broker
    assert spool.sync()
    assert [n for n, _ in spool.pending()] == numbers
    reopened = Spool(tmp_path)  # as a kill -9 would leave it: the file has every record
    assert [p for _, p in reopened.pending()] == [b"alert 0", b"alert 1", b"alert 2"]
    reopened.close()
    spool.close()


def test_a_segment_left_for_the_next_is_synced_first_and_a_full_group_spans_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 2**20, segment_bytes=4096)
    for i in range(100):  # ~100 bytes each: three segments
        spool.append(b"x" * 80 + str(i).encode(), sync=False)
    assert len(list(tmp_path.glob("seg-*.log"))) >= 3
    visible = len(spool.pending())
    assert 0 < visible < 100  # the segments left behind were synced on the way; the current one waits
    spool.sync()
    assert len(spool.pending()) == 100
    spool.close()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace counts the agent's fsync calls")
def test_the_agent_syncs_a_stops_300_ends_once_and_keeps_them_all(tmp_path: Path) -> None:
    """300 streams each in an open episode when stdin ends: the stop ends 300 episodes in one group. The
    MQTT sink's broker is down (nothing listens), so every event stays in its spool: all 600 are there."""
    model = write_model(tmp_path / "m.onnx", make_card(window=3, threshold=0.5, k=1, n=1))
    streams = 300
    lines = [json.dumps({"stream": f"s{s}", "a": 3.0, "b": 3.0, "c": 3.0, "d": 3.0})
             for _ in range(4) for s in range(streams)]
    port = free_port()
    summary = tmp_path / "summary.json"
    proc = subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(tmp_path / "strace"),
                           sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", "stdin", "--sink", f"mqtt://127.0.0.1:{port}/plant",
                           "--spool-dir", str(tmp_path / "spool"), "--summary-json", str(summary)],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(summary.read_text())["events"]
    assert events == {"start": streams, "end": streams}, events
    report = (tmp_path / "strace").read_text()
    fsyncs = sum(int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync",
                                                       report, re.M))
    assert 0 < fsyncs < streams, report  # before: one per event, 600 and more
    kept = Spool(next((tmp_path / "spool").iterdir()))
    assert kept.depth == 2 * streams  # every event on disk for the next start
    kept.close()
