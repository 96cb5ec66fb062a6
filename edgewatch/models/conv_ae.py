"""Convolutional image autoencoder (system S2).

Three conv stages 1→16→32→64 (3×3, padding 1; the second and third stride
2, so 28→14→7), each followed by BatchNorm and ReLU; a dense bottleneck
3136→1024→256 with BatchNorm1d; a mirrored decoder that upsamples with
bilinear ``interpolate`` followed by a 3×3 conv (no transposed
convolutions, so no checkerboard artefacts) and a final 1×1 conv with a
sigmoid. Pixels are scaled to 0–1 inside the exported graph.

Score and per-feature error (the contract's ``feature_error``): the
features of an image model are its 28 pixel rows (``row00`` … ``row27``);
``feature_error[b, r]`` is the mean squared error of row ``r``. The score
is the largest of four standardized tests (reconstruction error, feature
and code densities, amount of detail; see :class:`ImageScorer`), so it sees what
adds detail and what removes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgewatch.contract import Quantization
from edgewatch.errors import BadInput
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

    def stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The three conv stages' feature maps and the bottleneck code of images scaled to 0–1."""
        maps = []
        h = x
        for stage in self.encoder[:3]:
            h = stage(h)
            maps.append(h)
        return maps, self.encoder[3:](h)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        c3 = self.cfg.channels[2]
        h = self.expand(code).view(-1, c3, self.inner, self.inner)
        h = self.up1(F.interpolate(h, scale_factor=2.0, mode=self.cfg.upsample, align_corners=False))
        h = self.up2(F.interpolate(h, scale_factor=2.0, mode=self.cfg.upsample, align_corners=False))
        return torch.sigmoid(self.head(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


class ImageScorer(nn.Module):
    """Raw pixels ``[B, 1, S, S]`` (0–255) → (score ``[B]``, per-row error ``[B, S]``).

    A reconstruction error sees only what *adds* detail (noise, stripes):
    a blurred or flattened image is easier to reconstruct than a clean one
    (blur scored AUROC 0.13 on Fashion-MNIST). So the score is the largest
    of three standardized tests, each asking a different question of the
    same forward pass (four, in fact):

    ``reconstruction``  log of the per-image MSE (high = unusual);
    ``features``        log of the squared Mahalanobis distance of the encoder's
                        feature statistics (mean and standard deviation of every
                        channel of the three conv stages) under a Gaussian fitted
                        on the training images: a density, so it is unusual in
                        either direction, and joint, so a shirt with a shirt's
                        shape but a sneaker's edge energy is unusual too;
    ``code``            the same for the 256-d bottleneck code, which keeps the
                        layout the channel statistics average away (occlusion,
                        rotation);
    ``detail``          log of the input's mean squared pixel gradient, two-sided
                        (|z|): too little detail (blur, low contrast, low
                        resolution) or too much.

    Each is turned into a z-score with the mean and standard deviation it has
    on clean *validation* images (held out from the density fit, so the
    in-sample shrinkage of the distance does not leak in), and the score is
    their maximum: a union of tests, each on a common scale, so one test
    that fires is not diluted by the others (their sum was worse on every
    detail-removing corruption). The scaling to 0–1 and every fitted
    constant live here as buffers, so the exported graph takes raw pixels
    and the agent needs nothing else. ``feature_error`` stays the MSE of each
    pixel row (where the reconstruction failed); for an image flagged by the
    ``features`` or ``detail`` test alone it points at no row in particular.

    Until :meth:`set_head` is called the head's buffers are neutral (identity
    whitening, z = raw value), which is what training needs.
    """

    COMPONENTS = ("reconstruction", "features", "code", "detail")

    def __init__(self, model: ConvAutoencoder, pixel_scale: float = 1.0 / 255.0) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("pixel_scale", torch.tensor(pixel_scale, dtype=torch.float32))
        self.score_head = ScoreHead(2 * sum(model.cfg.channels), model.cfg.dense[-1], len(self.COMPONENTS))

    def set_head(self, **buffers: torch.Tensor) -> None:
        """Install fitted constants of the head by buffer name (densities, standardization)."""
        head = self.score_head
        with torch.no_grad():
            for name, value in buffers.items():
                getattr(head, name).copy_(value)

    @staticmethod
    def feature_stats(maps: list[torch.Tensor]) -> torch.Tensor:
        return ScoreHead.feature_stats(maps)

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw values of the tests ``[B, 4]`` (before standardization) and the per-row error."""
        scaled = x * self.pixel_scale
        maps, code = self.model.stages(scaled)
        return self.score_head.components(scaled, maps, code, self.model.decode(code))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = x * self.pixel_scale
        maps, code = self.model.stages(scaled)
        return self.score_head(scaled, maps, code, self.model.decode(code))


class ScoreHead(nn.Module):
    """The arithmetic from (input, feature maps, reconstruction) to the score, with its fitted constants.

    A module of its own so that the exported nodes carry its name
    (``/score_head/...``): static quantization leaves them, and the layers
    whose maps they read, in fp32 (see
    :func:`edgewatch.export.quantize.score_tail_nodes`).
    """

    def __init__(self, n_stats: int, n_code: int, n_components: int) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_stats))
        self.register_buffer("feature_whitening", torch.eye(n_stats))
        self.register_buffer("code_mean", torch.zeros(n_code))
        self.register_buffer("code_whitening", torch.eye(n_code))
        self.register_buffer("component_mean", torch.zeros(n_components))
        self.register_buffer("component_std", torch.ones(n_components))
        self.register_buffer("two_sided", torch.tensor([0.0] * (n_components - 1) + [1.0]))

    @staticmethod
    def feature_stats(maps: list[torch.Tensor]) -> torch.Tensor:
        """``[B, 2·Σchannels]``: each channel's spatial mean, then its spatial standard deviation."""
        means, stds = [], []
        for h in maps:
            m = h.mean(dim=(2, 3))
            means.append(m)
            stds.append(torch.sqrt((h - m[:, :, None, None]).pow(2).mean(dim=(2, 3)) + 1e-12))
        return torch.cat(means + stds, dim=1)

    def components(self, scaled: torch.Tensor, maps: list[torch.Tensor], code: torch.Tensor,
                   recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = (recon - scaled).pow(2).mean(dim=3)[:, 0]
        distance = ((self.feature_stats(maps) - self.feature_mean) @ self.feature_whitening).pow(2).sum(dim=1)
        code_distance = ((code - self.code_mean) @ self.code_whitening).pow(2).sum(dim=1)
        dx = scaled[:, :, :, 1:] - scaled[:, :, :, :-1]
        dy = scaled[:, :, 1:, :] - scaled[:, :, :-1, :]
        detail = dx.pow(2).mean(dim=(1, 2, 3)) + dy.pow(2).mean(dim=(1, 2, 3))
        raw = torch.stack([rows.mean(dim=1), distance, code_distance, detail], dim=1)
        return torch.log(raw + 1e-8), rows

    def forward(self, scaled: torch.Tensor, maps: list[torch.Tensor], code: torch.Tensor,
                recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, rows = self.components(scaled, maps, code, recon)
        z = (raw - self.component_mean) / self.component_std
        z = z + self.two_sided * (torch.abs(z) - z)
        return z.max(dim=1).values, rows


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer from a checkpoint's config and state."""
    cfg = ConvAeConfig(**config)
    scorer = ImageScorer(ConvAutoencoder(cfg))
    if "score_head.feature_whitening" not in state_dict:
        raise BadInput("this conv-ae checkpoint predates the combined image score (reconstruction, "
                       "feature density, detail); train it again with 'edgewatch train conv-ae'")
    scorer.load_state_dict(state_dict)
    return scorer.eval()
