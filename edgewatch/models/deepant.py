"""DeepAnt (system S1): a small 1-D CNN that forecasts the next step.

Architecture as published (Munir et al., 2019): two stages of Conv1d k3 +
ReLU + MaxPool 2 with 32 channels, a dense layer of 40 with dropout 0.25,
and a linear head with ``p_w`` outputs (the horizon). The anomaly score is
the L2 norm of the forecast error, so a point is anomalous when the recent
past does not predict it; a slow level change that the context already
shows is not flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from edgewatch.contract import Quantization
from edgewatch.models import ExportSpec

FAMILY = "deepant"
# measured in docs/families.md (two decisions changed on TravelTime_451); the fp32 file is only 25 KiB
EXPORT = ExportSpec(quantization=Quantization.NONE, script=False,
                    why=("not int8: the forecast error is a few int8 steps of the signal's range (static int8 moved "
                         "scores ~130 % and two decisions on TravelTime_451), and int8 was slower at batch 1 "
                         "(59 vs 49 us, AMD EPYC)"))


@dataclass
class DeepAntConfig:
    """Sizes of the network; round-trips through a checkpoint's ``config``."""

    context: int = 10
    horizon: int = 1
    n_features: int = 1
    channels: int = 32
    kernel: int = 3
    hidden: int = 40
    dropout: float = 0.25

    @property
    def window(self) -> int:
        return self.context + self.horizon

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeepAnt(nn.Module):
    """Maps scaled context ``[B, context, F]`` to the scaled forecast ``[B, horizon, F]``."""

    def __init__(self, cfg: DeepAntConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.n_features
        self.features = nn.Sequential(
            nn.Conv1d(f, cfg.channels, cfg.kernel), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(cfg.channels, cfg.channels, cfg.kernel), nn.ReLU(), nn.MaxPool1d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, f, cfg.context)).numel()
        if flat == 0:
            raise ValueError(f"context {cfg.context} is too short for two conv+pool stages")
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.horizon * f),
        )

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(context.transpose(1, 2)))
        return out.view(context.shape[0], self.cfg.horizon, self.cfg.n_features)


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer: raw window ``[B, context + horizon, F]`` → (L2 score, abs error)."""
    from edgewatch.export.scoring import ForecastScorer, InputScaler

    cfg = DeepAntConfig(**config)
    scorer = ForecastScorer(DeepAnt(cfg), InputScaler.identity(cfg.n_features), cfg.horizon)
    scorer.load_state_dict(state_dict)
    return scorer.eval()
