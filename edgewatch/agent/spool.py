"""An on-disk FIFO of alert records that survives a dead broker and a killed agent.

Layout of a spool directory::

    seg-00000000000000000001.log   append-only segments, named by their first record's number
    seg-00000000000000000412.log
    acked                          the highest record number the broker acknowledged (atomic rename)

A record is ``<length u32><number u64><crc32 u32>`` followed by ``length``
payload bytes. Every append is flushed and fsynced before :meth:`Spool.append`
returns, so an alert that the agent emitted is on disk even if the process is
killed the next instant. On open, a torn or corrupt tail (a crash in the middle
of a write) is cut off at the last good record.

Delivery is **at least once**: a record is removed only after the broker's
PUBACK has been recorded in ``acked``; a crash between the PUBACK and that
write sends the record again on restart. Records carry ids, so receivers drop
duplicates.

When full (``max_bytes`` of segments), the **oldest** segment is dropped and
the loss counted (:attr:`Spool.dropped`). We drop old rather than refuse new:
an agent cut off from its broker for days should still deliver what is
happening now, and the counter plus a log line say exactly how much history
was lost. Records are never dropped silently and never reordered.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections import deque
from pathlib import Path

from edgewatch.errors import EdgewatchError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IQI")
MAX_RECORD = 16 * 2**20
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_SEGMENT_BYTES = 1 * 2**20


class SpoolError(EdgewatchError):
    """The spool directory cannot be used (permissions, full disk): choose another --spool-dir."""


class Spool:
    """Durable FIFO: ``append`` → ``pending`` → ``ack``; thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: bool = True) -> None:
        if max_bytes < 2 * segment_bytes:
            segment_bytes = max(4096, max_bytes // 4)
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.dropped = 0
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, bytes]] = deque()
        self._segments: list[tuple[int, Path]] = []  # (first number, path), oldest first
        self._sizes: dict[Path, int] = {}
        self._acked_above: set[int] = set()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._acked = self._read_acked()
            self._next = self._acked + 1
            self._recover()
            self._fh = None
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.dir}: {exc}; choose another --spool-dir") from exc

    # -- recovery ------------------------------------------------------------------

    def _read_acked(self) -> int:
        try:
            return int((self.dir / "acked").read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.warning("spool %s: unreadable 'acked' file; delivering everything again", self.dir)
            return 0

    def _recover(self) -> None:
        for path in sorted(self.dir.glob("seg-*.log")):
            try:
                first = int(path.stem[4:])
            except ValueError:
                continue
            records, good_bytes = _read_segment(path)
            size = path.stat().st_size
            if good_bytes < size:
                log.warning("spool %s: cutting a torn tail of %d bytes (a crash during a write)",
                            path.name, size - good_bytes)
                with path.open("r+b") as fh:
                    fh.truncate(good_bytes)
                    os.fsync(fh.fileno())
            if not records or records[-1][0] <= self._acked:
                path.unlink()  # everything in it was delivered
                continue
            self._segments.append((first, path))
            self._sizes[path] = good_bytes
            for number, payload in records:
                if number > self._acked:
                    self._pending.append((number, payload))
                self._next = max(self._next, number + 1)

    # -- the FIFO ------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Write one record durably and return its number (increasing, never reused)."""
        if len(payload) > MAX_RECORD:
            raise SpoolError(f"a spool record of {len(payload)} bytes exceeds {MAX_RECORD}")
        with self._lock:
            number = self._next
            self._next += 1
            record = HEADER.pack(len(payload), number, zlib.crc32(payload)) + payload
            fh = self._writer(number)
            try:
                fh.write(record)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise SpoolError(f"cannot write to spool {self.dir}: {exc}") from exc
            path = self._segments[-1][1]
            self._sizes[path] += len(record)
            self._pending.append((number, payload))
            self._enforce_bound()
            return number

    def _writer(self, number: int):  # noqa: ANN202 - a binary file object
        if self._fh is not None and self._sizes[self._segments[-1][1]] < self.segment_bytes:
            return self._fh
        if self._fh is not None:
            self._fh.close()
        path = self.dir / f"seg-{number:020d}.log"
        self._fh = path.open("ab")
        self._segments.append((number, path))
        self._sizes[path] = 0
        if self.fsync:
            _fsync_dir(self.dir)
        return self._fh

    def _enforce_bound(self) -> None:
        while len(self._segments) > 1 and sum(self._sizes.values()) > self.max_bytes:
            first, path = self._segments.pop(0)
            next_first = self._segments[0][0]
            lost = 0
            while self._pending and self._pending[0][0] < next_first:
                self._pending.popleft()
                lost += 1
            self._sizes.pop(path, None)
            path.unlink(missing_ok=True)
            self.dropped += lost
            self._acked = max(self._acked, next_first - 1)
            log.error("spool %s is full (%d bytes): dropped the oldest %d undelivered record(s) "
                      "(%d so far); raise --spool-max-bytes or fix the broker connection",
                      self.dir, self.max_bytes, lost, self.dropped)

    def pending(self, after: int = 0, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Undelivered records numbered above ``after``, oldest first."""
        with self._lock:
            out = []
            for number, payload in self._pending:
                if number > after:
                    out.append((number, payload))
                    if limit is not None and len(out) >= limit:
                        break
            return out

    def ack(self, number: int) -> None:
        """The broker has the record; once every older one is acked too, it leaves the disk."""
        self.ack_many([number])

    def ack_many(self, numbers: list[int]) -> None:
        """Several acks, one write of the ``acked`` file (a backlog drains at broker speed, not fsync speed)."""
        with self._lock:
            self._acked_above.update(numbers)
            advanced = False
            while self._pending and self._pending[0][0] in self._acked_above:
                n, _ = self._pending.popleft()
                self._acked_above.discard(n)
                self._acked = n
                advanced = True
            # records dropped while full may leave stale numbers behind
            self._acked_above = {n for n in self._acked_above if n > self._acked}
            if advanced:
                self._write_acked()
                self._delete_delivered_segments()

    def _write_acked(self) -> None:
        tmp = self.dir / "acked.tmp"
        with tmp.open("w") as fh:
            fh.write(str(self._acked))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "acked")

    def _delete_delivered_segments(self) -> None:
        upto = self._pending[0][0] if self._pending else self._next
        while len(self._segments) > 1 and self._segments[1][0] <= upto:
            _, path = self._segments.pop(0)
            self._sizes.pop(path, None)
            path.unlink(missing_ok=True)

    @property
    def depth(self) -> int:
        """Records written and not yet acknowledged by the broker."""
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _read_segment(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """Every intact record of a segment, and where the intact part ends."""
    data = path.read_bytes()
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        length, number, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[pos + HEADER.size:end]
        if zlib.crc32(payload) != crc:
            break
        out.append((number, payload))
        pos = end
    return out, pos


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
