"""Parity between the exported file and the PyTorch scorer it came from.

Quantization and the exporter may change scores; what matters is whether
they change *decisions*. :func:`compare_scores` reports the relative score
error and the share of samples on which both sides take the same decision
at the card's threshold; export refuses a file below :data:`MIN_AGREEMENT`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgewatch.errors import EdgewatchError

MIN_AGREEMENT = 0.99


class ParityFailed(EdgewatchError):
    """The exported model decides differently from the PyTorch model it came from."""


@dataclass
class Parity:
    n: int
    max_rel_err: float
    mean_rel_err: float
    decision_agreement: float  # share of samples with the same over/under-threshold decision
    n_over_threshold: int  # by the reference (PyTorch) scores


def compare_scores(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> Parity:
    """Relative error of ``candidate`` against ``reference`` and decision agreement at ``threshold``."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cand = np.asarray(candidate, dtype=np.float64).ravel()
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError(f"cannot compare {ref.size} reference scores with {cand.size} candidate scores")
    rel = np.abs(cand - ref) / np.maximum(np.abs(ref), 1e-8)
    if not np.isfinite(cand).all():
        rel = np.full_like(ref, np.inf)
    agree = float(np.mean((ref > threshold) == (cand > threshold)))
    return Parity(int(ref.size), float(rel.max()), float(rel.mean()), agree, int((ref > threshold).sum()))


def check_parity(parity: Parity, what: str, min_agreement: float = MIN_AGREEMENT) -> None:
    """Raise :class:`ParityFailed` with advice when decisions disagree too often."""
    if parity.decision_agreement < min_agreement:
        raise ParityFailed(
            f"{what}: the exported model agrees with PyTorch on only {parity.decision_agreement:.1%} of "
            f"{parity.n} calibration decisions (need {min_agreement:.0%}; max relative score error "
            f"{parity.max_rel_err:.3g}). Export with --quantize none, or recalibrate the threshold; "
            "no file was written.")
