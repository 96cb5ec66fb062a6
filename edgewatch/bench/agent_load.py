"""The agent under load: throughput, streams per core, resident memory, message-to-alert delay.

* :func:`throughput`: raw JSON text items through :meth:`Agent.process`
  in batches of ``max_batch`` (what the run loop drains), so parsing,
  windowing, the one batched ONNX call, post-processing, episodes and
  the drift watch are all inside the figure; only socket I/O is not.
* :func:`streams_per_core`: from the measured CPU cost per message,
  ``streams = share / (rate * cost)``; :func:`paced_cpu_share` checks it
  with a paced run at that many 20 Hz streams.
* :func:`agent_rss`: ``edgewatch agent run`` as a subprocess on a CSV
  replay; its resident memory read from ``/proc/<pid>/status``.
* :func:`stream_memory`: resident memory per stream: a fresh process holds
  ``streams`` distinct streams (each past its first window, so windows,
  drift sample and post-process state exist), VmRSS before and after.
* :func:`alert_latency`: the simulator and the agent as two processes on
  loopback websocket; every alert line is timestamped when it arrives on
  the agent's stdout and compared with the send time carried in the
  message (the simulator's ``--with-time --send-time`` mode: the moment it was sent).

Runs without torch (the agent's own imports only).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import Item, Kind
from edgewatch.errors import EdgewatchError


class CountingSink:
    """Counts events and keeps nothing: the benchmark must not measure a terminal."""

    def __init__(self) -> None:
        self.events = 0

    def send(self, event: dict) -> None:
        self.events += 1

    def close(self) -> None:
        pass


def _rows(n: int, seed: int) -> np.ndarray:
    from edgewatch.data.simulator import Simulator

    return Simulator.nominal(n, seed=seed)


def raw_messages(n_messages: int, streams: int, seed: int = 0) -> list[Item]:
    """``n_messages`` raw JSON text items, round-robin over ``streams`` streams.

    One stream sends bare arrays (the stream is the source); several send
    ``{"stream": ..., "values": [...]}`` objects on one source, as a
    multiplexing gateway would.
    """
    per_stream = -(-n_messages // streams)
    rows = np.round(_rows(per_stream + streams, seed), 5).tolist()
    now = time.time()
    items = []
    for i in range(n_messages):
        s, k = i % streams, i // streams
        values = rows[k + s]  # streams are shifted copies of one signal
        if streams == 1:
            text = json.dumps(values, separators=(",", ":"))
        else:
            text = json.dumps({"stream": f"eq-{s}", "values": values}, separators=(",", ":"))
        items.append(Item(Kind.RAW, "bench", text, now))
    return items


@dataclass
class Throughput:
    streams: int
    messages: int
    windows: int
    seconds: float
    cpu_seconds: float
    messages_per_s: float
    cpu_us_per_message: float
    stride: int
    window: int
    model_cpu_us_per_window: float = 0.0  # CPU time inside the ONNX Runtime calls, per scored window


@contextmanager
def score_batch(windows: int | None) -> Iterator[None]:
    """The agent's windows per ONNX Runtime call set to ``windows`` for a while (None: unchanged).

    Only to reproduce an earlier agent beside today's in one run (the fp32
    agent scored 16 windows a call before issue 28): the agent itself has one
    batch size, ``edgewatch.agent.engine.SCORE_BATCH``.
    """
    from edgewatch.agent import engine

    previous = engine.SCORE_BATCH
    engine.SCORE_BATCH = windows or previous
    try:
        yield
    finally:
        engine.SCORE_BATCH = previous


def throughput(model_path: Path, streams: int, n_messages: int = 60_000, stride: int = 3,
               options: AgentOptions | None = None, windows_per_call: int | None = None,
               metrics: AgentMetrics | None = None) -> Throughput:
    """Messages per second through :meth:`Agent.process` for ``streams`` streams of raw JSON.

    ``windows_per_call``: score that many windows per ONNX Runtime call
    instead of the agent's own batch (see :func:`score_batch`). ``metrics``:
    the agent's metrics (default: exported, as the Agent makes them when
    given none).
    """
    return interleaved_agents({"one": (model_path, windows_per_call)}, streams, n_messages, stride, options,
                              metrics)["one"]


class _TimedAgent:
    """An agent on a model whose ONNX Runtime calls are timed (CPU), with its own windows per call."""

    def __init__(self, model_path: Path, stride: int, options: AgentOptions | None,
                 windows_per_call: int | None = None, metrics: AgentMetrics | None = None) -> None:
        model = ScoringModel(model_path)
        self.model_cpu = self.cpu = 0.0
        self.windows0 = 0
        self.windows_per_call = windows_per_call
        score_many = model.score_many

        def timed(samples: np.ndarray):  # noqa: ANN202 - the model's own call, timed
            c = time.process_time()
            try:
                return score_many(samples)
            finally:
                self.model_cpu += time.process_time() - c

        model.score_many = timed  # type: ignore[method-assign]
        opts = options or AgentOptions(agent_id="bench")
        opts.stride = stride
        self.agent = Agent(model, [CountingSink()], opts, metrics=metrics)

    def process(self, items: list[Item]) -> None:
        with score_batch(self.windows_per_call):
            c = time.process_time()
            self.agent.process(items)
            self.cpu += time.process_time() - c

    def reset(self) -> None:
        self.cpu = self.model_cpu = 0.0
        self.windows0 = self.agent.summary.windows

    def result(self, streams: int, messages: int, seconds: float) -> Throughput:
        windows = self.agent.summary.windows - self.windows0
        return Throughput(streams, messages, windows, seconds, self.cpu, messages / seconds,
                          1e6 * self.cpu / messages, self.agent.stride, self.agent.window,
                          1e6 * self.model_cpu / max(windows, 1))


def interleaved_agents(models: dict[str, tuple[Path, int | None]], streams: int, n_messages: int = 60_000,
                       stride: int = 3, options: AgentOptions | None = None,
                       metrics: AgentMetrics | None = None) -> dict[str, Throughput]:
    """Several agents (model file, windows per call) on the same messages, in turns batch by batch.

    Why turns: on a shared machine the speed moves by 15 % from one second
    to the next; agents that take turns every drained batch (the order
    alternating) see the same machine, so their ratio holds where whole runs
    one after the other did not (measured: 1.00x to 1.29x between rounds).
    ``metrics`` is for one agent only (a Prometheus registry takes each
    series once).
    """
    if metrics is not None and len(models) > 1:
        raise ValueError("one AgentMetrics serves one agent: give metrics with a single model")
    timed = {name: _TimedAgent(path, stride, options and dataclasses.replace(options), per_call, metrics)
             for name, (path, per_call) in models.items()}
    batch = next(iter(timed.values())).agent.options.max_batch
    warm = raw_messages(max(20 * streams, 2048), streams, seed=1)
    items = raw_messages(n_messages, streams, seed=2)
    for t in timed.values():
        for lo in range(0, len(warm), batch):
            t.process(warm[lo:lo + batch])
        t.reset()
    order = list(timed.values())
    t0 = time.perf_counter()
    for k, lo in enumerate(range(0, len(items), batch)):
        for t in order if k % 2 == 0 else order[::-1]:
            t.process(items[lo:lo + batch])
    seconds = (time.perf_counter() - t0) / len(timed)
    return {name: t.result(streams, len(items), seconds) for name, t in timed.items()}


def streams_per_core(cpu_us_per_message: float, rate_hz: float = 20.0, cpu_share: float = 0.5) -> int:
    """Streams at ``rate_hz`` that one core holds at ``cpu_share`` of its time."""
    return int(cpu_share / (rate_hz * cpu_us_per_message * 1e-6))


@dataclass
class PacedRun:
    streams: int
    rate_hz: float
    seconds: float
    cpu_share: float  # process CPU seconds over wall seconds
    late_ticks: int  # ticks whose messages were still being processed when the next was due
    ticks: int


def paced_cpu_share(model_path: Path, streams: int, rate_hz: float = 20.0, seconds: float = 5.0,
                    stride: int = 3) -> PacedRun:
    """Feed ``streams`` streams at ``rate_hz`` in real time and measure the CPU share used."""
    model = ScoringModel(model_path)
    agent = Agent(model, [CountingSink()], AgentOptions(agent_id="bench", stride=stride))
    n_ticks = max(1, int(seconds * rate_hz))
    distinct = min(n_ticks, 40)  # a few distinct ticks, reused: building text is not what we measure
    ticks = [raw_messages(streams, streams, seed=100 + i) for i in range(distinct)]
    batch = agent.options.max_batch
    period = 1.0 / rate_hz
    late = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n_ticks):
        items = ticks[i % distinct]
        for lo in range(0, len(items), batch):
            agent.process(items[lo:lo + batch])
        delay = t0 + (i + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
    wall = time.perf_counter() - t0
    return PacedRun(streams, rate_hz, wall, (time.process_time() - c0) / wall, late, n_ticks)


# -- subprocesses ------------------------------------------------------------------------


def edgewatch_command() -> list[str]:
    """The ``edgewatch`` console script beside this Python, else ``python -m edgewatch.cli``."""
    script = Path(sys.executable).with_name("edgewatch")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgewatch.cli"]


def _status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maps_mention(pid: int, word: str) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return any(word in line for line in fh)
    except OSError:
        return False


@dataclass
class MemoryWatch:
    """Resident memory of a process, sampled until it ends."""

    pid: int
    interval: float = 0.05
    max_rss_kib: int = 0
    hwm_kib: int = 0
    samples: int = 0
    torch_mapped: bool = False
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> MemoryWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _status_kib(self.pid, "VmRSS")
            if rss is None:
                return
            self.max_rss_kib = max(self.max_rss_kib, rss)
            self.hwm_kib = max(self.hwm_kib, _status_kib(self.pid, "VmHWM") or 0)
            if self.samples % 20 == 0:
                self.torch_mapped = self.torch_mapped or _maps_mention(self.pid, "libtorch")
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2.0)


def run_watched(cmd: list[str], what: str, timeout: float, stdin: Path | None = None) -> tuple[str, MemoryWatch]:
    """Run ``cmd`` to its end (``stdin`` a file, else nothing) while a :class:`MemoryWatch` samples it.

    Returns its stdout and the watch. ``what`` names the run in the
    EdgewatchError raised when it outlasts ``timeout`` (it is killed) or
    exits non-zero (with the end of its stderr): a benchmark that measured
    a failed run would report the failure's memory and time.
    """
    with open(stdin, "rb") if stdin is not None else open(os.devnull, "rb") as fh:
        proc = subprocess.Popen(cmd, stdin=fh, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watch = MemoryWatch(proc.pid).start()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise EdgewatchError(f"{what} did not finish in {timeout:.0f} s") from None
        finally:
            watch.stop()
    if proc.returncode != 0:
        raise EdgewatchError(f"{what} failed (exit {proc.returncode}): {err.decode(errors='replace').strip()[-500:]}")
    return out.decode(errors="replace"), watch


@dataclass
class Rss:
    max_rss_mib: float  # largest sampled VmRSS
    hwm_mib: float  # the kernel's peak (VmHWM) at the last sample
    samples: int
    seconds: float
    messages: int
    torch_mapped: bool  # libtorch in the agent's memory map (must be False)


def agent_rss(model_path: Path, rows: int = 20_000, rate: float = 4000.0, timeout: float = 120.0) -> Rss:
    """Peak resident memory of ``edgewatch agent run`` replaying ``rows`` rows at ``rate`` per second."""
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        csv_path = Path(tmp) / "replay.csv"
        data = _rows(rows, seed=3)
        header = "cpu,memory,traffic,fan"
        np.savetxt(csv_path, data, delimiter=",", header=header, comments="", fmt="%.5f")
        summary = Path(tmp) / "summary.json"
        from edgewatch.bench.memory import drop_cached_libraries

        drop_cached_libraries()  # see edgewatch.bench.memory: cached library pages inflate RSS
        cmd = edgewatch_command() + ["agent", "run", "--model", str(model_path),
                                     "--source", f"replay:{csv_path}?rate={rate:g}",
                                     "--sink", f"jsonl:{Path(tmp) / 'alerts.jsonl'}",
                                     "--spool-dir", str(Path(tmp) / "spool"),
                                     "--summary-json", str(summary), "-q"]
        t0 = time.perf_counter()
        _, watch = run_watched(cmd, f"edgewatch agent run replaying {rows} rows", timeout)
        messages = json.loads(summary.read_text())["messages"]
        return Rss(watch.max_rss_kib / 1024, watch.hwm_kib / 1024, watch.samples, time.perf_counter() - t0,
                   messages, watch.torch_mapped)


@dataclass
class StreamMemory:
    streams: int
    rows_per_stream: int
    rss_before_mib: float  # after 200 warm-up streams
    rss_after_mib: float
    kib_per_stream: float  # measured
    estimate_kib: float  # ModelRuntime.stream_bytes(), what sizes the default --max-streams
    default_max_streams: int


def _stream_memory_here(model_path: str, streams: int, rows_per_stream: int | None) -> StreamMemory:
    import gc

    from edgewatch.agent.runtime import load_runtime

    runtime = load_runtime(model_path)
    agent = Agent(runtime, [CountingSink()], AgentOptions(agent_id="bench", max_streams=streams + 200))
    rows = rows_per_stream or runtime.window + 3 * runtime.stride
    row = _rows(rows, seed=4).round(5)[:, : runtime.card.n_features].tolist()

    def feed(lo: int, hi: int) -> None:
        items = [Item(Kind.RAW, "bench", json.dumps({"stream": f"s{i}", "values": row[k]}), 0.0)
                 for k in range(rows) for i in range(lo, hi)]
        for at in range(0, len(items), 1024):
            agent.process(items[at:at + 1024])

    feed(0, 200)
    gc.collect()
    before = (_status_kib(os.getpid(), "VmRSS") or 0) / 1024
    feed(200, 200 + streams)
    gc.collect()
    after = (_status_kib(os.getpid(), "VmRSS") or 0) / 1024
    return StreamMemory(streams, rows, before, after, 1024 * (after - before) / streams,
                        runtime.stream_bytes() / 1024, runtime.default_max_streams())


def stream_memory(model_path: Path, streams: int = 5000, rows_per_stream: int | None = None,
                  timeout: float = 300.0) -> StreamMemory:
    """Resident memory per stream of ``model_path``, measured in a fresh Python process."""
    code = ("import json, dataclasses, sys; from edgewatch.bench.agent_load import _stream_memory_here; "
            f"r = _stream_memory_here({str(model_path)!r}, {int(streams)}, {rows_per_stream!r}); "
            "print(json.dumps(dataclasses.asdict(r)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise EdgewatchError(f"stream memory run failed: {proc.stderr.strip()[-500:]}")
    return StreamMemory(**json.loads(proc.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nominal_median_threshold(model_path: Path, rows: int = 3000) -> float:
    """The median score of the model on nominal simulator data: half the windows cross it."""
    model = ScoringModel(model_path)
    w = model.card.window
    data = _rows(rows, seed=0).astype(np.float32)
    windows = np.stack([data[i - w:i] for i in range(w, len(data) + 1, 3)])
    return float(np.median(model.score_many(windows).scores))


@dataclass
class Latency:
    rate_hz: float
    seconds: float
    events: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    threshold: float
    agent_max_rss_mib: float
    messages: int


def alert_latency(model_path: Path, rate: float = 1000.0, seconds: float = 10.0, warmup: float = 1.0,
                  threshold: float | None = None) -> Latency:
    """Message-to-alert delay over loopback websocket, simulator and agent as separate processes.

    The agent runs with ``k=1, n=1`` and a threshold at the median nominal
    score, so that about every other scored window opens or closes an
    episode and the alert it raises belongs to the message that completed
    that window: the delay is then send time (in the message) to the
    moment the alert line arrives here. Events from the first ``warmup``
    seconds (connection set-up) are left out.
    """
    threshold = nominal_median_threshold(model_path) if threshold is None else threshold
    port = free_port()
    # --send-time: ts is when the simulator sends a message, so its own lateness is not counted
    sim = subprocess.Popen(edgewatch_command() + ["simulate", "--port", str(port), "--rate", f"{rate:g}", "--with-time",
                                                  "--send-time", "--duration", f"{seconds + warmup + 5:g}", "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    agent = None
    try:
        line = sim.stdout.readline() if sim.stdout else ""
        if "listening" not in line:
            raise EdgewatchError(f"the simulator did not start (said {line.strip()!r})")
        with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
            agent = subprocess.Popen(
                edgewatch_command() + ["agent", "run", "--model", str(model_path),
                                       "--source", f"ws://127.0.0.1:{port}/", "--sink", "stdout",
                                       "--k", "1", "--n", "1", "--threshold", repr(threshold),
                                       "--duration", f"{seconds + warmup:g}", "--spool-dir", str(Path(tmp) / "spool"),
                                       "--summary-json", str(Path(tmp) / "summary.json"), "-q"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
            watch = MemoryWatch(agent.pid, interval=0.2).start()
            delays: list[float] = []
            t_start = None
            assert agent.stdout is not None
            for line in agent.stdout:
                arrived = time.time()
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") not in ("start", "end") or event.get("ts") is None:
                    continue
                if t_start is None:
                    t_start = arrived
                if arrived - t_start >= warmup:
                    delays.append(arrived - float(event["ts"]))
            agent.wait(timeout=30)
            watch.stop()
            err = agent.stderr.read() if agent.stderr else ""
            if agent.returncode != 0:
                raise EdgewatchError(f"the agent failed (exit {agent.returncode}): {err.strip()[-500:]}")
            summary = json.loads((Path(tmp) / "summary.json").read_text())
    finally:
        for proc in (agent, sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if not delays:
        raise EdgewatchError("no alerts arrived during the latency run: is the threshold too high?")
    d = np.asarray(delays) * 1e3
    p50, p90, p99 = np.percentile(d, [50, 90, 99])
    return Latency(rate, seconds, len(d), float(p50), float(p90), float(p99), float(d.max()), threshold,
                   watch.max_rss_kib / 1024, int(summary["messages"]))


def machine() -> dict[str, object]:
    """What the figures were measured on: CPU model, its int8 kernel path, cores, library versions, load."""
    import platform

    import onnxruntime

    from edgewatch.agent.isolation import int8_kernel_path

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, object] = {"cpu": cpu, "int8_path": int8_kernel_path(), "cores": os.cpu_count(),
                               "python": platform.python_version(),
                               "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                               "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info
