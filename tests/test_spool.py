"""The on-disk alert spool: durable, ordered, bounded, survives a torn write."""

from __future__ import annotations

from pathlib import Path

from edgewatch.agent.spool import Spool


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
