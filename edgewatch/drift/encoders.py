"""Reducing images to a few features before testing them for drift.

A per-pixel KS test on 784 pixels is weak (Bonferroni divides alpha by
784) and blind to structure. Two reductions are offered:

* an ONNX encoder given by the user (any model with one input ``[B, ...]``
  and an output ``[B, d]``, for example the conv autoencoder's encoder), run
  with ONNX Runtime on raw pixels 0–255, the project's image convention;
* by default, PCA to ``dims`` components fitted on the *pooled* reference and
  current images. Pooling keeps the test fair: a projection fitted on the
  reference alone describes the reference a little better than any fresh
  sample (in-sample variance is inflated), which KS on large sets reads as
  drift. A projection that is a symmetric function of both sets leaves them
  exchangeable under no drift, and lets a drift direction show up in the
  components. A seeded random Gaussian projection is the data-blind option.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.drift.threads import limited_threads
from edgewatch.errors import BadInput, BadModelFile


class Reduction(str, enum.Enum):
    PCA = "pca"
    RANDOM_PROJECTION = "random-projection"
    NONE = "none"


@dataclass
class ReductionConfig:
    kind: Reduction = Reduction.PCA
    dims: int = 32
    seed: int = 0


@dataclass
class Reduced:
    reference: np.ndarray  # [n, d]
    current: np.ndarray  # [m, d]
    features: list[str]
    description: str  # what was done, for the report


def reduce_pair(reference: np.ndarray, current: np.ndarray, config: ReductionConfig | None = None,
                threads: int = 1) -> Reduced:
    """Flatten both image sets and project them to ``config.dims`` features the same way."""
    with limited_threads(threads):
        return _reduce_pair(reference, current, config)


def _reduce_pair(reference: np.ndarray, current: np.ndarray, config: ReductionConfig | None) -> Reduced:
    cfg = config or ReductionConfig()
    kind = Reduction(cfg.kind)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cur = np.asarray(current, dtype=np.float64).reshape(len(current), -1)
    if ref.shape[1] != cur.shape[1]:
        raise BadInput(f"reference and current images differ in size ({ref.shape[1]} and {cur.shape[1]} values)")
    d = ref.shape[1]
    if kind is Reduction.NONE:
        return Reduced(ref, cur, [f"px{i}" for i in range(d)], f"no reduction ({d} values per sample)")
    dims = min(cfg.dims, d)
    if kind is Reduction.RANDOM_PROJECTION:
        w = np.random.default_rng(cfg.seed).normal(size=(d, dims)) / np.sqrt(d)
        return Reduced(ref @ w, cur @ w, [f"rp{i + 1}" for i in range(dims)],
                       f"random Gaussian projection of {d} values to {dims} (seed {cfg.seed})")
    pooled = np.concatenate([ref, cur])
    mean = pooled.mean(axis=0)
    centred = pooled - mean
    cov = centred.T @ centred / max(1, len(pooled) - 1)
    vals, vecs = np.linalg.eigh(cov)
    top = np.argsort(vals)[::-1][:dims]
    w = vecs[:, top]
    w *= np.where(w.sum(axis=0) < 0, -1.0, 1.0)  # fix signs so runs agree
    share = float(vals[top].sum() / max(vals.sum(), 1e-12))
    return Reduced((ref - mean) @ w, (cur - mean) @ w, [f"pc{i + 1}" for i in range(dims)],
                   f"PCA of {d} values to {dims} components fitted on reference and current pooled "
                   f"({share:.0%} of the variance)")


class OnnxEncoder:
    """An ONNX model that maps a batch of samples to ``[B, d]`` features (ONNX Runtime, one thread)."""

    def __init__(self, path: str | os.PathLike[str], output: str | None = None, threads: int = 1) -> None:
        from edgewatch.agent.model import open_session

        self.path = Path(path)
        if not self.path.is_file():
            raise BadModelFile(f"encoder {self.path} does not exist")
        self.session = open_session(self.path, threads, what="encoder ")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BadModelFile(f"encoder {self.path} has {len(inputs)} inputs; it needs exactly one [B, ...]")
        self.input = inputs[0]
        outputs = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in outputs:
            raise BadModelFile(f"encoder {self.path} has no output {output!r}; its outputs: {outputs}")
        self.output = output or outputs[0]
        self.sample_shape = [d if isinstance(d, int) else None for d in self.input.shape[1:]]

    def _fit_shape(self, x: np.ndarray) -> np.ndarray:
        want = self.sample_shape
        if len(want) == x.ndim - 1 and all(w is None or w == s for w, s in zip(want, x.shape[1:])):
            return x
        if None not in want and int(np.prod(want)) == int(np.prod(x.shape[1:])):
            return x.reshape(len(x), *want)  # e.g. [n, 28, 28] into [n, 1, 28, 28]
        raise BadInput(f"encoder {self.path} takes samples of shape {want}, the data has {list(x.shape[1:])}")

    def encode(self, samples: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Features ``[n, d]`` for ``samples`` (a sample of any shape the encoder can take)."""
        x = self._fit_shape(np.asarray(samples, dtype=np.float32))
        parts = [self.session.run([self.output], {self.input.name: x[i:i + batch_size]})[0]
                 for i in range(0, len(x), batch_size)]
        z = np.concatenate(parts).reshape(len(x), -1).astype(np.float64)
        if not np.isfinite(z).all():
            raise BadInput(f"encoder {self.path} produced non-finite features")
        return z

    def reduce_pair(self, reference: np.ndarray, current: np.ndarray) -> Reduced:
        ref, cur = self.encode(reference), self.encode(current)
        return Reduced(ref, cur, [f"z{i + 1}" for i in range(ref.shape[1])],
                       f"ONNX encoder {self.path.name} (output {self.output!r}, {ref.shape[1]} features)")
