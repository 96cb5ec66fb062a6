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
"""

from __future__ import annotations

import collections
import json
import os
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
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    count = 0
    for package in packages:
        for lib in (site / package).rglob("*.so*") if (site / package).is_dir() else ():
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


@dataclass
class AgentMemory:
    rows: int
    peak_rss_mib: float  # VmHWM: what /usr/bin/time -v reports as "Maximum resident set size"
    seconds: float
    messages: int
    sampled_rss_mib: float  # the largest smaps sample (a little under the true peak)
    file_backed_mib: float
    anonymous_mib: float  # [heap] + [anon] + [stack]
    by_mapping_mib: dict[str, float]  # the largest ten


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
                       (sum(peak.values()) - anon) / MIB, anon / MIB, {k: round(v / MIB, 1) for k, v in top})


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
