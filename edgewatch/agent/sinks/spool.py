"""An on-disk FIFO of alert records that survives a dead broker and a killed agent.

Layout of a spool directory::

    seg-00000000000000000001.log   append-only segments, named by their first record's number
    seg-00000000000000000412.log
    acked                          the highest record number the broker acknowledged (atomic rename)

A record is ``<length u32><number u64><crc32 u32>`` followed by ``length``
payload bytes. Every append is written before :meth:`Spool.append` returns,
so an alert that the agent emitted is in the file even if the process is
killed the next instant; it is fsynced there too, or, for an append with
``sync=False`` (the agent's loop writing one iteration's alerts), by the
:meth:`Spool.sync` that ends the group: one fsync for all of them instead
of one each (an SD card takes 5-10 ms a sync: 2,500 episodes ended at a
model swap held scoring 12-25 s). A record is handed out for delivery
(:meth:`Spool.pending`) only once it was synced, so nothing reaches a broker
that a power cut could then take out of the spool. On open, a torn or corrupt tail (a crash in the middle
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

When the disk refuses a write (full, read-only, an I/O error), the record is
not lost: it waits in a bounded queue in memory (``memory_max_bytes``) behind
any others that wait there, is deliverable from there like any pending record,
and is written to disk, in order, by :meth:`Spool.flush` once the disk takes
writes again (a partly written record is cut off first). Only a record that
finds that queue full is dropped and counted; it is the newest that goes,
because older ones may already be in the broker client's hands, and counting
one of those as lost could be wrong. What is still in memory at
:meth:`Spool.close` is counted as dropped too. Failures are logged at most
once a minute, without a traceback.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from pathlib import Path

from edgewatch.errors import EdgewatchError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IQI")
MAX_RECORD = 16 * 2**20
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_SEGMENT_BYTES = 1 * 2**20
DEFAULT_MEMORY_BYTES = 4 * 2**20  # ~8,000 alerts of ~500 bytes
LOG_INTERVAL = 60.0
RETRY_MIN, RETRY_MAX = 0.25, 5.0  # seconds between attempts to write to a disk that refused


class SpoolError(EdgewatchError):
    """The spool directory cannot be opened (permissions, a file in its place): choose another --spool-dir.

    A disk that refuses writes later is no SpoolError: records then wait in memory (see the module docstring).
    """


class Spool:
    """Durable FIFO: ``append`` → ``pending`` → ``ack``; thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: bool = True,
                 memory_max_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if max_bytes < 2 * segment_bytes:
            segment_bytes = max(4096, max_bytes // 4)
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.memory_max_bytes = memory_max_bytes
        self.dropped = 0  # records lost this run: old segments of a full spool, no room in memory, left in memory
        self.write_error: str | None = None  # why the disk refused the last write; None while it takes them
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, bytes]] = deque()
        self._unwritten: deque[tuple[int, bytes]] = deque()  # pending records the disk has not taken yet
        self._unwritten_bytes = 0
        self._segments: list[tuple[int, Path]] = []  # (first number, path), oldest first
        self._sizes: dict[Path, int] = {}
        self._acked_above: set[int] = set()
        self._acked_saved = True  # the "acked" file holds self._acked
        self._unsynced_from: int | None = None  # the first record written without its fsync (None: all synced)
        self._retry_at = 0.0
        self._retry_delay = RETRY_MIN
        self._logged: dict[str, float] = {}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._acked = self._read_acked()
            self._next = self._acked + 1
            self._recover()
            self._fd: int | None = None
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

    def append(self, payload: bytes, sync: bool = True) -> int | None:
        """Write one record durably and return its number (increasing, never reused).

        When the disk refuses it, the record waits in memory (see the module
        docstring); None when it had to be dropped because that was full.
        ``sync=False`` leaves its fsync to the next :meth:`sync` (or to the
        next append with ``sync=True``); it is not :meth:`pending` until then.
        """
        if len(payload) > MAX_RECORD:
            raise SpoolError(f"a spool record of {len(payload)} bytes exceeds {MAX_RECORD}")
        with self._lock:
            number = self._next
            self._next += 1
            if self._unwritten:  # before dropping, the disk gets a try whatever the backoff says
                self._flush_locked(force=self._unwritten_bytes + len(payload) > self.memory_max_bytes)
            if not self._unwritten and self._write(number, payload, sync):
                self._pending.append((number, payload))
                self._enforce_bound()
                return number
            if self._unwritten_bytes + len(payload) > self.memory_max_bytes:
                self.dropped += 1
                self._log_at_most_each_minute(
                    "drop", logging.ERROR, "spool %s cannot be written (%s) and the %d alert(s) waiting in memory "
                    "fill its %d bytes: dropped a new one (%d dropped so far); free disk space or choose another "
                    "--spool-dir", self.dir, self.write_error, len(self._unwritten), self.memory_max_bytes,
                    self.dropped)
                return None
            self._unwritten.append((number, payload))
            self._unwritten_bytes += len(payload)
            self._pending.append((number, payload))
            return number

    def flush(self) -> bool:
        """Write what waits in memory to disk, in order; True when the disk takes writes and nothing waits.

        After a refusal the disk is tried again only after a backoff (0.25 s
        doubling to 5 s), so that callers may call this as often as they like.
        When the records that waited were delivered from memory meanwhile, the
        try is the write of the ``acked`` file.
        """
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self, force: bool = False) -> bool:
        if self.write_error is None and not self._unwritten:
            if not self._acked_saved:
                self._save_acked()
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        if not self._unwritten:
            try:
                self._write_acked()
            except OSError as exc:
                self._refused(exc)
                return False
            self._acked_saved = True
            self._writable_again()
            return True
        written = 0
        while self._unwritten:
            number, payload = self._unwritten[0]
            if not self._write(number, payload):
                return False
            self._unwritten.popleft()
            self._unwritten_bytes -= len(payload)
            written += 1
        self._enforce_bound()
        log.info("spool %s: %d alert(s) that waited in memory are on disk now", self.dir, written)
        return True

    def _write(self, number: int, payload: bytes, sync: bool = True) -> bool:
        """Append one record to the current segment; False (and nothing half-written left) when the disk refuses."""
        record = HEADER.pack(len(payload), number, zlib.crc32(payload)) + payload
        try:
            fd = self._writer(number)
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync and sync:
                os.fsync(fd)
                self._unsynced_from = None  # one fsync covers the file's earlier writes too
            elif self.fsync and self._unsynced_from is None:
                self._unsynced_from = number
        except OSError as exc:
            self._cut_partial_record()
            self._refused(exc)
            return False
        self._sizes[self._segments[-1][1]] += len(record)
        self._writable_again()
        return True

    def _writable_again(self) -> None:
        if self.write_error is not None:
            log.warning("spool %s: the disk takes writes again", self.dir)
        self.write_error = None
        self._retry_delay = RETRY_MIN

    def _cut_partial_record(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._sizes[self._segments[-1][1]])
        except OSError as exc:  # at the next start, the torn tail is cut on open
            log.debug("spool %s: cannot cut a partial record: %s", self.dir, exc)

    def _refused(self, exc: OSError) -> None:
        first = self.write_error is None
        self.write_error = exc.strerror or str(exc)
        if not first:
            self._retry_delay = min(RETRY_MAX, self._retry_delay * 2)
        self._retry_at = time.monotonic() + self._retry_delay
        self._log_at_most_each_minute(
            "write", logging.ERROR, "spool %s cannot be written: %s; alerts wait in memory (at most %d bytes) and "
            "go to disk when it takes writes again", self.dir, self.write_error, self.memory_max_bytes)

    def _log_at_most_each_minute(self, key: str, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._logged.get(key)
        if last is None or now - last >= LOG_INTERVAL:
            self._logged[key] = now
            log.log(level, msg + " (logged at most once a minute)", *args)

    def _writer(self, number: int) -> int:
        """The file descriptor of the segment to append to (a new one when the current one is full)."""
        if self._fd is not None and self._sizes[self._segments[-1][1]] < self.segment_bytes:
            return self._fd
        if self._fd is not None and self._unsynced_from is not None:  # the segment it leaves: synced first
            os.fsync(self._fd)
            self._unsynced_from = None
        path = self.dir / f"seg-{number:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if self.fsync:
                _fsync_dir(self.dir)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._segments.append((number, path))
        self._sizes[path] = 0
        return fd

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
                      "(%d so far); raise --spool-max-mb or fix the broker connection",
                      self.dir, self.max_bytes, lost, self.dropped)

    def sync(self) -> bool:
        """One fsync for every record appended with ``sync=False`` since the last; they are :meth:`pending` now.

        False when the disk refused it: the records are then delivered from
        memory, as those of a disk that refuses writes are (logged).
        """
        with self._lock:
            if self._unsynced_from is None:
                return True
            self._unsynced_from = None
            try:
                if self._fd is not None:
                    os.fsync(self._fd)
            except OSError as exc:
                self._refused(exc)
                return False
            return True

    def pending(self, after: int = 0, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Undelivered records numbered above ``after``, oldest first; not those still waiting for their fsync."""
        with self._lock:
            out = []
            below = self._unsynced_from
            for number, payload in self._pending:
                if below is not None and number >= below:
                    break
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
            while self._unwritten and self._unwritten[0][0] <= self._acked:  # delivered from memory
                self._unwritten_bytes -= len(self._unwritten.popleft()[1])
            if advanced:
                self._delete_delivered_segments()  # first: it frees the space the "acked" file may need
                self._save_acked()

    def _save_acked(self) -> None:
        """Record the acked number on disk; when the disk refuses, keep it in memory and try again later
        (a crash meanwhile only delivers those records once more)."""
        try:
            self._write_acked()
            self._acked_saved = True
        except OSError as exc:
            self._acked_saved = False
            self._log_at_most_each_minute("acked", logging.WARNING, "spool %s: cannot record delivered alerts: "
                                          "%s; retrying (a restart meanwhile sends some again)", self.dir,
                                          exc.strerror or exc)

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
        """Records not yet acknowledged by the broker (on disk or waiting in memory)."""
        return len(self._pending)

    @property
    def in_memory(self) -> int:
        """Records the disk has not taken yet."""
        return len(self._unwritten)

    @property
    def writable(self) -> bool:
        """False while the disk refuses writes or records wait in memory for it."""
        return self.write_error is None and not self._unwritten

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    def close(self) -> None:
        """Write what waits in memory if the disk takes it now; what it does not take is lost, and counted."""
        self.sync()
        with self._lock:
            self._flush_locked(force=True)
            if self._unwritten:
                lost = len(self._unwritten)
                self.dropped += lost
                log.error("spool %s: %d alert(s) never reached the disk (%s) and are lost with this process",
                          self.dir, lost, self.write_error)
                for _ in range(lost):  # the newest pending records: they are not pending any more
                    self._pending.pop()
                self._unwritten.clear()
                self._unwritten_bytes = 0
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


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


class SpooledSender:
    """For a sink whose own thread sends what it spools (MQTT, the HTTP sinks): the agent's loop groups the records
    of one iteration (``begin_group``/``end_group``) so they share one fsync.

    Why the sender waits for the group: a record is handed on only once it
    is on disk, so a delivered alert was always kept first. The class using
    it has ``spool`` (a :class:`Spool`) and ``_wake`` (the sender's event).
    """

    spool: Spool
    _wake: threading.Event
    _grouped = False  # between begin_group and end_group: appends wait for the group's one fsync

    def _spooled(self, record: bytes) -> None:
        """Keep one record: synced now, or with its group; the sender is woken once it is on disk."""
        self.spool.append(record, sync=not self._grouped)
        if not self._grouped:
            self._wake.set()

    def begin_group(self) -> None:
        """The agent's loop starts an iteration: what it sends is synced once, at :meth:`end_group`."""
        self._grouped = True

    def end_group(self) -> None:
        """One fsync for the iteration's records; then they are on disk and the sender may send them."""
        self._grouped = False
        self.spool.sync()
        self._wake.set()
