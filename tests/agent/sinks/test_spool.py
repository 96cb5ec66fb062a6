"""The on-disk alert spool: durable, ordered, bounded, survives a torn write."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from edgewatch.agent.sinks.spool import RETRY_MAX, Spool
from tests.conftest import fill


def test_records_survive_reopen_until_acked(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    numbers = [s.append(f"alert {i}".encode()) for i in range(5)]
    assert numbers == [1, 2, 3, 4, 5] and s.depth == 5
    s.ack(1)
    s.ack(3)  # out of order: 3 stays until 2 is acked too
    assert [n for n, _ in s.pending()] == [2, 3, 4, 5]
    s.close()
    s = Spool(tmp_path)
    # reopened: 1 was acked and persisted; 3 was acked above a gap, so it is delivered again (at least once)
    assert [n for n, _ in s.pending()] == [2, 3, 4, 5]
    assert s.append(b"later") == 6  # numbers are never reused
    for n in (2, 3, 4, 5, 6):
        s.ack(n)
    assert s.depth == 0
    s.close()
    assert Spool(tmp_path).depth == 0


def test_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    for i in range(3):
        s.append(f"r{i}".encode())
    s.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data + data[:10])  # a record header cut mid-write by a crash
    s = Spool(tmp_path)
    assert [p for _, p in s.pending()] == [b"r0", b"r1", b"r2"]
    assert seg.stat().st_size == len(data)
    # a flipped payload byte (bad crc) ends the good part too
    s.close()
    seg.write_bytes(data[:-1] + b"X")
    assert [p for _, p in Spool(tmp_path).pending()] == [b"r0", b"r1"]


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=8192, segment_bytes=2048)
    payload = b"x" * 200
    for _ in range(100):
        s.append(payload)
    assert s.size_bytes <= 8192 + 2048
    assert s.dropped > 0 and s.depth + s.dropped == 100
    kept = [n for n, _ in s.pending()]
    assert kept == list(range(101 - len(kept), 101))  # the newest survive, in order
    s.close()
    assert [n for n, _ in Spool(tmp_path, max_bytes=8192, segment_bytes=2048).pending()] == kept


def test_delivered_segments_are_deleted(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    numbers = [s.append(b"y" * 500) for _ in range(40)]
    assert len(list(tmp_path.glob("seg-*.log"))) > 3
    for n in numbers:
        s.ack(n)
    assert len(list(tmp_path.glob("seg-*.log"))) == 1 and s.depth == 0


def _flush_soon(s: Spool) -> bool:
    deadline = time.monotonic() + RETRY_MAX + 2
    while time.monotonic() < deadline:
        if s.flush():
            return True
        time.sleep(0.05)
    return s.flush()


def test_a_full_disk_keeps_records_in_memory_and_writes_them_when_space_returns(small_tmpfs, caplog) -> None:
    disk = small_tmpfs(256 * 1024)
    s = Spool(disk / "spool", segment_bytes=16 * 1024, memory_max_bytes=40 * 1000)
    filler = fill(disk, leave=8192)
    payloads = [(b"%05d" % i) + b"a" * 995 for i in range(60)]  # 1 KiB records: ~8 fit, 40 wait in memory
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sinks.spool"):
        numbers = [s.append(p) for p in payloads]
    assert not s.writable and s.write_error == "No space left on device"
    kept = [n for n in numbers if n is not None]
    assert s.in_memory == 40 and len(kept) == 60 - s.dropped and s.dropped == 12
    assert numbers[-12:] == [None] * 12  # the newest went: the older may already be on their way
    # one line per kind of trouble (at most one a minute), no traceback
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "cannot be written" in messages[0] and "dropped a new one" in messages[1]
    assert not any(r.exc_info for r in caplog.records)
    # deliverable from memory like any pending record, in order
    assert [n for n, _ in s.pending()] == kept
    filler.unlink()
    assert _flush_soon(s) and s.writable and s.in_memory == 0
    assert s.append(b"after") == 61
    s.close()
    again = Spool(disk / "spool")
    assert [p for _, p in again.pending()] == payloads[:48] + [b"after"]  # nothing torn, nothing reordered


def test_acks_on_a_full_disk_neither_raise_nor_lose_their_place(small_tmpfs) -> None:
    disk = small_tmpfs(128 * 1024)
    s = Spool(disk / "spool", segment_bytes=8192)
    numbers = [s.append(b"r" * 1000) for _ in range(30)]
    filler = fill(disk)
    s.ack_many(numbers[:5])  # "acked" cannot be rewritten: kept in memory
    assert s.depth == 25
    s.ack_many(numbers[5:20])  # whole segments are delivered now: deleting them makes room
    assert s.depth == 10
    filler.unlink()
    s.flush()
    s.close()
    assert [n for n, _ in Spool(disk / "spool").pending()] == numbers[20:]


def test_records_left_in_memory_at_close_are_counted(small_tmpfs) -> None:
    disk = small_tmpfs(64 * 1024)
    s = Spool(disk / "spool")
    fill(disk)
    assert [s.append(b"x" * 100) for _ in range(3)] == [1, 2, 3]
    assert s.in_memory == 3 and s.dropped == 0
    s.close()
    assert s.dropped == 3 and s.depth == 0
