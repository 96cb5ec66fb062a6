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
is a soft maximum of seven standardized tests (reconstruction error, feature
density, nearest training code and layout, image statistics, amount of
detail, flat patches; see :class:`ImageScorer`), so it sees what adds detail
and what removes it, over the whole image or in one place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgewatch.contract import Quantization
from edgewatch.errors import BadInput
from edgewatch.models import ExportSpec

FAMILY = "conv-ae"
# static int8, u8 activations and 7-bit s8 weights: batch-invariant (edgewatch.export.quantize), half fp32's size
EXPORT = ExportSpec(quantization=Quantization.STATIC_QDQ_INT8, script=False, fallback=Quantization.NONE,
                    why=("fixed scales keep it batch-invariant; 1.5-2x fp32 at batch 1 (AMD EPYC, AVX2)"))


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
    (blur scored AUROC 0.13 on Fashion-MNIST). So the score combines
    seven standardized tests (a soft maximum, below), each asking a
    different question of the same forward pass:

    ``reconstruction``  log of the per-image MSE (high = unusual);
    ``features``        log of the squared Mahalanobis distance of the encoder's
                        feature statistics (mean and standard deviation of every
                        channel of the three conv stages) under a Gaussian fitted
                        on the training images: a density, so it is unusual in
                        either direction;
    ``code``            log of the squared distance from the 256-d bottleneck code
                        to its nearest training image's code: the training set
                        holds ten kinds of garment (or digit), which one Gaussian
                        blurs into one blob; the nearest neighbour keeps each
                        mode (what is where: occlusion, rotation);
    ``layout``          the same in pixel space, on the image average-pooled over
                        4×4 cells (7×7 cells for 28×28, the grid of the encoder's
                        last stage): where the mass is, independent of the network;
    ``statistics``      log of the squared Mahalanobis distance of model-free
                        image statistics (log mean |d|^p, p = ½, 1, 2, 4, of five
                        first and second pixel differences, and the log mean
                        energy of each of the 64 coefficients of the 8×8 block
                        DCT, the block grid of image and video codecs) under a
                        Gaussian of the training images: the amount and the shape
                        of fine detail, in either direction (blur, low contrast,
                        pixelation, block compression; noise, stripes);
    ``detail``          log of the input's mean squared pixel gradient, two-sided
                        (|z|): the one direction of the statistics above that
                        most detail-removing corruptions move along, tested on its
                        own because a shift along one axis is diluted among the 84
                        of the Gaussian (at severity 1 on unused training images it
                        lifted low contrast 0.940 → 0.983, defocus 0.961 → 0.981);
    ``flat``            log(1 + the number of 7×7 windows, wholly inside the image,
                        whose pixels lie within one grey level of each other and
                        above the black background): detail removed in *one place*
                        (a saturated or stuck region of the sensor, a sticker or a
                        finger on the lens). The image-wide tests above average it
                        away: a white square on a light shirt changes little of the
                        image's statistics, its code or its layout, yet on
                        Fashion-MNIST no clean validation image and 1 of 2,000
                        unused training images holds such a window.

    Each is turned into a z-score with the mean and standard deviation it has
    on clean *validation* images (held out from the density fits and the
    nearest-neighbour banks, so in-sample shrinkage does not leak in; the flat
    count has a fixed scale instead, :attr:`FIXED_STANDARDIZATION`), and
    the score is their soft maximum ``T·log Σ exp(z/T)`` (``T = 2``): where
    one test fires it is that test's z (plus at most ``T·log 7``), so one
    test is not diluted by six quiet ones as in a sum; where several are
    moderately unusual together (an occluded garment: odd code, odd layout,
    higher error) their evidence adds up, which the plain maximum threw away.
    The scaling to 0–1 and
    every fitted constant live here as buffers, so the exported graph takes
    raw pixels and the agent needs nothing else. ``feature_error`` stays the
    MSE of each pixel row (where the reconstruction failed); for an image
    flagged by another test alone it points at no row in particular.

    Until :meth:`set_head` is called the head's buffers are neutral (identity
    whitening, one all-zero bank entry, z = raw value), which is what training
    and random-weight benchmarks need.
    """

    COMPONENTS = ("reconstruction", "features", "code", "layout", "statistics", "detail", "flat")
    TWO_SIDED = frozenset({"detail"})  # tests unusual in both directions: |z|
    # Tests whose z is not standardized on the validation images. The flat count is 0 on every clean
    # image, so it has no spread to divide by (one flat window in a validation image would set it,
    # and with it the threshold). Its z is 3·log2(1 + n): one flat window is z = 3, about as rare as
    # one such window is in clean images (3 of 2,000 unused MNIST images, 1 of 2,000 Fashion-MNIST
    # images: a one-sided 3σ tail is 0.13 %), and each doubling of the flat area adds 3.
    FIXED_STANDARDIZATION = {"flat": (0.0, math.log(2.0) / 3.0)}

    def __init__(self, model: ConvAutoencoder, pixel_scale: float = 1.0 / 255.0, bank_size: int = 1) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("pixel_scale", torch.tensor(pixel_scale, dtype=torch.float32))
        self.score_head = ScoreHead(2 * sum(model.cfg.channels), model.cfg.dense[-1], model.cfg.size,
                                    [c in self.TWO_SIDED for c in self.COMPONENTS], bank_size, pixel_scale)

    def set_head(self, **buffers: torch.Tensor) -> None:
        """Install fitted constants of the head by buffer name (densities, banks, standardization)."""
        head = self.score_head
        with torch.no_grad():
            for name, value in buffers.items():
                old = getattr(head, name)
                if old.shape == value.shape:
                    old.copy_(value)
                else:  # a nearest-neighbour bank: its size is the number of training images
                    setattr(head, name, value.to(old.dtype).clone())

    def encodings(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the head's densities and banks are fitted on, for raw-pixel images ``x``."""
        maps, code = self.model.stages(x * self.pixel_scale)
        head = self.score_head
        x = head.pixels(x)
        return {"features": head.feature_stats([h.double() for h in maps]), "code": code.double(),
                "layout": head.layout(x), "statistics": head.image_statistics(x)}

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw values of the tests ``[B, 7]`` (float64, before standardization) and the per-row error."""
        maps, code = self.model.stages(x * self.pixel_scale)
        return self.score_head.components(x, maps, code, self.model.decode(code))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, code = self.model.stages(x * self.pixel_scale)
        return self.score_head(x, maps, code, self.model.decode(code))


LAYOUT_POOL = 4  # the layout test averages LAYOUT_POOL x LAYOUT_POOL pixel cells
BLOCK = 8  # the statistics test's DCT block side (JPEG's, MPEG's)
COMBINE_TEMPERATURE = 2.0  # T of the soft maximum T·log Σ exp(z/T) that combines the tests' z-scores
FLAT_WINDOW = 7  # the flat test's window side, pixels
FLAT_RANGE = 1.5 / 255.0  # "flat": max − min of the window within one grey level (1/255, plus rounding)


def dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``[n, n]`` (row u = frequency u): coefficients are ``C @ block @ C.T``."""
    k = torch.arange(n, dtype=torch.float64)
    c = torch.sqrt(torch.tensor(2.0 / n, dtype=torch.float64)) * torch.cos(
        torch.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    c[0] /= torch.sqrt(torch.tensor(2.0, dtype=torch.float64))
    return c


def _nearest_sq(q: torch.Tensor, bank_t: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
    """Squared distance from each row of ``q [B, D]`` to its nearest column of ``bank_t [D, N]``."""
    d2 = q.pow(2).sum(dim=1, keepdim=True) - 2.0 * (q @ bank_t) + bank_sq
    return d2.min(dim=1).values.clamp_min(0.0)


class ScoreHead(nn.Module):
    """The arithmetic from (input, feature maps, reconstruction) to the score, with its fitted constants.

    A module of its own so that the exported nodes carry its name
    (``/score_head/...``): static quantization leaves them, and the layers
    whose maps they read, in fp32 (see
    :func:`edgewatch.export.quantize.score_tail_nodes`).

    Its arithmetic runs in float64: a nearest-neighbour distance written as
    ``|q|² − 2·q·b + |b|²`` (one MatMul against the whole bank) cancels
    most of its digits, and ONNX Runtime's fp32 MatMul rounds a row
    differently depending on how many rows it multiplies at once: in fp32
    the layout test moved by 3e-5 between a batch of one and of 128, which
    the export's batch-invariance check refuses. In float64 that rounding
    is ~1e-16 and disappears in the fp32 score.
    """

    def __init__(self, n_stats: int, n_code: int, size: int, two_sided: list[bool], bank_size: int = 1,
                 pixel_scale: float = 1.0 / 255.0) -> None:
        super().__init__()
        n_components = len(two_sided)
        self.register_buffer("pixel_scale", torch.tensor(pixel_scale, dtype=torch.float64))
        n_image = 5 * 4 + BLOCK * BLOCK
        n_layout = (size // LAYOUT_POOL) ** 2
        self.size = size
        f64 = torch.float64
        self.register_buffer("feature_mean", torch.zeros(n_stats, dtype=f64))
        self.register_buffer("feature_whitening", torch.eye(n_stats, dtype=f64))
        self.register_buffer("code_bank_t", torch.zeros(n_code, bank_size, dtype=f64))
        self.register_buffer("code_bank_sq", torch.zeros(bank_size, dtype=f64))
        self.register_buffer("layout_bank_t", torch.zeros(n_layout, bank_size, dtype=f64))
        self.register_buffer("layout_bank_sq", torch.zeros(bank_size, dtype=f64))
        self.register_buffer("image_mean", torch.zeros(n_image, dtype=f64))
        self.register_buffer("image_whitening", torch.eye(n_image, dtype=f64))
        self.register_buffer("dct", dct_matrix())
        self.register_buffer("component_mean", torch.zeros(n_components, dtype=f64))
        self.register_buffer("component_std", torch.ones(n_components, dtype=f64))
        self.register_buffer("two_sided", torch.tensor([float(t) for t in two_sided], dtype=f64))
        self.register_buffer("temperature", torch.tensor(COMBINE_TEMPERATURE, dtype=f64))

    @staticmethod
    def feature_stats(maps: list[torch.Tensor]) -> torch.Tensor:
        """``[B, 2·Σchannels]``: each channel's spatial mean, then its spatial standard deviation."""
        means, stds = [], []
        for h in maps:
            m = h.mean(dim=(2, 3))
            means.append(m)
            stds.append(torch.sqrt((h - m[:, :, None, None]).pow(2).mean(dim=(2, 3)) + 1e-12))
        return torch.cat(means + stds, dim=1)

    def layout(self, scaled: torch.Tensor) -> torch.Tensor:
        """``[B, (S/4)²]``: the image averaged over 4×4 pixel cells."""
        n, k = self.size // LAYOUT_POOL, LAYOUT_POOL
        return scaled.reshape(-1, n, k, n, k).mean(dim=(2, 4)).reshape(-1, n * n)

    @staticmethod
    def pixel_differences(scaled: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The horizontal, vertical, two second and diagonal pixel differences (statistics and detail tests)."""
        dx = scaled[:, :, :, 1:] - scaled[:, :, :, :-1]
        dy = scaled[:, :, 1:, :] - scaled[:, :, :-1, :]
        return (dx, dy, dx[:, :, :, 1:] - dx[:, :, :, :-1], dy[:, :, 1:, :] - dy[:, :, :-1, :],
                scaled[:, :, 1:, 1:] - scaled[:, :, :-1, :-1])

    def image_statistics(self, scaled: torch.Tensor,
                         differences: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """``[B, 84]``: log moments of pixel differences, log energy of each 8×8 block-DCT coefficient.

        The blocks start at the top-left corner (where a codec's grid is);
        an image whose side is not a multiple of 8 is edge-padded, as codecs do.
        ``differences`` are :meth:`pixel_differences` of ``scaled`` when the caller has them.
        """
        moments = []
        for d in differences or self.pixel_differences(scaled):
            a = d.abs().flatten(1)
            sq = a * a
            for m in (torch.sqrt(a + 1e-12), a, sq, sq * sq):
                moments.append(torch.log(m.mean(dim=1) + 1e-8))
        pad = -self.size % BLOCK
        padded = F.pad(scaled, (0, pad, 0, pad), mode="replicate") if pad else scaled
        nb = (self.size + pad) // BLOCK
        blocks = padded.reshape(-1, nb, BLOCK, nb, BLOCK).permute(0, 1, 3, 2, 4)
        coeffs = self.dct @ blocks @ self.dct.T
        energy = torch.log(coeffs.pow(2).mean(dim=(1, 2)).reshape(-1, BLOCK * BLOCK) + 1e-6)
        return torch.cat([torch.stack(moments, dim=1), energy], dim=1)

    @staticmethod
    def flat_windows(scaled: torch.Tensor) -> torch.Tensor:
        """``[B]`` (float64): the FLAT_WINDOW² windows inside the image that are flat and brighter than black.

        Max and min pooling are exact, so the count does not depend on the
        batch; black is excluded because it is the background of
        these datasets (a flat black margin is normal).
        """
        top = F.max_pool2d(scaled, FLAT_WINDOW, stride=1)
        bottom = -F.max_pool2d(-scaled, FLAT_WINDOW, stride=1)
        flat = ((top - bottom) <= FLAT_RANGE) & (bottom > FLAT_RANGE)
        return flat.double().flatten(1).sum(dim=1)

    def pixels(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw pixels → 0–1 in float64: the head's own copy of the input, not the network's.

        The model-free tests need pixels no quantizer has rounded: static
        QDQ puts one Quantize/Dequantize pair on a tensor that a quantized
        node reads and routes every reader through it (the statistics test
        moved by up to 29 z on a test model whose pixels are not whole grey
        levels), which :func:`edgewatch.export.quantize.score_tail_nodes`
        prevents for the tensors the head reads; and their differences and
        moments want float64.
        """
        return raw.double() * self.pixel_scale

    def components(self, raw: torch.Tensor, maps: list[torch.Tensor], code: torch.Tensor,
                   recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw tests ``[B, 7]`` (float64) and the per-row reconstruction error ``[B, S]`` (fp32), from raw pixels."""
        x = self.pixels(raw)
        rows = (recon.double() - x).pow(2).mean(dim=3)[:, 0]
        stats = self.feature_stats([h.double() for h in maps])
        features = ((stats - self.feature_mean) @ self.feature_whitening).pow(2).sum(dim=1)
        nearest_code = _nearest_sq(code.double(), self.code_bank_t, self.code_bank_sq)
        nearest_layout = _nearest_sq(self.layout(x), self.layout_bank_t, self.layout_bank_sq)
        differences = self.pixel_differences(x)
        image = ((self.image_statistics(x, differences) - self.image_mean) @ self.image_whitening).pow(2).sum(dim=1)
        dx, dy = differences[:2]
        detail = dx.pow(2).mean(dim=(1, 2, 3)) + dy.pow(2).mean(dim=(1, 2, 3))
        tests = torch.stack([rows.mean(dim=1), features, nearest_code, nearest_layout, image, detail], dim=1)
        flat = torch.log1p(self.flat_windows(x))  # a count: log(1 + n), 0 on clean images
        return torch.cat([torch.log(tests + 1e-8), flat[:, None]], dim=1), rows.float()

    def forward(self, raw: torch.Tensor, maps: list[torch.Tensor], code: torch.Tensor,
                recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tests, rows = self.components(raw, maps, code, recon)
        z = (tests - self.component_mean) / self.component_std
        z = z + self.two_sided * (torch.abs(z) - z)
        return self.combine(z).float(), rows

    def combine(self, z: torch.Tensor) -> torch.Tensor:
        """The soft maximum ``T·log Σ exp(z/T)`` of the z-scores ``[B, K]``, shifted by the largest (no overflow)."""
        top = z.max(dim=1, keepdim=True).values
        return top[:, 0] + self.temperature * torch.log(torch.exp((z - top) / self.temperature).sum(dim=1))


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer from a checkpoint's config and state."""
    cfg = ConvAeConfig(**config)
    tests = ImageScorer.COMPONENTS
    std = state_dict.get("score_head.component_std")
    if (not {"score_head.code_bank_t", "score_head.temperature", "score_head.two_sided"} <= set(state_dict)
            or std is None or tuple(std.shape) != (len(tests),)):
        raise BadInput(f"this conv-ae checkpoint predates the {len(tests)}-test image score ({', '.join(tests)}); "
                       "fit the current head on its weights in minutes with "
                       "'edgewatch train conv-ae --epochs 0 --init-from CHECKPOINT' (same dataset options)")
    scorer = ImageScorer(ConvAutoencoder(cfg), bank_size=int(state_dict["score_head.code_bank_t"].shape[1]))
    scorer.load_state_dict(state_dict)
    return scorer.eval()
