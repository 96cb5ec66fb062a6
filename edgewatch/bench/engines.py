"""One model, three engines: callables to time, and a noise-resistant way to compare them.

The machines these run on are shared, so absolute times move by 2×; what
holds is a *ratio measured in one run*. :func:`interleaved_medians` times
the engines in turns (A, B, C, A, B, C ...) so that a slow spell of the
machine hits all of them alike, and keeps the median of the rounds. It
counts the CPU time of the calling thread (``time.thread_time``), not wall
time: with one thread per engine ONNX Runtime and PyTorch compute on the
caller's thread, and on a machine loaded to 4× its cores wall time is
mostly waiting for a turn (measured: wall-time medians flipped a 2× ratio).
Every engine uses one thread: ``torch.set_num_threads(1)`` and ONNX Runtime
sessions with one intra-op thread and no spinning (the agent's settings).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from edgewatch.bench.models import Engine, ExportedModel


def engine_runner(model: ExportedModel, engine: Engine, batch: int, seed: int = 0) -> Callable[[], object]:
    """A no-argument callable that scores one batch of ``batch`` samples with ``engine``.

    Inputs are built once here, so the callable times scoring only. For
    ONNX Runtime it goes through the agent's own :class:`ScoringModel`.
    """
    x = model.spec.samples(batch, seed=seed)
    if engine is Engine.TORCH:
        import torch

        torch.set_num_threads(1)
        xt = torch.from_numpy(x)
        scorer = model.scorer.eval()

        def run_torch() -> object:
            with torch.inference_mode():
                return scorer(xt)

        return run_torch
    from edgewatch.agent.model import ScoringModel

    scoring = ScoringModel(model.paths[engine], threads=1)
    return lambda: scoring.score_many(x)


@dataclass
class Timing:
    """Seconds per call: the median over rounds, and every round's value."""

    median: float
    rounds: list[float]


CLOCK: Callable[[], float] = time.thread_time


def time_calls(fn: Callable[[], object], number: int, clock: Callable[[], float] = CLOCK) -> float:
    """CPU seconds (of this thread, by default) per call of ``fn`` over ``number`` calls."""
    t0 = clock()
    for _ in range(number):
        fn()
    return (clock() - t0) / number


def calls_for(fn: Callable[[], object], target_seconds: float) -> int:
    """How many calls of ``fn`` take about ``target_seconds`` (at least one)."""
    fn()  # warm up: first calls allocate
    once = time_calls(fn, 3)
    return max(1, int(target_seconds / max(once, 1e-7)))


def interleaved_medians(fns: Mapping[str, Callable[[], object]], rounds: int = 7,
                        round_seconds: float = 0.05) -> dict[str, Timing]:
    """Time every callable in turns for ``rounds`` rounds; median seconds per call of each."""
    numbers = {name: calls_for(fn, round_seconds) for name, fn in fns.items()}
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            per_round[name].append(time_calls(fn, numbers[name]))
    return {name: Timing(statistics.median(v), v) for name, v in per_round.items()}


def max_abs_score_diff(model: ExportedModel, n: int = 16) -> dict[Engine, float]:
    """Largest score difference of each ONNX file from PyTorch on ``n`` samples (a sanity check)."""
    import torch

    from edgewatch.agent.model import ScoringModel

    x = model.spec.samples(n, seed=99)
    with torch.inference_mode():
        ref = model.scorer(torch.from_numpy(x))[0].numpy()
    out = {}
    for engine in (Engine.ORT_FP32, Engine.ORT_INT8):
        got = ScoringModel(model.paths[engine]).score_many(x).scores
        out[engine] = float(np.max(np.abs(got - ref)))
    return out


def s0_form_runners(s0: "S0Files", batch: int) -> dict[str, Callable[[], object]]:  # noqa: F821
    """Callables scoring one batch of nominal windows with each form of a trained S0 model, and PyTorch.

    The forms: fp32 ``LSTM``, sentinel int8 (ships), unrolled int8, plain
    dynamic int8 (batch-dependent, timed only to show what isolation costs).
    """
    import torch

    from edgewatch.agent.model import ScoringModel
    from edgewatch.data.simulator import Simulator
    from edgewatch.models import scorer_from_checkpoint
    from edgewatch.train.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    rows = Simulator.nominal(3 * batch + 10, seed=5).astype(np.float32)
    x = np.stack([rows[i:i + 10] for i in range(0, 3 * batch, 3)])
    ck = load_checkpoint(s0.checkpoint)
    scorer = scorer_from_checkpoint(ck.family, ck.config, ck.state_dict).eval()
    xt = torch.from_numpy(x)

    def run_torch() -> object:
        with torch.inference_mode():
            return scorer(xt)

    files = {"ort-fp32": s0.paths[Engine.ORT_FP32], "sentinel-int8": s0.shipped,
             "unrolled-int8": s0.unrolled_int8, "dynamic-int8 (not isolated)": s0.dynamic_int8}
    out: dict[str, Callable[[], object]] = {"torch-eager": run_torch}
    for name, path in files.items():
        model = ScoringModel(path, threads=1)
        out[name] = lambda model=model: model.score_many(x)
    return out
