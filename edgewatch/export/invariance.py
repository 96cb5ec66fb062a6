"""Batch invariance: a window's score must not depend on the other windows of its ONNX Runtime call.

The agent scores the due windows of all its streams in one call, so a
score that depends on its batch companions lets one stream's data change
another stream's alerts. Dynamic int8 (``DynamicQuantizeLSTM``,
``DynamicQuantizeMatMul``) does exactly that: it picks the activation scale
from the whole input tensor of each call (measured on the S0 model: one
window holding 100 among 128 put all 127 normal windows over the
threshold). fp32 and static int8 quantize or compute each value on its own.

:func:`check_batch_invariance` scores calibration windows mixed with
windows holding extreme values (100, 1e6, 1e20, -1e20 in one cell, or the
whole window at 1e6) alone, in one batch of the agent's size, and in random
compositions of random sizes, and compares every window's score and
feature error with its score alone. Export refuses a file that fails
(:class:`BatchDependentScores`, exit 3 like any bad model file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgewatch.errors import BadModelFile

MAX_REL_DIFF = 1e-5
# batches checked at export: at least this many windows, more if the agent's batch is larger (an agent
# built with another batch size, or eval scoring 512 at a time, must not find a file that depends on it)
CHECK_BATCH = 128
EXTREME_VALUES = (100.0, 1e6, 1e20, -1e20)
N_COMPOSITIONS = 12


class BatchDependentScores(BadModelFile):
    """The file's scores change with the other windows of a call: one stream could move another's alerts."""


@dataclass
class Invariance:
    n_windows: int  # distinct windows checked (normal and extreme)
    n_extreme: int
    n_batches: int  # calls compared with the one-window calls
    max_batch: int
    max_rel_diff: float  # over scores and feature errors of every window in every call


def extreme_windows(samples: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` copies of calibration windows, each with one cell set to an extreme value (some wholly)."""
    picks = samples[rng.integers(0, len(samples), n)].copy()
    flat = picks.reshape(n, -1)
    for i in range(n):
        value = EXTREME_VALUES[i % len(EXTREME_VALUES)]
        if i % (len(EXTREME_VALUES) + 1) == len(EXTREME_VALUES):
            flat[i] = 1e6
        else:
            flat[i, rng.integers(0, flat.shape[1])] = value
    return picks


def check_batch_invariance(model: "ScoringModel", samples: np.ndarray, max_batch: int,  # noqa: F821
                           what: str, seed: int = 0) -> Invariance:
    """Raise :class:`BatchDependentScores` when any window's result depends on its batch companions."""
    rng = np.random.default_rng(seed)
    n_extreme = max(1, max_batch // 4)
    normal = samples[:max(1, max_batch - n_extreme)]
    pool = np.concatenate([normal, extreme_windows(samples, n_extreme, rng)]).astype(np.float32)
    alone_s, alone_f = [], []
    for window in pool:
        batch = model.score_many(window[None])
        alone_s.append(batch.scores[0])
        alone_f.append(batch.feature_error[0])
    ref_s, ref_f = np.array(alone_s), np.stack(alone_f)
    compositions = [rng.permutation(len(pool))[:max_batch]]
    compositions += [rng.choice(len(pool), size=int(rng.integers(2, max_batch + 1)), replace=True)
                     for _ in range(N_COMPOSITIONS)]
    worst = 0.0
    for idx in compositions:
        got = model.score_many(pool[idx])
        diff = max(_rel_diff(ref_s[idx], got.scores), _rel_diff(ref_f[idx], got.feature_error))
        worst = max(worst, diff)
        if diff > MAX_REL_DIFF:
            bad = int(np.argmax(_rel_per_row(ref_s[idx], got.scores)))
            raise BatchDependentScores(
                f"{what}: a window's score depends on the other windows of its call (relative difference "
                f"{diff:.3g} in a batch of {len(idx)}, allowed {MAX_REL_DIFF:g}; window {int(idx[bad])} "
                f"scored {float(ref_s[idx][bad]):.6g} alone and {float(got.scores[bad]):.6g} in the batch). "
                f"One stream's data would change other streams' alerts. Dynamic int8 picks its scales per "
                f"call: export with --quantize none or a static quantization; no file was written.")
    return Invariance(len(pool), n_extreme, len(compositions), max_batch, worst)


def _rel_per_row(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    got = np.asarray(got, np.float64).reshape(len(got), -1)
    finite = np.isfinite(ref) & np.isfinite(got)
    same_special = ~finite & ((ref == got) | (np.isnan(ref) & np.isnan(got)))
    with np.errstate(invalid="ignore", over="ignore"):
        rel = np.abs(got - ref) / np.maximum(np.maximum(np.abs(ref), np.abs(got)), 1e-30)
    rel = np.where(finite, rel, np.where(same_special, 0.0, np.inf))
    return rel.max(axis=1) if rel.size else np.zeros(len(ref))


def _rel_diff(ref: np.ndarray, got: np.ndarray) -> float:
    """Largest relative difference; non-finite values must match exactly (inf with inf, NaN with NaN)."""
    rows = _rel_per_row(ref, got)
    return float(rows.max()) if rows.size else 0.0
