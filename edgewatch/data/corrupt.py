"""Image corruptions for system S2, in NumPy and SciPy only, seeded.

Each corruption takes ``[n, rows, cols]`` pixel values 0–255 and a severity
1–5 and returns the same shape, clipped to 0–255. Severity scales with the
same step for every kind, so severity 1 is subtle (an autoencoder misses
many) and 5 is gross. Brightness is the hardest for a reconstruction model:
a brighter digit is still a digit.

Two directions: noise, stripes and occlusion *add* detail; blur, defocus,
pixelate, low_contrast and jpeg *remove* detail or contrast (what a lens
out of focus, a dirty window, a low-resolution sensor or a starved link
does). A reconstruction error sees the first kind and is blind to, or even
lower on, the second, which is why both must be tested. The
detail-removing ladders follow the ImageNet-C recipes (Hendrycks &
Dietterich 2019) rescaled to 28x28 pixels.
"""

from __future__ import annotations

import enum

import numpy as np
from edgewatch.errors import BadInput, require


class Corruption(str, enum.Enum):
    GAUSSIAN_NOISE = "gaussian_noise"
    BLUR = "blur"
    STRIPES = "stripes"
    OCCLUSION = "occlusion"
    ROTATION = "rotation"
    BRIGHTNESS = "brightness"
    DEFOCUS = "defocus"
    PIXELATE = "pixelate"
    LOW_CONTRAST = "low_contrast"
    JPEG = "jpeg"


# severity 1..5 ladders of the detail-removing kinds
DEFOCUS_RADIUS = (1.0, 1.5, 2.0, 2.5, 3.0)  # disk kernel, pixels
PIXELATE_SIDE = (21, 16, 12, 9, 7)  # the image is box-averaged down to SIDE x SIDE, then blown up
CONTRAST_FACTOR = (0.6, 0.45, 0.3, 0.2, 0.1)  # deviations from the image's mean are multiplied by it
JPEG_QUALITY = (40, 25, 15, 10, 6)  # the libjpeg quality scale, 8x8 DCT luminance table
_JPEG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)


def _check_severity(severity: int) -> None:
    if not 1 <= severity <= 5:
        raise BadInput(f"severity must be 1..5, got {severity}")


