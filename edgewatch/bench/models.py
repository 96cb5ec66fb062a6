"""The models the benchmarks time: every family at full size, with random weights.

Speed does not depend on what the weights learnt, so the engine benchmarks
build each family's real architecture from random weights (seeded), pass
its state through the family's own ``build_scorer`` and export it with the
one export path (:func:`edgewatch.export.onnx.export_model`) twice: fp32
and int8 in the family's quantization (dynamic for the recurrent families,
static QDQ for the CNNs). The parity gate of the export is turned off for
these files (random weights have no meaningful threshold); decision
agreement is measured on a trained model instead (:mod:`edgewatch.bench.agreement`).

Train/export-time only: imports torch.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.contract import ModelCard, Quantization, Scaler, ScoreStats, Task
from edgewatch.errors import require_torch

log = logging.getLogger(__name__)


class Engine(str, enum.Enum):
    """What runs the model: PyTorch eager, or ONNX Runtime on the fp32 or the int8 file."""

    TORCH = "torch-eager"
    ORT_FP32 = "ort-fp32"
    ORT_INT8 = "ort-int8"


@dataclass(frozen=True)
class BenchModel:
    """One benchmarked model: a family at one size, and how its int8 file is made."""

    name: str
    family: str
    config: dict[str, Any]
    sample_shape: tuple[int, ...]
    int8: Quantization
    window: int = 0
    horizon: int = 0
    task: Task = Task.RECONSTRUCT
    features: tuple[str, ...] = field(default=())

    @property
    def n_features(self) -> int:
        return len(self.features)

    def samples(self, n: int, seed: int = 0) -> np.ndarray:
        """Plausible raw inputs: values in [0, 1] for series, 0–255 pixels for images."""
        rng = np.random.default_rng(seed)
        x = rng.random((n, *self.sample_shape), dtype=np.float32)
        return x * 255.0 if self.family == "conv-ae" else x


def _lstm(window: int) -> BenchModel:
    feats = ("cpu", "memory", "traffic", "fan")
    return BenchModel(f"lstm-ae-w{window}", "lstm-ae",
                      {"n_features": 4, "window": window, "hidden": 160, "latent": 60},
                      (window, 4), Quantization.SENTINEL_INT8, window=window, features=feats)


BENCH_MODELS: tuple[BenchModel, ...] = (
    _lstm(10),
    _lstm(50),
    BenchModel("deepant", "deepant", {"context": 10, "horizon": 1, "n_features": 1, "channels": 32,
                                      "kernel": 3, "hidden": 40, "dropout": 0.25},
               (11, 1), Quantization.STATIC_QDQ_INT8, window=11, horizon=1, task=Task.FORECAST,
               features=("value",)),
    BenchModel("rnn-ae", "rnn-ae", {"window": 100, "n_features": 1, "hidden": 64, "layers": 1},
               (100, 1), Quantization.DYNAMIC_INT8, window=100, features=("value",)),
    BenchModel("conv1d-ae", "conv1d-ae", {"n_features": 8, "window": 32, "channels": [32, 16], "kernel": 7,
                                          "dropout": 0.2},
               (32, 8), Quantization.STATIC_QDQ_INT8, window=32, features=tuple(f"s{i}" for i in range(8))),
    BenchModel("conv-ae", "conv-ae", {"size": 28, "channels": [16, 32, 64], "dense": [1024, 256],
                                      "upsample": "bilinear"},
               (1, 28, 28), Quantization.STATIC_QDQ_INT8, features=tuple(f"row{r:02d}" for r in range(28))),
)


def bench_model(name: str) -> BenchModel:
    """Look a benchmark model up by name (``lstm-ae-w10``, ``deepant`` ...)."""
    for spec in BENCH_MODELS:
        if spec.name == name:
            return spec
    raise KeyError(f"no benchmark model {name!r}; known: {', '.join(s.name for s in BENCH_MODELS)}")


def _fresh_scorer(spec: BenchModel):  # noqa: ANN202 - a torch module
    """The family's scorer module with random weights (seeded by the caller)."""
    from edgewatch.export.scoring import (ForecastScorer, InputScaler, MaxStepReconstructionScorer,
                                          ReconstructionScorer)

    cfg = spec.config
    if spec.family == "lstm-ae":
        from edgewatch.models.lstm_ae import build_model

        return ReconstructionScorer(build_model(cfg), InputScaler.identity(spec.n_features))
    if spec.family == "conv1d-ae":
        from edgewatch.models.conv1d_ae import build_model as build_conv1d

        return ReconstructionScorer(build_conv1d(cfg), InputScaler.identity(spec.n_features))
    if spec.family == "deepant":
        from edgewatch.models.deepant import DeepAnt, DeepAntConfig

        return ForecastScorer(DeepAnt(DeepAntConfig(**cfg)), InputScaler.identity(spec.n_features), spec.horizon)
    if spec.family == "rnn-ae":
        from edgewatch.models.rnn_ae import RnnAeConfig, RnnAutoencoder

        return MaxStepReconstructionScorer(RnnAutoencoder(RnnAeConfig(**cfg)), InputScaler.identity(spec.n_features))
    if spec.family == "conv-ae":
        from edgewatch.models.conv_ae import ConvAeConfig, ConvAutoencoder, ImageScorer

        return ImageScorer(ConvAutoencoder(ConvAeConfig(**cfg)))
    raise KeyError(f"no random-weight builder for family {spec.family!r}")


