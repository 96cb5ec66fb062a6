"""Strict JSON text and times, as every event and fleet payload edgewatch sends is written.

Why one module: a consumer (an MQTT subscriber, a JSONL reader, the live
page, ``fleet status``) relies on every message being strict JSON
(``allow_nan=False``) whatever the data did, so an episode's ``end`` can
never become unsendable after its ``start`` went out, and on one time
format. Numbers that are not finite become ``null`` here and times that
``datetime`` cannot show become ``null``; nothing here raises on a value.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np


def dumps(obj: Any) -> str:
    """Compact strict JSON; a non-finite number anywhere becomes ``null`` rather than an error.

    NumPy scalars are written as numbers; anything else JSON cannot hold
    (a path, say) as its ``str``. Payloads on the wire are ``dumps(obj).encode()``.
    """
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_default)
    except ValueError:  # a NaN/inf that a builder did not clean (an observer's own field, say)
        return json.dumps(finite(obj), separators=(",", ":"), allow_nan=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    try:
        return number(float(value))
    except (TypeError, ValueError):
        return str(value)


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinity (in dicts, lists, tuples, NumPy scalars) as None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


def number(value: float | None, digits: int | None = None) -> float | None:
    """A JSON-safe number: ``None`` for None, NaN and infinities, else (optionally rounded) float."""
    if value is None:
        return None
    f = float(value)
    if not math.isfinite(f):
        return None
    return round(f, digits) if digits is not None else f


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC time of epoch seconds, to the millisecond (``2026-11-23T14:07:00.120+00:00``).

    None for None, and for a time ``datetime`` cannot show (never raises).
    """
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def iso_now() -> str:
    """The time now, as :func:`iso` writes it."""
    return iso(time.time())  # type: ignore[return-value]
