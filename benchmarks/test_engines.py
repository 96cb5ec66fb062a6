"""PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, per family, batch 1 and 64.

Each benchmark times one call scoring one batch; the report divides by
the batch for per-window figures. ``test_engine_ratios`` also times the
three engines *interleaved* (A, B, C, A, B, C ...) at batch 1, so that the
ratios the targets are judged on are not skewed by a slow spell of the
shared machine hitting one engine only.
"""

from __future__ import annotations

import pytest

from edgewatch.bench.engines import engine_runner, interleaved_medians, max_abs_score_diff
from edgewatch.bench.models import BENCH_MODELS, Engine
from edgewatch.contract import Quantization
from edgewatch.models import family_module

from .conftest import QUICK

NAMES = [m.name for m in BENCH_MODELS]


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("engine", list(Engine), ids=[e.value for e in Engine])
@pytest.mark.parametrize("name", NAMES)
def test_engine(benchmark, models, name: str, engine: Engine, batch: int) -> None:
    model = models(name)
    run = engine_runner(model, engine, batch)
    benchmark.group = f"engines {name} batch {batch}"
    benchmark.extra_info.update({"suite": "engines", "model": name, "family": model.spec.family,
                                 "engine": engine.value, "batch": batch,
                                 "int8": model.spec.int8.value, "int8_nodes": model.int8_nodes})
    out = benchmark(run)
    assert out is not None


@pytest.mark.parametrize("name", NAMES)
def test_engine_ratios(benchmark, models, name: str) -> None:
    model = models(name)
    fns = {e.value: engine_runner(model, e, 1) for e in Engine}
    timings = benchmark.pedantic(interleaved_medians, args=(fns,),
                                 kwargs={"rounds": 5 if QUICK else 9, "round_seconds": 0.05},
                                 rounds=1, iterations=1)
    diffs = max_abs_score_diff(model)
    t = {k: v.median for k, v in timings.items()}
    # the form a user runs: the family's export choice (fp32 unless it measured best in int8)
    shipped = family_module(model.spec.family).EXPORT.quantization
    shipped_engine = Engine.ORT_FP32 if shipped is Quantization.NONE else Engine.ORT_INT8
    benchmark.group = "engine ratios (interleaved, batch 1)"
    benchmark.extra_info.update({
        "suite": "engine_ratios", "model": name, "family": model.spec.family, "int8": model.spec.int8.value,
        "int8_nodes": model.int8_nodes, "seconds_per_window": t,
        "int8_vs_torch": t[Engine.TORCH.value] / t[Engine.ORT_INT8.value],
        "fp32_vs_torch": t[Engine.TORCH.value] / t[Engine.ORT_FP32.value],
        "int8_vs_fp32": t[Engine.ORT_FP32.value] / t[Engine.ORT_INT8.value],
        "shipped": shipped.value, "shipped_vs_torch": t[Engine.TORCH.value] / t[shipped_engine.value],
        "max_abs_score_diff": {k.value: v for k, v in diffs.items()}})
    # the fp32 file must score what PyTorch scores; anything else would make the timing meaningless
    assert diffs[Engine.ORT_FP32] < 1e-3
