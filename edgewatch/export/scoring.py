"""Torch modules that put the input scaler and the score inside the exported graph.

Every family's export-ready *scorer* maps a raw-unit batch
``x [B, window, F]`` (float32) to ``(score [B], feature_error [B, F])``
(names and meaning in :mod:`edgewatch.contract`). The agent then runs one
generic loop for every family, and a model file cannot be paired with the
wrong scaler or score by mistake.

Building blocks, all ``torch.jit.script``-able (for families that export
with ``script=True``):

* :class:`InputScaler`: ``(x - offset) * scale`` with the card's scaler as
  buffers (so they travel in the checkpoint's state_dict).
* :class:`ReconstructionScorer` (S0): the model reconstructs the scaled
  window; score = mean squared error over the window and features;
  feature_error = mean over time of the squared error per feature.
* :class:`MaxStepReconstructionScorer` (S3): score = max over time of the
  per-step MSE (a short anomalous segment is not diluted by a long
  window); feature_error as above.
* :class:`ForecastScorer` (S1): the window is ``context + horizon`` steps;
  the model forecasts the last ``horizon`` steps from the context (its
  output is reshaped to ``[B, horizon, F]``); score = L2 norm of the
  forecast error over the horizon; feature_error = mean over the horizon
  of the absolute error per feature.

Scores are in scaled units (the model's own), so thresholds do not depend
on the sensor's range. :data:`SCORE_TEXT` holds, for each :class:`ScoreKind`,
the sentence that goes in the card's ``score``.
"""

from __future__ import annotations

import enum

import numpy as np
import torch
from torch import Tensor, nn

from edgewatch.contract import Scaler


class ScoreKind(str, enum.Enum):
    RECONSTRUCTION_MSE = "reconstruction-mse"
    RECONSTRUCTION_MAX_STEP = "reconstruction-max-step"
    FORECAST_L2 = "forecast-l2"


SCORE_TEXT: dict[ScoreKind, str] = {
    ScoreKind.RECONSTRUCTION_MSE: "mean squared reconstruction error over the window, in scaled units",
    ScoreKind.RECONSTRUCTION_MAX_STEP: "max over time of the per-step mean squared reconstruction error, "
                                       "in scaled units",
    ScoreKind.FORECAST_L2: "L2 norm of the forecast error over the horizon, in scaled units",
}


class InputScaler(nn.Module):
    """The card's per-feature affine scaler as graph operations."""

    def __init__(self, offset: list[float], scale: list[float]) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    @classmethod
    def from_scaler(cls, scaler: Scaler) -> InputScaler:
        return cls(list(scaler.offset), list(scaler.scale))

    @classmethod
    def identity(cls, n_features: int) -> InputScaler:
        """A placeholder of the right size; ``load_state_dict`` fills in the real values."""
        return cls([0.0] * n_features, [1.0] * n_features)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.offset) * self.scale


class ReconstructionScorer(nn.Module):
    """score = mean squared reconstruction error over the window (S0)."""

    def __init__(self, model: nn.Module, scaler: InputScaler) -> None:
        super().__init__()
        self.scaler = scaler
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scaler(x)
        err = (self.model(s) - s) ** 2
        return torch.mean(err, dim=[1, 2]), torch.mean(err, dim=1)


class MaxStepReconstructionScorer(nn.Module):
    """score = max over time of the per-step mean squared error (S3)."""

    def __init__(self, model: nn.Module, scaler: InputScaler) -> None:
        super().__init__()
        self.scaler = scaler
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scaler(x)
        err = (self.model(s) - s) ** 2
        per_step = torch.mean(err, dim=2)
        return torch.amax(per_step, dim=1), torch.mean(err, dim=1)


class ForecastScorer(nn.Module):
    """score = L2 norm of the forecast error over the last ``horizon`` steps (S1)."""

    def __init__(self, model: nn.Module, scaler: InputScaler, horizon: int) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError("a forecaster needs horizon >= 1")
        self.scaler = scaler
        self.model = model
        self.horizon = horizon

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scaler(x)
        split = s.shape[1] - self.horizon
        context = s[:, :split, :]
        target = s[:, split:, :]
        err = self.model(context).reshape_as(target) - target
        score = torch.sqrt(torch.sum(err * err, dim=[1, 2]))
        return score, torch.mean(torch.abs(err), dim=1)


@torch.no_grad()
def score_batches(scorer: nn.Module, samples: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Run a scorer over raw-unit samples in batches; returns NumPy (scores, feature_error).

    Calibration and parity use this so that they score exactly what the
    exported graph will score.
    """

    was_training = scorer.training
    scorer.eval()
    scores, ferrs = [], []
    try:
        for start in range(0, len(samples), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(samples[start:start + batch_size], dtype=np.float32))
            s, f = scorer(xb)
            scores.append(s.numpy())
            ferrs.append(f.numpy())
    finally:
        scorer.train(was_training)
    if not scores:
        return np.empty(0, np.float32), np.empty((0, 0), np.float32)
    return np.concatenate(scores), np.concatenate(ferrs)
