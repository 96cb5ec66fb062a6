"""Fitting the input scaler that the exported graph applies (see contract.Scaler)."""

from __future__ import annotations

import numpy as np

from edgewatch.contract import Scaler
from edgewatch.errors import BadInput


def fit_minmax(values: np.ndarray) -> Scaler:
    """Min-max scaler from training data: maps each feature's training range to [0, 1].

    A constant feature gets scale 1 (not a division by zero), so it stays
    at 0 in scaled units and any change of it shows up in the error.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr.reshape(-1, arr.shape[-1])
    if arr.size == 0 or not np.isfinite(arr).all():
        raise BadInput("cannot fit a scaler: the data is empty or holds NaN/inf values")
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = hi - lo
    scale = np.where(span > 1e-12, 1.0 / np.where(span > 1e-12, span, 1.0), 1.0)
    return Scaler("minmax", [float(v) for v in lo], [float(v) for v in scale])


def apply_scaler(scaler: Scaler, values: np.ndarray) -> np.ndarray:
    """The same map as the graph's InputScaler, in NumPy (float32)."""
    offset = np.asarray(scaler.offset, dtype=np.float32)
    scale = np.asarray(scaler.scale, dtype=np.float32)
    return ((np.asarray(values, dtype=np.float32) - offset) * scale).astype(np.float32)


def fit_standard(values: np.ndarray) -> Scaler:
    """Standard scaler (mean 0, std 1 on the training rows), as SKAB's baselines use.

    A constant feature gets scale 1, like :func:`fit_minmax`.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr.reshape(-1, arr.shape[-1])
    if arr.size == 0 or not np.isfinite(arr).all():
        raise BadInput("cannot fit a scaler: the data is empty or holds NaN/inf values")
    mean, std = arr.mean(axis=0), arr.std(axis=0)
    scale = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 1.0)
    return Scaler("standard", [float(v) for v in mean], [float(v) for v in scale])
