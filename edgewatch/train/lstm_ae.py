"""Training and calibrating the S0 LSTM autoencoder (``edgewatch train lstm-ae``).

Data flow: rows ``[T, F]`` of nominal data -> min-max scaler fitted on the
training part -> the last ``holdout`` share of rows is held out; its first
half validates (early stopping), its second half calibrates the threshold
-> windows of ``window`` rows every ``stride`` rows -> :func:`fit` with
MSE, Adam lr 1e-2, ExponentialLR gamma 0.9995 stepped per batch ->
calibration on normal/noisy/random windows -> checkpoint with a mixed
calibration sample for export.

The scaler is part of the scorer (and so of the exported graph): the
model trains on scaled windows, calibration and export feed raw ones.

Measured on simulator data (hidden 160, latent 60, window 10): the
bottleneck passes 60 numbers *per step* for 4 inputs, so with enough
training the plain autoencoder converges towards the identity (50,000
rows, 5 epochs: normal MSE 4e-6, noisy windows hardly distinguishable,
and int8 rounding then dominates the score, so dynamic-int8 export is
refused at 60 % decision agreement). ``TrainConfig.input_noise``
(``--denoise``, default 0.05 in scaled units) trains a denoising
autoencoder instead, which cannot learn the identity: same data, sizes and
schedule: normal MSE 3.7e-4, 90 % of noisy windows over the threshold
(plain: 12 %), and dynamic int8 passed parity (99.6 % agreement; the family
now exports fp32 for stream isolation, see :mod:`edgewatch.models.lstm_ae`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgewatch.contract import Decision, Task
from edgewatch.errors import BadInput
from edgewatch.export.scoring import SCORE_TEXT, InputScaler, ReconstructionScorer, ScoreKind, score_batches
from edgewatch.models.lstm_ae import FAMILY, LstmAutoencoder, model_config
from edgewatch.train.calibrate import Calibration, CalibrationConfig, calibrate, drift_reference, mixed_samples
from edgewatch.train.checkpoint import save_checkpoint
from edgewatch.train.loop import TrainConfig, TrainResult, fit, seed_everything
from edgewatch.train.scaling import apply_scaler, fit_minmax
from edgewatch.train.windowing import sliding_windows


@dataclass
class LstmAeConfig:
    window: int = 10
    stride: int = 1  # between training windows
    hidden: int = 160
    latent: int = 60
    holdout: float = 0.2  # last share of rows: half validation, half calibration
    score_stride: int = 3  # the agent's default: score every 3rd point
    n_export_samples: int = 512
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, batch_size=64, lr=1e-2,
                                                                   lr_gamma=0.9995, patience=3,
                                                                   input_noise=0.05, desc="lstm-ae"))
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


@dataclass
class LstmAeOutcome:
    checkpoint: Path
    scorer: ReconstructionScorer
    calibration: Calibration
    history: TrainResult
    card_fields: dict[str, Any]


def train_lstm_ae(values: np.ndarray, features: list[str], config: LstmAeConfig, out: str | os.PathLike[str],
                  source: str = "unknown") -> LstmAeOutcome:
    """Train on nominal rows ``[T, F]``, calibrate, and save the checkpoint at ``out``."""
    cfg = config
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(features):
        raise BadInput(f"data of shape {values.shape} does not match {len(features)} feature names")
    if cfg.window < 2 or cfg.stride < 1:
        raise BadInput(f"window must be >= 2 and stride >= 1 (got {cfg.window}, {cfg.stride})")
    if not 0.0 < cfg.holdout < 1.0:
        raise BadInput(f"holdout must be between 0 and 1, got {cfg.holdout}")
    n_train_rows = int(len(values) * (1.0 - cfg.holdout))
    n_val_rows = (len(values) - n_train_rows) // 2
    train_rows = values[:n_train_rows]
    val_rows = values[n_train_rows:n_train_rows + n_val_rows]
    cal_rows = values[n_train_rows + n_val_rows:]
    if min(len(train_rows), len(val_rows), len(cal_rows)) < cfg.window:
        raise BadInput(f"{len(values)} rows are too few for window {cfg.window} with holdout {cfg.holdout}: "
                       f"need at least {int(np.ceil(2 * cfg.window / cfg.holdout))} rows")
    seed_everything(cfg.train.seed)
    scaler = fit_minmax(train_rows)
    train_x = torch.from_numpy(np.ascontiguousarray(sliding_windows(apply_scaler(scaler, train_rows),
                                                                    cfg.window, cfg.stride)))
    val_x = torch.from_numpy(np.ascontiguousarray(sliding_windows(apply_scaler(scaler, val_rows),
                                                                  cfg.window, cfg.stride)))
    model = LstmAutoencoder(len(features), cfg.hidden, cfg.latent)
    history = fit(model, train_x, cfg.train, val_inputs=val_x)

    scorer = ReconstructionScorer(model, InputScaler.from_scaler(scaler)).eval()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.train.threads))
    try:
        cal_windows = np.ascontiguousarray(sliding_windows(cal_rows, cfg.window, 1))
        low, high = train_rows.min(axis=0), train_rows.max(axis=0)
        cal = calibrate(lambda x: score_batches(scorer, x)[0], cal_windows, low, high, cfg.calibration)
    finally:
        torch.set_num_threads(previous_threads)

    card_fields: dict[str, Any] = {
        "family": FAMILY,
        "task": Task.RECONSTRUCT.value,
        "sample_shape": [cfg.window, len(features)],
        "features": list(features),
        "scaler": scaler,
        "score": SCORE_TEXT[ScoreKind.RECONSTRUCTION_MSE],
        "threshold": cal.threshold,
        "threshold_method": cal.threshold_method,
        "score_stats": cal.score_stats,
        "trained_on": {
            "data": Path(source).name,
            "rows": int(len(values)),
            "train_windows": int(len(train_x)),
            "epochs": history.epochs_run,
            "train_loss": history.train_loss[-1],
            "val_loss": history.val_loss[history.best_epoch] if history.val_loss else None,
            "hidden": cfg.hidden,
            "latent": cfg.latent,
            "seed": cfg.train.seed,
            "denoise": cfg.train.input_noise,
        },
        "window": cfg.window,
        "horizon": 0,
        "stride": cfg.score_stride,
        "decision": Decision(),
        "drift_reference": drift_reference(train_rows),
    }
    config_dict = model_config(len(features), cfg.window, cfg.hidden, cfg.latent)
    config_dict["training"] = {"stride": cfg.stride, "holdout": cfg.holdout, **asdict(cfg.train)}
    path = save_checkpoint(out, FAMILY, config_dict, scorer.state_dict(), card_fields,
                           calibration=mixed_samples(cal, cfg.n_export_samples, cfg.train.seed))
    return LstmAeOutcome(path, scorer, cal, history, card_fields)
