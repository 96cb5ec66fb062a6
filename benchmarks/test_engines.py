"""PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, per family, batch 1 and 64.

Each benchmark times one call scoring one batch; the report divides by
the batch for per-window figures. ``test_engine_ratios`` also times the
three engines *interleaved* (A, B, C, A, B, C ...) at batch 1, so that the
ratios the targets are judged on are not skewed by a slow spell of the
shared machine hitting one engine only. ``test_s0_forms`` times every form
of the trained S0 network the same way at batch 1, 16, the agent's (``SCORE_BATCH``) and 64, and
``test_isolation_check_cost`` what the agent's load-time check costs.
"""

from __future__ import annotations

import pytest

from edgewatch.agent.engine import SCORE_BATCH
from edgewatch.agent.isolation import check_isolation
from edgewatch.agent.model import ScoringModel
from edgewatch.bench.engines import engine_runner, interleaved_medians, max_abs_score_diff, s0_form_runners
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


@pytest.mark.parametrize("batch", sorted({1, 16, SCORE_BATCH, 64}))
def test_s0_forms(benchmark, s0, batch: int) -> None:
    """The trained S0 network alone in each form, interleaved rounds (the issue's table, on this CPU)."""
    fns = s0_form_runners(s0, batch)
    timings = benchmark.pedantic(interleaved_medians, args=(fns,),
                                 kwargs={"rounds": 5 if QUICK else 9, "round_seconds": 0.05}, rounds=1, iterations=1)
    benchmark.group = "s0 forms (interleaved)"
    benchmark.extra_info.update({"suite": "s0_forms", "batch": batch, "agent_batch": SCORE_BATCH,
                                 "us_per_window": {k: 1e6 * v.median / batch for k, v in timings.items()}})
    assert set(timings) == set(fns) and all(v.median > 0 for v in timings.values())


def test_isolation_check_cost(benchmark, s0) -> None:
    """CPU time of the agent's load-time isolation check on the S0 files (it runs at every model load)."""
    models = {"sentinel-int8": ScoringModel(s0.shipped), "fp32": ScoringModel(s0.paths[Engine.ORT_FP32])}
    for m in models.values():
        check_isolation(m)  # first calls allocate
    got = {name: [check_isolation(m) for _ in range(5)] for name, m in models.items()}
    benchmark.pedantic(check_isolation, args=(models["sentinel-int8"],), rounds=3, iterations=1)
    benchmark.group = "isolation check"
    benchmark.extra_info.update({
        "suite": "isolation_check", "int8_path": got["fp32"][0].int8_path, "calls": got["fp32"][0].calls,
        "windows": got["fp32"][0].windows,
        "cpu_ms": {k: sorted(r.cpu_ms for r in v)[len(v) // 2] for k, v in got.items()},
        "max_rel_diff": {k: max(r.max_rel_diff for r in v) for k, v in got.items()}})
    assert all(r.max_rel_diff <= 1e-5 for v in got.values() for r in v)