def build_random_scorer(spec: BenchModel, seed: int = 0):  # noqa: ANN201 - a torch module
    """The export-ready scorer of ``spec``, rebuilt through the family's ``build_scorer``."""
    torch = require_torch()
    from edgewatch.models import family_module

    torch.manual_seed(seed)
    state = _fresh_scorer(spec).state_dict()
    return family_module(spec.family).build_scorer(dict(spec.config), state).eval()


def _card(spec: BenchModel, threshold: float, scores: np.ndarray) -> ModelCard:
    n = spec.n_features
    return ModelCard(
        family=spec.family, task=spec.task, sample_shape=list(spec.sample_shape), features=list(spec.features),
        scaler=Scaler.identity(n), score="benchmark model with random weights", threshold=threshold,
        threshold_method="median of random-weight scores (benchmark only)",
        score_stats={"random": ScoreStats.of(scores)}, quantization=Quantization.NONE,
        trained_on={"data": "none: random weights for speed benchmarks"}, window=spec.window,
        horizon=spec.horizon, stride=3 if spec.window else 1)


@dataclass
class ExportedModel:
    """A benchmark model in memory (PyTorch) and on disk (fp32 and int8 ONNX)."""

    spec: BenchModel
    scorer: Any  # torch.nn.Module
    paths: dict[Engine, Path]
    int8_nodes: int


def export_bench_model(spec: BenchModel, out_dir: Path, seed: int = 0, n_calibration: int = 64) -> ExportedModel:
    """Build ``spec`` with random weights and write its fp32 and int8 files to ``out_dir``.

    Files already present are reused (a session cache), so several suites in
    one run time the very same files.
    """
    from edgewatch.export.onnx import export_model
    from edgewatch.export.quantize import quantized_op_counts
    from edgewatch.export.scoring import score_batches
    from edgewatch.models import family_module

    torch = require_torch()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = build_random_scorer(spec, seed)
    script = family_module(spec.family).EXPORT.script
    calib = spec.samples(n_calibration, seed=seed + 1)
    paths = {Engine.ORT_FP32: out_dir / f"{spec.name}-fp32.onnx", Engine.ORT_INT8: out_dir / f"{spec.name}-int8.onnx"}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for engine, quant in ((Engine.ORT_FP32, Quantization.NONE), (Engine.ORT_INT8, spec.int8)):
            if paths[engine].is_file():
                continue
            scores, _ = score_batches(scorer, calib)
            card = _card(spec, float(np.median(scores)), scores)
            # dynamic int8 is kept to time it beside the stream-isolated forms: its scores depend on
            # the call's other windows, so the export's invariance check would refuse it
            report = export_model(scorer, card, paths[engine], quantization=quant, calibration=calib,
                                  script=script, min_agreement=0.0,
                                  check_invariance=quant is not Quantization.DYNAMIC_INT8)
            log.info("exported %s %s in %.2f s", spec.name, engine.value, report.export_seconds)
    finally:
        torch.set_num_threads(previous)
    return ExportedModel(spec, scorer, paths, sum(quantized_op_counts(paths[Engine.ORT_INT8]).values()))

