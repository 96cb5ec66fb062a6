"""Training a window autoencoder on a short normal stretch and calibrating it from its own windows.

The recipe SKAB's baselines follow, for any reconstruction module over
``[B, window, F]``: a standard scaler fitted on the training rows, windows
every row, the last ``val_fraction`` of them held out for early stopping,
MSE; threshold = ``factor`` x the ``quantile`` of the training windows'
scores: 3 x the 99th percentile by default, the rule of the pca family
(chosen on SKAB across its two groups, docs/skab.md), so the families'
thresholds mean the same (SKAB's own LSTM-AE and Conv-AE use 1.5 x). Used by ``edgewatch train conv1d-ae`` and by the
torch families of ``edgewatch eval skab``.

Fails with :class:`BadInput` when the rows give fewer than 10 windows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgewatch.contract import Decision, ModelCard, Quantization, ScoreStats, Task
from edgewatch.contract.drift_reference import drift_reference_from, unchecked_reasons
from edgewatch.errors import BadInput
from edgewatch.export.scoring import SCORE_TEXT, InputScaler, ReconstructionScorer, ScoreKind, score_batches
from edgewatch.train.loop import TrainConfig, TrainResult, fit, seed_everything
from edgewatch.numpy_models.pca import PcaConfig
from edgewatch.train.scaling import apply_scaler, fit_standard
from edgewatch.train.windowing import sliding_windows


class SubsetScorer(nn.Module):
    """Scores only some input columns: the model sees ``columns``; the others get feature_error 0.

    Why: a stream may carry channels whose normal range the training rows
    cannot show (slow temperatures); the file still reads every feature, so
    the agent and the card stay the same, but the score ignores those.
    """

    def __init__(self, inner: nn.Module, columns: list[int], n_features: int) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long))
        spread = torch.zeros(len(columns), n_features)
        spread[torch.arange(len(columns)), torch.tensor(columns)] = 1.0
        self.register_buffer("spread", spread)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score, error = self.inner(torch.index_select(x, 2, self.columns))
        return score, error @ self.spread


@dataclass
class WindowAeConfig:
    window: int = 32
    val_fraction: float = 0.1
    quantile: float = 0.99
    factor: float = PcaConfig.factor
    k: int = 1
    n: int = 1
    m: int | None = None  # quiet windows before an episode ends (None: when none of the last n are over)
    score_stride: int = 1
    ignore: list[str] = field(default_factory=list)  # features the model does not see (feature_error 0)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=100, batch_size=32, lr=1e-3, lr_gamma=1.0,
                                                                   patience=5, desc="window-ae"))


@dataclass
class WindowAeRun:
    scorer: nn.Module  # ReconstructionScorer, or a SubsetScorer around one
    card_fields: dict[str, Any]
    calibration: np.ndarray  # raw windows on both sides of the threshold (export parity)
    history: TrainResult
    threshold: float

    def card(self, quantization: Quantization = Quantization.NONE) -> ModelCard:
        from edgewatch.train.checkpoint import card_from_fields

        return card_from_fields(self.card_fields, quantization)


def train_window_ae(build: Callable[[int], nn.Module], family: str, values: np.ndarray | list[np.ndarray],
                    features: list[str], cfg: WindowAeConfig, trained_on: dict[str, Any] | None = None,
                    drift_modes: Sequence[Mapping[str, float]] | None = None) -> WindowAeRun:
    """Train ``build(n_features_seen)`` (scaled windows in, reconstructions out) on ``values [T, F]``; calibrate it.

    ``values`` may be a list of segments: windows never span two. The
    module is built here, after the seed is set: built by the caller
    before, its initial weights came from torch's unseeded global generator,
    and four ``train conv1d-ae --seed 0`` runs gave four thresholds.
    ``drift_modes``: the operating points the drift reference tells apart
    (feature -> level, one mapping each), when the caller found them.
    """
    parts = [np.asarray(v, dtype=np.float32) for v in (values if isinstance(values, list) else [values])]
    if any(p.ndim != 2 or p.shape[1] != len(features) for p in parts):
        raise BadInput(f"data of shape {[p.shape for p in parts]} does not match {len(features)} feature names")
    x = np.concatenate(parts)
    parts = [p for p in parts if len(p) >= cfg.window]
    raw = np.ascontiguousarray(np.concatenate([sliding_windows(p, cfg.window, 1) for p in parts])) if parts \
        else np.zeros((0, cfg.window, len(features)), np.float32)
    if len(raw) < 10:
        raise BadInput(f"{len(x)} rows give {len(raw)} windows of {cfg.window}; need at least 10")
    unknown = sorted(set(cfg.ignore) - set(features))
    if unknown or len(cfg.ignore) >= len(features):
        raise BadInput(f"ignore {cfg.ignore}: must name some, not all, of the features {features}")
    cols = [i for i, f in enumerate(features) if f not in cfg.ignore]
    seed_everything(cfg.train.seed)
    model = build(len(cols))
    scaler = fit_standard(x)
    sub = fit_standard(x[:, cols])
    scaled = torch.from_numpy(np.ascontiguousarray(np.concatenate(
        [sliding_windows(apply_scaler(sub, p[:, cols]), cfg.window, 1) for p in parts])))
    n_val = max(1, int(len(scaled) * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
    train_x, val_x = (scaled[:-n_val], scaled[-n_val:]) if n_val else (scaled, None)
    history = fit(model, train_x, cfg.train, val_inputs=val_x)
    inner = ReconstructionScorer(model, InputScaler.from_scaler(sub))
    scorer = (inner if len(cols) == len(features) else SubsetScorer(inner, cols, len(features))).eval()
    scores, _ = score_batches(scorer, raw)
    threshold = cfg.factor * float(np.quantile(scores, cfg.quantile))
    shifted = raw + np.std(x, axis=0, keepdims=True)[None] * 3  # windows well over the threshold, for parity
    calibration = np.ascontiguousarray(np.concatenate([raw[:256], shifted[:64]]), dtype=np.float32)
    card_fields: dict[str, Any] = {
        "family": family, "task": Task.RECONSTRUCT.value, "sample_shape": [cfg.window, len(features)],
        "features": list(features), "scaler": scaler,
        "score": SCORE_TEXT[ScoreKind.RECONSTRUCTION_MSE] + (f"; ignores {', '.join(cfg.ignore)}" if cfg.ignore else ""),
        "threshold": threshold,
        "threshold_method": f"{cfg.factor:g} x the {cfg.quantile:g} quantile of the training windows' scores",
        "score_stats": {"normal": ScoreStats.of(scores)},
        "trained_on": {"rows": int(len(x)), "windows": int(len(raw)), "epochs": history.epochs_run,
                       "seed": cfg.train.seed, "ignore": list(cfg.ignore), **(trained_on or {})},
        "window": cfg.window, "horizon": 0, "stride": cfg.score_stride, "decision": Decision(cfg.k, cfg.n, cfg.m),
        "drift_reference": drift_reference_from(x, unchecked=unchecked_reasons(features, ignored=cfg.ignore),
                                                features=features, modes=drift_modes),
    }
    return WindowAeRun(scorer, card_fields, calibration, history, threshold)
