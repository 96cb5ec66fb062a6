"""Shared fixtures of the benchmark suites: the models, exported once per session.

Run with ``edgewatch bench`` (writes the report) or directly::

    .venv/bin/pytest benchmarks/ --benchmark-json=bench.json

``EDGEWATCH_BENCH_QUICK=1`` shortens every run (what ``edgewatch bench
--quick`` sets); ``EDGEWATCH_BENCH_CACHE=DIR`` keeps the exported and
trained models between runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the engine benchmarks compare against PyTorch: install edgewatch[train]")
pytest.importorskip("pytest_benchmark", reason="install pytest-benchmark (edgewatch[test])")

from edgewatch.bench.models import ExportedModel, bench_model, export_bench_model  # noqa: E402
from edgewatch.bench.s0 import S0Files, train_s0  # noqa: E402

QUICK = os.environ.get("EDGEWATCH_BENCH_QUICK", "") not in ("", "0")


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> None:
    """Every engine on one thread: the comparison is per core, and the machine is shared."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("EDGEWATCH_BENCH_CACHE")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("bench-models")


class ModelCache:
    """Exports each benchmark model on first use, then hands out the same files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: dict[str, ExportedModel] = {}

    def __call__(self, name: str) -> ExportedModel:
        if name not in self._models:
            self._models[name] = export_bench_model(bench_model(name), self.root / "engines")
        return self._models[name]


@pytest.fixture(scope="session")
def models(bench_cache: Path) -> ModelCache:
    return ModelCache(bench_cache)


@pytest.fixture(scope="session")
def s0(bench_cache: Path) -> S0Files:
    """The briefly trained S0 model (LSTM-AE 160/60, window 10, stride 3) in fp32 and int8."""
    return train_s0(bench_cache / "s0", rows=4000 if QUICK else 6000, epochs=2 if QUICK else 3)
