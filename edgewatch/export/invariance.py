"""Batch invariance: a window's score must not depend on the other windows of its ONNX Runtime call.

The agent scores the due windows of all its streams in one call, so a
score that depends on its batch companions lets one stream's data change
another stream's alerts. Dynamic int8 (``DynamicQuantizeLSTM``,
``DynamicQuantizeMatMul``) does exactly that: it picks the activation scale
from the whole input tensor of each call (measured on the S0 model: one
window holding 100 among 128 put all 127 normal windows over the
threshold). fp32 and static int8 quantize or compute each value on its own.

:func:`check_batch_invariance` scores calibration windows mixed with
windows holding extreme values (100, 1e6, +-1e20, +-inf or NaN, in one cell
or in the whole window) alone, in one batch of the agent's size, and in
random compositions of random sizes, and compares every window's score and
feature error with its score alone. Export refuses a file that fails
(:class:`BatchDependentScores`, exit 3 like any bad model file). NaN and
inf matter for forms that take ranges from the data: an all-NaN window
made the sentinel form's first-layer range NaN for the whole call until
NaN was replaced before the clip (:mod:`edgewatch.export.sentinel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgewatch.agent.isolation import EXTREME_VALUES, MAX_REL_DIFF, rel_per_row
from edgewatch.errors import BadModelFile

# batches checked at export: at least this many windows, more if the agent's batch is larger (an agent
# built with another batch size, or eval scoring 512 at a time, must not find a file that depends on it)
CHECK_BATCH = 128
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
    """``n`` copies of calibration windows with extreme values: each value in one cell, then in every cell."""
    picks = samples[rng.integers(0, len(samples), n)].copy()
    flat = picks.reshape(n, -1)
    k = len(EXTREME_VALUES)
    for i in range(n):
        value = EXTREME_VALUES[i % k]
        if (i // k) % 2:
            flat[i] = value
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
            bad = int(np.argmax(rel_per_row(ref_s[idx], got.scores)))
            raise BatchDependentScores(
                f"{what}: a window's score depends on the other windows of its call (relative difference "
                f"{diff:.3g} in a batch of {len(idx)}, allowed {MAX_REL_DIFF:g}; window {int(idx[bad])} "
                f"scored {float(ref_s[idx][bad]):.6g} alone and {float(got.scores[bad]):.6g} in the batch). "
                f"One stream's data would change other streams' alerts. Dynamic int8 picks its scales per "
                f"call: export with --quantize auto (the family's isolated form), none or static; no file "
                f"was written.")
    return Invariance(len(pool), n_extreme, len(compositions), max_batch, worst)


def _rel_diff(ref: np.ndarray, got: np.ndarray) -> float:
    """Largest relative difference; non-finite values must match exactly (inf with inf, NaN with NaN)."""
    rows = rel_per_row(ref, got)
    return float(rows.max()) if rows.size else 0.0
