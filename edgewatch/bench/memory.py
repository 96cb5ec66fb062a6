"""Where the agent's resident memory goes, and how soon it scores after start.

:func:`agent_memory` runs ``edgewatch agent run`` on a CSV replay at full
speed and reports its peak resident memory as ``/usr/bin/time -v`` does (the
kernel's peak, ``VmHWM``, read until the process ends: its ``ru_maxrss``
would count the pages of the forking parent too), and the largest sample of
``/proc/PID/smaps`` split by mapping: each shared library, ``[heap]``
(malloc's main arena), ``[anon]`` (Python's object arenas, other malloc
arenas, ONNX Runtime's buffers). File-backed pages are clean and shared:
the kernel can drop and re-read them under pressure; anonymous pages stay.

:func:`first_score_latency` is the time from starting the process to its
first scored window (a threshold of zero makes that window an alert).
Linux only (``/proc``).

Before each measurement :func:`drop_cached_libraries` takes this
environment's library files out of the page cache: when a process touches
a library page, the kernel maps the neighbouring pages too if they are
cached (fault-around), and those count in its RSS. Measured with the
shipped S0 model on a 200,000-row replay: 83.6 MiB after the test suite
had run (its ORT pages all cached; ``onnxruntime_pybind11_state.so`` alone
27.8 MiB resident), 70.1 MiB after dropping them, 70.3 MiB run again right
after. A box that runs only the agent caches only what the agent touches.

The drop cannot take out pages that another process maps (a CI run, other
agents), and how much a fault maps depends on the size of the page-cache
folio it lands in. Measured on the Zen 5 EPYC (Linux 6.18, the same agent
and library bytes): 86.2 MiB peak with the environment's libraries, whose
pages stayed cached as 1 MiB folios (two other processes mapped them; how
they came to be 1 MiB was not established), and ORT's library 27.0 MiB
resident, 26 whole 1 MiB folios; 73.0 MiB with fresh copies of onnxruntime
and numpy read in from disk by the agent (16 KiB folios; ORT 21.1 MiB,
as on the Zen 3 with a cold cache); a copy left cached by ``cp`` (64 KiB
folios, the fault-around window) also gave ORT 21.1 MiB. Anonymous memory
was 33.5 MiB in every case, and after the agent had started it referenced
about 2 MiB of ORT's pages. So the report splits the peak: anonymous
memory is the agent's own; file-backed memory is the kernel's mapping of
clean library pages, and :func:`library_cache_kib` and
:func:`large_folio_kib` say how much of it the page cache's state decided.
"""

from __future__ import annotations

import collections
import ctypes
import json
import mmap
import os
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.bench.agent_load import edgewatch_command
from edgewatch.errors import EdgewatchError

MIB = 1024.0
LIBRARY_PACKAGES = ("onnxruntime", "numpy", "numpy.libs", "torch", "torch.libs", "scipy", "scipy.libs")