def corrupt(images: np.ndarray, kind: Corruption, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A corrupted copy of ``images`` (float32, 0–255)."""
    _check_severity(severity)
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise BadInput(f"images must be [n, rows, cols], got {x.shape}")
    n, rows, cols = x.shape
    ndimage = require("scipy.ndimage", "images")
    s = severity
    kind = Corruption(kind)
    if kind is Corruption.GAUSSIAN_NOISE:
        out = x + rng.normal(0.0, 20.0 * s, size=x.shape)
    elif kind is Corruption.BLUR:
        out = ndimage.gaussian_filter(x, sigma=(0, 0.4 + 0.3 * s, 0.4 + 0.3 * s))
    elif kind is Corruption.STRIPES:
        out = x.copy()
        period = 7 - s  # 6 .. 2 rows between stripes
        offsets = rng.integers(0, period, size=n)
        vertical = rng.random(n) < 0.5
        for i in range(n):
            if vertical[i]:
                out[i][:, offsets[i]::period] = 255.0
            else:
                out[i][offsets[i]::period, :] = 255.0
    elif kind is Corruption.OCCLUSION:
        out = x.copy()
        size = 4 + 3 * s  # 7 .. 19 pixels square
        r0 = rng.integers(0, rows - size + 1, size=n)
        c0 = rng.integers(0, cols - size + 1, size=n)
        fill = np.where(rng.random(n) < 0.5, 0.0, 255.0)
        for i in range(n):
            out[i, r0[i]:r0[i] + size, c0[i]:c0[i] + size] = fill[i]
    elif kind is Corruption.ROTATION:
        out = np.empty_like(x)
        angles = 18.0 * s * np.where(rng.random(n) < 0.5, -1.0, 1.0)
        for i in range(n):
            out[i] = ndimage.rotate(x[i], angles[i], reshape=False, order=1, mode="constant", cval=0.0)
    elif kind is Corruption.BRIGHTNESS:
        out = x + 30.0 * s
    elif kind is Corruption.DEFOCUS:
        out = ndimage.convolve(x, _disk(DEFOCUS_RADIUS[s - 1])[None], mode="constant", cval=0.0)
    elif kind is Corruption.PIXELATE:
        out = _pixelate(x, PIXELATE_SIDE[s - 1])
    elif kind is Corruption.LOW_CONTRAST:
        mean = x.mean(axis=(1, 2), keepdims=True)
        out = mean + (x - mean) * CONTRAST_FACTOR[s - 1]
    elif kind is Corruption.JPEG:
        out = _jpeg(x, JPEG_QUALITY[s - 1])
    else:  # pragma: no cover - the enum is exhaustive
        raise BadInput(f"unknown corruption {kind}")
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def _disk(radius: float) -> np.ndarray:
    """A normalized disk kernel, edge pixels weighted by how much of them the disk covers (4x supersampled)."""
    half = int(np.ceil(radius))
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    grid = np.arange(-half, half + 1)
    yy = (grid[:, None, None, None] + sub[None, None, :, None])
    xx = (grid[None, :, None, None] + sub[None, None, None, :])
    kernel = ((yy ** 2 + xx ** 2) <= radius ** 2).mean(axis=(2, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def _box_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` area-averaging resampling: each output cell averages the input it overlaps."""
    edges_out = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges_out[:-1, None], edges_out[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _pixelate(x: np.ndarray, side: int) -> np.ndarray:
    """Box-average down to ``side`` x ``side`` cells, then nearest-neighbour back up (a low-resolution sensor)."""
    _, rows, cols = x.shape
    down_r, down_c = _box_matrix(min(side, rows), rows), _box_matrix(min(side, cols), cols)
    small = np.einsum("ir,nrc,jc->nij", down_r, x, down_c)
    up_r = (np.arange(rows) * down_r.shape[0]) // rows
    up_c = (np.arange(cols) * down_c.shape[0]) // cols
    return small[:, up_r][:, :, up_c]


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """JPEG's lossy step: 8x8 block DCT, coefficients rounded to the scaled luminance table, inverse DCT."""
    fft = require("scipy.fft", "images")
    n, rows, cols = x.shape
    pr, pc = -rows % 8, -cols % 8
    padded = np.pad(x.astype(np.float64) - 128.0, ((0, 0), (0, pr), (0, pc)), mode="edge")
    blocks = padded.reshape(n, (rows + pr) // 8, 8, (cols + pc) // 8, 8).transpose(0, 1, 3, 2, 4)
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    table = np.clip(np.floor((_JPEG_LUMA * scale + 50.0) / 100.0), 1.0, 255.0)
    coeffs = np.round(fft.dctn(blocks, axes=(-2, -1), norm="ortho") / table) * table
    back = fft.idctn(coeffs, axes=(-2, -1), norm="ortho").transpose(0, 1, 3, 2, 4)
    return back.reshape(n, rows + pr, cols + pc)[:, :rows, :cols] + 128.0


def parse_corruptions(text: str) -> list[Corruption]:
    """``"gaussian_noise,blur"`` → enum members, with the valid names in the error."""
    kinds = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            kinds.append(Corruption(part))
        except ValueError:
            valid = ", ".join(c.value for c in Corruption)
            raise BadInput(f"unknown corruption {part!r}; choose from {valid}") from None
    if not kinds:
        raise BadInput("no corruption named")
    return kinds


def corrupt_mix(images: np.ndarray, kinds: list[Corruption], severity: int, fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corrupt a ``fraction`` of the images, kinds dealt in turn.

    Returns the images, a 0/1 label per image (1 = corrupted) and the kind
    index per image (-1 = clean, else the index into ``kinds``), so AUROC can
    be reported per corruption type.
    """
    if not 0.0 < fraction <= 1.0:
        raise BadInput(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    x = np.asarray(images, dtype=np.float32).copy()
    n = len(x)
    chosen = np.sort(rng.choice(n, size=int(round(fraction * n)), replace=False))
    kind_of = np.full(n, -1, dtype=np.int64)
    kind_of[chosen] = np.arange(len(chosen)) % len(kinds)
    for k, kind in enumerate(kinds):
        idx = np.flatnonzero(kind_of == k)
        if idx.size:
            x[idx] = corrupt(x[idx], kind, severity, rng)
    labels = (kind_of >= 0).astype(np.uint8)
    return x, labels, kind_of
