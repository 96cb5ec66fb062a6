"""``jsonl:FILE`` when the file is moved or removed under a running agent (logrotate without copytruncate, rm)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.sinks import JsonlSink


def _ids(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text().splitlines()]


def test_a_rotated_or_removed_file_is_made_again_and_no_event_goes_to_a_file_nobody_reads(tmp_path: Path) -> None:
    """Before: after a rename the events went on into the renamed file, after an rm into a removed one (lost,
    counted nowhere), and the path stayed empty."""
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    sink.send({"n": 1})
    path.rename(tmp_path / "alerts.jsonl.1")  # logrotate's default: move, then expect the writer to make a new one
    sink.send({"n": 2})
    sink.send({"n": 3})
    path.unlink()
    sink.send({"n": 4})
    path.write_text('{"n": 0}\n')  # replaced by another file: appended to, not truncated
    sink.send({"n": 5})
    sink.close()
    assert _ids(tmp_path / "alerts.jsonl.1") == [1]
    assert _ids(path) == [0, 5]
    assert sink.written == 5 and sink.dropped == 0


def test_a_path_that_cannot_be_made_again_refuses_the_event_counted_and_recovers(tmp_path: Path) -> None:
    metrics = AgentMetrics(exported=True)
    folder = tmp_path / "out"
    sink = JsonlSink(folder / "alerts.jsonl", metrics=metrics)
    sink.send({"n": 1})
    shutil.rmtree(folder)  # the folder itself removed: the file cannot be made again
    sink.send({"n": 2})
    assert sink.dropped == 1 and sink.not_ready_reason() == "sink_unwritable"
    assert metrics.registry.get_sample_value("edgewatch_sink_dropped_total", {"sink": "jsonl"}) == 1
    folder.mkdir()
    sink.send({"n": 3})
    sink.close()
    assert _ids(folder / "alerts.jsonl") == [3] and sink.not_ready_reason() is None


def test_a_refused_write_after_copytruncate_leaves_whole_lines_not_a_run_of_nul_bytes(tmp_path: Path,
                                                                                     small_tmpfs) -> None:
    """logrotate's ``copytruncate`` empties the file in place (same inode, so no reopen). The sink's idea of the
    file's end stayed where it was, and the next refused write (a full disk) "cut the half line" by truncating
    the file to that old end: it grew by a run of NUL bytes, which every reader then met before the next line."""
    from tests.conftest import fill

    disk = small_tmpfs(1 << 20)
    path = disk / "alerts.jsonl"
    sink = JsonlSink(path)
    for n in range(1, 201):
        sink.send({"n": n, "pad": "x" * 40})
    path.open("r+").truncate(0)  # copytruncate (after copying the file away)
    filler = fill(disk)
    sink.send({"n": 201})
    assert sink.dropped == 1
    assert path.stat().st_size == 0, path.read_bytes()[:40]
    filler.unlink()
    sink.send({"n": 202})
    sink.close()
    assert _ids(path) == [202]
