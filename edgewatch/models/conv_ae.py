"""Convolutional image autoencoder (system S2).

Three conv stages 1→16→32→64 (3×3, padding 1; the second and third stride
2, so 28→14→7), each followed by BatchNorm and ReLU; a dense bottleneck
3136→1024→256 with BatchNorm1d; a mirrored decoder that upsamples with
bilinear ``interpolate`` followed by a 3×3 conv (no transposed
convolutions, so no checkerboard artefacts) and a final 1×1 conv with a
sigmoid. Pixels are scaled to 0–1 inside the exported graph.

Score and per-feature error (the contract's ``feature_error``): the
features of an image model are its 28 pixel rows (``row00`` … ``row27``);
``feature_error[b, r]`` is the mean squared error of row ``r`` and the
score is the mean over rows, i.e. the per-image MSE. The rows that
contribute most tell where in the image the anomaly sits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgewatch.contract import Quantization
from edgewatch.models import ExportSpec

FAMILY = "conv-ae"
EXPORT = ExportSpec(quantization=Quantization.STATIC_QDQ_INT8, script=False)


@dataclass
class ConvAeConfig:
    """Sizes of the network; round-trips through a checkpoint's ``config``."""

    size: int = 28
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    dense: list[int] = field(default_factory=lambda: [1024, 256])
    upsample: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU())


def _dense(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU())


class ConvAutoencoder(nn.Module):
    """Maps images scaled to 0–1 ``[B, 1, S, S]`` to their reconstruction."""

    def __init__(self, cfg: ConvAeConfig) -> None:
        super().__init__()
        if cfg.size % 4:
            raise ValueError(f"image size {cfg.size} must be divisible by 4 (two stride-2 stages)")
        c1, c2, c3 = cfg.channels
        d1, d2 = cfg.dense
        self.cfg = cfg
        self.inner = cfg.size // 4
        flat = c3 * self.inner * self.inner
        self.encoder = nn.Sequential(_stage(1, c1, 1), _stage(c1, c2, 2), _stage(c2, c3, 2),
                                     nn.Flatten(), _dense(flat, d1), _dense(d1, d2))
        self.expand = nn.Sequential(_dense(d2, d1), _dense(d1, flat))
        self.up1 = _stage(c3, c2, 1)
        self.up2 = _stage(c2, c1, 1)
        self.head = nn.Conv2d(c1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3 = self.cfg.channels[2]
        h = self.expand(self.encoder(x)).view(-1, c3, self.inner, self.inner)
        h = self.up1(F.interpolate(h, scale_factor=2.0, mode=self.cfg.upsample, align_corners=False))
        h = self.up2(F.interpolate(h, scale_factor=2.0, mode=self.cfg.upsample, align_corners=False))
        return torch.sigmoid(self.head(h))


class ImageScorer(nn.Module):
    """Raw pixels ``[B, 1, S, S]`` (0–255) → (score ``[B]``, per-row error ``[B, S]``).

    The scaling to 0–1 lives here as buffers, so the exported graph takes
    raw pixel values like the idx files hold.
    """

    def __init__(self, model: ConvAutoencoder, pixel_scale: float = 1.0 / 255.0) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("pixel_scale", torch.tensor(pixel_scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = x * self.pixel_scale
        err = (self.model(scaled) - scaled).pow(2)
        rows = err.mean(dim=3)[:, 0]
        return rows.mean(dim=1), rows


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer from a checkpoint's config and state."""
    cfg = ConvAeConfig(**config)
    scorer = ImageScorer(ConvAutoencoder(cfg))
    scorer.load_state_dict(state_dict)
    return scorer.eval()