def drop_cached_libraries(packages: tuple[str, ...] = LIBRARY_PACKAGES) -> int:
    """Drop the shared libraries of these installed packages from the page cache; returns how many files.

    ``posix_fadvise(DONTNEED)`` on this environment's own files: clean pages
    only, read again from disk when next used; nothing else changes.
    """
    count = 0
    for lib in library_files(packages):
        try:
            fd = os.open(lib, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def library_files(packages: tuple[str, ...] = LIBRARY_PACKAGES) -> list[Path]:
    """The shared-library files of these installed packages."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    return [lib for package in packages if (site / package).is_dir() for lib in (site / package).rglob("*.so*")]


def library_cache_kib(files: list[Path]) -> tuple[int, int]:
    """(KiB of these files in the page cache, their total KiB), from ``mincore`` on a mapping of each.

    After :func:`drop_cached_libraries` this is what the drop could not take
    out (pages some other process maps). Mapping a file and asking
    ``mincore`` reads none of it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    page = mmap.PAGESIZE
    cached = total = 0
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                continue
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                continue
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(addr, size, vec) == 0:
                    cached += sum(v & 1 for v in vec) * page
                    total += size
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    return cached // 1024, total // 1024


_KPF_COMPOUND = (1 << 15) | (1 << 16)  # head or tail page of a large folio (/proc/kpageflags)


def large_folio_kib(pid: int) -> int | None:
    """KiB of a process's resident file-backed pages that belong to large page-cache folios.

    From ``/proc/PID/pagemap`` (the frame of each mapped page) and
    ``/proc/kpageflags``; both need root (CAP_SYS_ADMIN). None when they
    cannot be read: the report then says nothing about folios.
    """
    ranges = []
    try:
        with open(f"/proc/{pid}/maps") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/"):
                    start, end = (int(v, 16) for v in parts[0].split("-"))
                    ranges.append((start, end))
        page = mmap.PAGESIZE
        large = 0
        seen_frame = False
        with open(f"/proc/{pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            for start, end in ranges:
                pm.seek(start // page * 8)
                data = pm.read((end - start) // page * 8)
                for (entry,) in struct.iter_unpack("<Q", data):
                    if not entry >> 63:  # not present
                        continue
                    frame = entry & ((1 << 55) - 1)
                    if frame == 0:
                        continue  # frames hidden (no CAP_SYS_ADMIN)
                    seen_frame = True
                    kf.seek(frame * 8)
                    (flags,) = struct.unpack("<Q", kf.read(8))
                    large += page if flags & _KPF_COMPOUND else 0
    except (OSError, ValueError, struct.error):
        return None
    return large // 1024 if seen_frame else None


def smaps_by_mapping(pid: int) -> dict[str, int]:
    """Resident KiB of a process by mapping: a library's file name, ``[heap]``, ``[anon]``, ``[stack]``."""
    out: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):  # a mapping's header: address perms offset dev inode [path]
                parts = line.split()
                path = parts[5] if len(parts) >= 6 else "[anon]"
                name = os.path.basename(path) if path.startswith("/") else path
            elif head == "Rss:":
                out[name] += int(line.split()[1])
    return dict(out)


@dataclass
class _SmapsWatch:
    pid: int
    interval: float = 0.2
    peak: dict[str, int] = field(default_factory=dict)
    hwm_kib: int = 0
    large_folio_kib: int | None = None  # at a peak sample (at most one reading a second: it is slow)
    _folios_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with open(f"/proc/{self.pid}/status") as fh:
                    hwm = next(int(x.split()[1]) for x in fh if x.startswith("VmHWM:"))
                now = smaps_by_mapping(self.pid)
            except (OSError, ValueError, IndexError, StopIteration):
                return
            self.hwm_kib = max(self.hwm_kib, hwm)
            if sum(now.values()) > sum(self.peak.values()):
                self.peak = now
                if time.monotonic() - self._folios_at >= 1.0:
                    self.large_folio_kib = large_folio_kib(self.pid)
                    self._folios_at = time.monotonic()


@dataclass
class AgentMemory:
    rows: int
    peak_rss_mib: float  # VmHWM: what /usr/bin/time -v reports as "Maximum resident set size"
    seconds: float
    messages: int
    sampled_rss_mib: float  # the largest smaps sample (a little under the true peak)
    file_backed_mib: float
    anonymous_mib: float  # [heap] + [anon] + [stack]: the agent's own
    by_mapping_mib: dict[str, float]  # the largest ten
    # of the file-backed memory, how much lay in large page-cache folios (None: needs root)
    large_folio_mib: float | None = None
    libraries_cached_mib: float = 0.0  # the libraries' pages still cached after the drop (others map them)
    libraries_mib: float = 0.0  # the libraries' files in all


def replay_csv(path: Path, rows: int, seed: int = 3) -> Path:
    """Nominal simulator rows (the S0 features) as a replay file."""
    from edgewatch.data.simulator import Simulator

    data = Simulator.nominal(rows, seed=seed)
    np.savetxt(path, data, delimiter=",", header="cpu,memory,traffic,fan", comments="", fmt="%.5f")
    return path


def agent_memory(model_path: Path, rows: int, timeout: float = 900.0) -> AgentMemory:
    """Peak resident memory of an agent replaying ``rows`` nominal rows as fast as it can."""
    with tempfile.TemporaryDirectory(prefix="edgewatch-mem-") as tmp:
        csv_path = replay_csv(Path(tmp) / "replay.csv", rows)
        summary = Path(tmp) / "summary.json"
        drop_cached_libraries()
        cached_kib, libraries_kib = library_cache_kib(library_files())
        cmd = edgewatch_command() + ["agent", "run", "--model", str(model_path), "--source", f"replay:{csv_path}",
                                     "--sink", f"jsonl:{Path(tmp) / 'alerts.jsonl'}", "--spool-dir",
                                     str(Path(tmp) / "spool"), "--summary-json", str(summary), "-q"]
        t0 = time.perf_counter()
        with open(Path(tmp) / "stderr", "w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            watch = _SmapsWatch(proc.pid)
            thread = threading.Thread(target=watch.run, daemon=True)
            thread.start()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise EdgewatchError(f"the agent did not replay {rows} rows in {timeout:.0f} s") from None
            finally:
                watch._stop.set()
            thread.join(2.0)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                err.seek(0)
                raise EdgewatchError(f"edgewatch agent run failed (exit {proc.returncode}): {err.read()[-500:]}")
        messages = json.loads(summary.read_text())["messages"]
    peak = watch.peak
    anon = sum(v for k, v in peak.items() if k.startswith("["))
    top = sorted(peak.items(), key=lambda kv: -kv[1])[:10]
    return AgentMemory(rows, watch.hwm_kib / MIB, seconds, messages, sum(peak.values()) / MIB,
                       (sum(peak.values()) - anon) / MIB, anon / MIB, {k: round(v / MIB, 1) for k, v in top},
                       None if watch.large_folio_kib is None else watch.large_folio_kib / MIB,
                       cached_kib / MIB, libraries_kib / MIB)


def first_score_latency(model_path: Path, rows: int = 2000) -> float:
    """Seconds from starting ``edgewatch agent run`` to its first scored window (seen as an alert)."""
    with tempfile.TemporaryDirectory(prefix="edgewatch-first-") as tmp:
        csv_path = replay_csv(Path(tmp) / "replay.csv", rows)
        cmd = edgewatch_command() + ["agent", "run", "--model", str(model_path), "--source", f"replay:{csv_path}",
                                     "--threshold", "0", "--k", "1", "--n", "1", "--sink", "stdout",
                                     "--spool-dir", str(Path(tmp) / "spool"), "-q"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            elapsed = time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()
        if not line.startswith("{"):
            raise EdgewatchError("the agent scored no window (no alert at threshold 0)")
        return elapsed
