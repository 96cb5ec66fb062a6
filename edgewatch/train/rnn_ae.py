"""Training the RNN autoencoder (S3) on nominal windows and evaluating it on a labelled series.

Evaluation is per window (windows of 100 steps every 10, the family's own
sampling): a window is anomalous when it holds at least one labelled step,
its score is the max over time of the per-step MSE. Best F1 is searched
between the 50th and 99th score percentiles (:func:`edgewatch.accuracy.best_f1`);
the anomalous regions are the flagged windows merged into step ranges.

The model-file threshold is set from nominal data only (``mean + k·std``
of the scores on held-out nominal windows, ``k = 3``), never from the test
labels: the best-F1 threshold is an evaluation figure, not a deployment one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewatch.contract import ScoreStats, Task
from edgewatch.contract.drift_reference import drift_reference_from
from edgewatch.errors import BadInput, require_torch
from edgewatch.accuracy import BestF1, auc_pr, best_f1
from edgewatch.export.scoring import (SCORE_TEXT, InputScaler, MaxStepReconstructionScorer, ScoreKind,
                                      score_batches)
from edgewatch.models.rnn_ae import FAMILY, RnnAeConfig, RnnAutoencoder
from edgewatch.train.loop import TrainConfig, TrainResult, fit
from edgewatch.train.scaling import apply_scaler, fit_minmax
from edgewatch.train.windowing import sliding_windows


@dataclass
class RnnAeEvaluation:
    """Window-level figures on a labelled series."""

    scores: np.ndarray  # [N]
    labels: np.ndarray  # [N] 1 when the window holds a labelled step
    best: BestF1
    auc_pr: float
    chance_f1: float  # F1 of flagging every window: the floor to beat
    regions: list[tuple[int, int]]  # flagged windows merged, as inclusive step ranges


@dataclass
class RnnAeRun:
    scorer: Any  # MaxStepReconstructionScorer
    model_config: RnnAeConfig
    train_result: TrainResult
    stride: int
    threshold: float
    threshold_method: str
    calibration: np.ndarray
    card_fields: dict[str, Any] = field(default_factory=dict)


def default_train_config(**changes: Any) -> TrainConfig:
    base = dict(epochs=30, batch_size=32, lr=3e-3, lr_gamma=1.0, clip_grad_norm=1.0, desc="rnn-ae")
    base.update(changes)
    return TrainConfig(**base)


def train_rnn_ae(train: np.ndarray, model_config: RnnAeConfig | None = None, stride: int = 10,
                 train_config: TrainConfig | None = None, sigmas: float = 3.0, val_fraction: float = 0.2,
                 trained_on: dict[str, Any] | None = None) -> RnnAeRun:
    """Fit on nominal ``train`` ``[T, F]``; the last ``val_fraction`` of the series calibrates the threshold."""
    torch = require_torch()
    x = np.asarray(train, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    cfg = model_config or RnnAeConfig(n_features=x.shape[1])
    if cfg.n_features != x.shape[1]:
        raise BadInput(f"model config has {cfg.n_features} features, data has {x.shape[1]}")
    split = int(len(x) * (1 - val_fraction))
    fit_part, val_part = x[:split], x[split:]
    fit_windows = np.ascontiguousarray(sliding_windows(fit_part, cfg.window, stride))
    val_windows = np.ascontiguousarray(sliding_windows(val_part, cfg.window, stride))
    if len(fit_windows) < 2 or len(val_windows) < 2:
        raise BadInput(f"training series of {len(x)} rows gives too few windows of {cfg.window} "
                       f"(stride {stride}) for training and calibration: use a longer series")
    scaler = fit_minmax(fit_part)
    tcfg = train_config or default_train_config()
    torch.manual_seed(tcfg.seed)
    model = RnnAutoencoder(cfg)
    result = fit(model, torch.from_numpy(apply_scaler(scaler, fit_windows)), tcfg,
                 val_inputs=torch.from_numpy(apply_scaler(scaler, val_windows)))
    scorer = MaxStepReconstructionScorer(model, InputScaler.from_scaler(scaler)).eval()
    val_scores, _ = score_batches(scorer, val_windows)
    threshold = float(val_scores.mean() + sigmas * val_scores.std())
    method = (f"mean + {sigmas:g}*std of the scores on held-out nominal windows "
              f"(last {val_fraction:.0%} of the training series, {len(val_windows)} windows)")
    fit_scores, _ = score_batches(scorer, fit_windows)
    card_fields = dict(
        family=FAMILY, task=Task.RECONSTRUCT.value, sample_shape=[cfg.window, cfg.n_features],
        features=[f"x{i}" for i in range(cfg.n_features)], scaler=scaler,
        score=SCORE_TEXT[ScoreKind.RECONSTRUCTION_MAX_STEP], threshold=threshold, threshold_method=method,
        score_stats={"normal": ScoreStats.of(val_scores), "train": ScoreStats.of(fit_scores)},
        trained_on=dict(trained_on or {}, rows=int(len(x)), windows=int(len(fit_windows)),
                        epochs=result.epochs_run, final_loss=result.train_loss[-1]),
        window=cfg.window, horizon=0, stride=stride, drift_reference=drift_reference_from(fit_part),
    )
    return RnnAeRun(scorer, cfg, result, stride, threshold, method,
                    calibration_windows(val_windows, tcfg.seed), card_fields)


def calibration_windows(nominal: np.ndarray, seed: int, n_normal: int = 192, n_scaled: int = 64,
                        segment: int = 10, factor: float = 2.0) -> np.ndarray:
    """Nominal windows plus copies with one segment scaled, for quantization and export parity.

    The scaled copies put samples over the threshold, so export's parity
    check tests decisions on both sides of it, not only on normal data.
    """
    rng = np.random.default_rng(seed)
    normal = nominal[:n_normal].copy()
    picks = rng.integers(0, len(nominal), size=n_scaled)
    scaled = nominal[picks].copy()
    window = nominal.shape[1]
    seg = min(segment, window)
    for k, start in enumerate(rng.integers(0, window - seg + 1, size=n_scaled)):
        scaled[k, start:start + seg] *= factor
    return np.concatenate([normal, scaled]).astype(np.float32)


def evaluate_windows(scorer: Any, series: np.ndarray, step_labels: np.ndarray, window: int,
                     stride: int) -> RnnAeEvaluation:
    """Score ``series`` window by window and compare with the step labels."""
    x = np.asarray(series, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    windows = sliding_windows(x, window, stride)
    if len(windows) == 0:
        raise BadInput(f"test series of {len(x)} rows is shorter than one window ({window})")
    scores, _ = score_batches(scorer, windows)
    lab = sliding_windows(np.asarray(step_labels).reshape(-1, 1), window, stride)[:, :, 0]
    labels = lab.max(axis=1).astype(np.uint8)
    if labels.sum() == 0:
        raise BadInput("the test labels hold no anomaly: best F1 and AUC-PR are undefined")
    best = best_f1(scores, labels, 50, 99)
    p = labels.mean()
    flagged = np.flatnonzero(scores >= best.threshold)
    regions: list[tuple[int, int]] = []
    for i in flagged:
        start, end = int(i * stride), int(i * stride + window - 1)
        if regions and start <= regions[-1][1] + 1:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    return RnnAeEvaluation(scores, labels, best, auc_pr(scores, labels), float(2 * p / (1 + p)), regions)
