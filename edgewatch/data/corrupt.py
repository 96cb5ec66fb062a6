"""Image corruptions for system S2, in NumPy and SciPy only, seeded.

Each corruption takes ``[n, rows, cols]`` pixel values 0–255 and a severity
1–5 and returns the same shape, clipped to 0–255. Severity scales with the
same step for every kind, so severity 1 is subtle (an autoencoder misses
many) and 5 is gross. Brightness is the hardest for a reconstruction model:
a brighter digit is still a digit.
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
    else:  # pragma: no cover - the enum is exhaustive
        raise BadInput(f"unknown corruption {kind}")
    return np.clip(out, 0.0, 255.0).astype(np.float32)


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
