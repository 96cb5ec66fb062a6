"""Training DeepAnt (S1) on one series and flagging its anomalous points.

DeepAnt is unsupervised on the series it watches: it learns to forecast the
series from its own past (L1 loss, min-max scaled), and the points it
forecasts worst are the anomalies. A few anomalies in the training data do
not matter much because a small CNN cannot memorise rare points.

Threshold rule (stated, not tuned to a label): ``mean + k·std`` of the
scores over the training series, ``k = 3`` by default, the classic
three-sigma rule on the forecast-error distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewatch.contract import ScoreStats, Task
from edgewatch.contract.drift_reference import drift_reference_from
from edgewatch.errors import BadInput, require_torch
from edgewatch.export.scoring import SCORE_TEXT, ForecastScorer, InputScaler, ScoreKind, score_batches
from edgewatch.models.deepant import FAMILY, DeepAnt, DeepAntConfig
from edgewatch.train.loop import TrainConfig, TrainResult, fit
from edgewatch.train.scaling import apply_scaler, fit_minmax
from edgewatch.train.windowing import sliding_windows


@dataclass
class DeepAntRun:
    """Everything one training run produced; ``scores[i]`` refers to row ``i + context``."""

    scorer: Any  # ForecastScorer (torch module)
    model_config: DeepAntConfig
    train_result: TrainResult
    windows: np.ndarray  # [N, window, F] raw
    scores: np.ndarray  # [N]
    threshold: float
    threshold_method: str
    card_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def first_scored_row(self) -> int:
        return self.model_config.context + self.model_config.horizon - 1

    def flagged_rows(self) -> np.ndarray:
        """Row indices of the series whose score is over the threshold."""
        return np.flatnonzero(self.scores > self.threshold) + self.first_scored_row


def default_train_config(**changes: Any) -> TrainConfig:
    """DeepAnt's published settings: 30 epochs, Adam; no learning-rate decay."""
    base = dict(epochs=30, batch_size=32, lr=1e-3, lr_gamma=1.0, desc="deepant")
    base.update(changes)
    return TrainConfig(**base)


def train_deepant(values: np.ndarray, model_config: DeepAntConfig | None = None,
                  train_config: TrainConfig | None = None, sigmas: float = 3.0,
                  trained_on: dict[str, Any] | None = None) -> DeepAntRun:
    """Fit DeepAnt on ``values`` ``[T]`` or ``[T, F]`` and calibrate its threshold on the same series."""
    torch = require_torch()
    x = np.asarray(values, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if not np.isfinite(x).all():
        raise BadInput("the series holds NaN/inf values: clean or interpolate them first")
    cfg = model_config or DeepAntConfig(n_features=x.shape[1])
    if cfg.n_features != x.shape[1]:
        raise BadInput(f"model config has {cfg.n_features} features, data has {x.shape[1]}")
    tcfg = train_config or default_train_config()
    windows = np.ascontiguousarray(sliding_windows(x, cfg.window, 1))
    if len(windows) < 2:
        raise BadInput(f"series of {len(x)} rows is too short for window {cfg.window}")
    scaler = fit_minmax(x)
    scaled = torch.from_numpy(apply_scaler(scaler, windows))
    torch.manual_seed(tcfg.seed)
    model = DeepAnt(cfg)
    result = fit(model, scaled[:, :cfg.context], tcfg, targets=scaled[:, cfg.context:],
                 loss_fn=torch.nn.L1Loss())
    scorer = ForecastScorer(model, InputScaler.from_scaler(scaler), cfg.horizon).eval()
    scores, _ = score_batches(scorer, windows)
    threshold = float(scores.mean() + sigmas * scores.std())
    method = f"mean + {sigmas:g}*std of the scores over the training series ({len(scores)} windows)"
    card_fields = dict(
        family=FAMILY, task=Task.FORECAST.value, sample_shape=[cfg.window, cfg.n_features],
        features=[f"x{i}" for i in range(cfg.n_features)] if cfg.n_features > 1 else ["value"],
        scaler=scaler, score=SCORE_TEXT[ScoreKind.FORECAST_L2], threshold=threshold,
        threshold_method=method, score_stats={"normal": ScoreStats.of(scores)},
        trained_on=dict(trained_on or {}, rows=int(len(x)), epochs=result.epochs_run,
                        final_loss=result.train_loss[-1]),
        window=cfg.window, horizon=cfg.horizon, stride=1,
        drift_reference=drift_reference_from(x),
    )
    return DeepAntRun(scorer, cfg, result, windows, scores, threshold, method, card_fields)
