"""What a user would run instead of the agent: the same network in a plain PyTorch eager loop.

The baseline the agent has to beat (issue 19): the S0 scorer rebuilt from
the checkpoint the agent's file was exported from (same network, same
weights), one torch thread, every message parsed with ``json.loads``,
per-stream windows of ``window`` rows (a ``deque``), every ``stride``-th
window collected into batches of ``batch`` and scored under
``torch.inference_mode()``, compared with the card's threshold. No
episodes, no sinks, no drift watch: the least a working loop does.

It runs as its own process (``python -m edgewatch.bench.torch_loop
CHECKPOINT MESSAGES.jsonl [BATCH]``, ``-`` for standard input) reading the
messages line by line, so its peak resident memory (``VmHWM``) is that of
a torch process doing the job, and prints one JSON line: messages,
windows, CPU seconds of the loop (model loaded and warmed up before),
peak RSS. Run whole (imports, model load and all), it is the plain
PyTorch script of the whole-process comparison
(:mod:`edgewatch.bench.whole_process`). Train/benchmark time only: imports
torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgewatch.errors import EdgewatchError


@dataclass
class TorchLoop:
    streams: int
    messages: int
    windows: int
    over: int  # windows over the threshold (proves the scores were used)
    cpu_seconds: float
    cpu_us_per_message: float
    max_rss_mib: float  # the process's VmHWM at the end
    model_cpu_us_per_window: float = 0.0  # inside the scorer calls only (tensor building excluded)
    batch: int = 64  # windows per scorer call


def run_loop(checkpoint: Path, messages: Path, window: int = 10, stride: int = 3, batch: int = 64) -> dict:
    """The loop itself (inside the child process); returns the figures as a dict."""
    import torch

    from edgewatch.models import scorer_from_checkpoint
    from edgewatch.train.checkpoint import card_from_fields, load_checkpoint

    torch.set_num_threads(1)
    ck = load_checkpoint(checkpoint)
    scorer = scorer_from_checkpoint(ck.family, ck.config, ck.state_dict, what=str(checkpoint)).eval()
    threshold = card_from_fields(ck.card_fields, "none").threshold
    with torch.inference_mode():
        scorer(torch.zeros(batch, window, len(ck.card_fields["features"])))  # warm-up, outside the timing
    windows: dict[object, deque] = {}
    counts: dict[object, int] = {}
    pending: list[list[list[float]]] = []
    n_messages = n_windows = over = 0
    model_cpu = 0.0

    def score() -> int:
        nonlocal model_cpu
        x = torch.tensor(pending, dtype=torch.float32)
        m0 = time.process_time()
        s, _ = scorer(x)
        model_cpu += time.process_time() - m0
        pending.clear()
        return int((s > threshold).sum())

    c0 = time.process_time()
    with torch.inference_mode(), _lines(messages) as fh:
        for line in fh:
            obj = json.loads(line)
            if isinstance(obj, dict):
                stream, values = obj.get("stream"), obj["values"]
            else:
                stream, values = None, obj
            rows = windows.get(stream)
            if rows is None:
                rows = windows[stream] = deque(maxlen=window)
            rows.append(values)
            n = counts[stream] = counts.get(stream, 0) + 1
            n_messages += 1
            if n >= window and (n - window) % stride == 0:
                pending.append(list(rows))
                n_windows += 1
                if len(pending) == batch:
                    over += score()
        if pending:
            over += score()
    cpu = time.process_time() - c0
    return {"streams": len(windows), "messages": n_messages, "windows": n_windows, "over": over,
            "cpu_seconds": cpu, "cpu_us_per_message": 1e6 * cpu / max(n_messages, 1),
            "max_rss_mib": _hwm_kib() / 1024, "model_cpu_us_per_window": 1e6 * model_cpu / max(n_windows, 1),
            "batch": batch}


def _lines(messages: Path) -> AbstractContextManager[IO[str]]:
    """The messages file, or standard input for ``-``."""
    return nullcontext(sys.stdin) if str(messages) == "-" else open(messages, encoding="utf-8")


def _hwm_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def write_messages(path: Path, items: list) -> Path:  # noqa: ANN001 - agent_load Items
    """The agent benchmark's raw JSON messages, one per line, for the loop to read."""
    with open(path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(item.payload + "\n")
    return path


def loop_command(checkpoint: Path, messages: Path | str, batch: int = 64) -> list[str]:
    return [sys.executable, "-m", "edgewatch.bench.torch_loop", str(checkpoint), str(messages), str(batch)]


def torch_loop(checkpoint: Path, messages: Path, batch: int = 64, timeout: float = 600.0) -> TorchLoop:
    """Run the loop in a child process on ``messages`` (JSONL), ``batch`` windows a call; its figures."""
    from edgewatch.bench.memory import drop_cached_libraries

    drop_cached_libraries()  # as for the agent's memory figures: the RSS ratio compares like with like
    proc = subprocess.run(loop_command(checkpoint, messages, batch), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise EdgewatchError(f"the PyTorch loop failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return TorchLoop(**json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":  # the child process of torch_loop() and of the whole-process comparison
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    print(json.dumps(run_loop(Path(sys.argv[1]), Path(sys.argv[2]), batch=batch)))
