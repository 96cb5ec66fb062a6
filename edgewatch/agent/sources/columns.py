"""A drained batch of plain JSON messages parsed at once, as columns: the agent's fast path.

The usual traffic is one form over and over: bare arrays of floats
(``[0.1, 0.2, 0.3, 0.4]``) or ``{"stream": "id", "values": [...]}``. For
such a batch the checks of :func:`~edgewatch.agent.sources.parsing.parse_message`
(size, arity, every value a float within float32, a sane stream id) hold
for all messages when they hold for a few set-wide tests (the set of types,
the largest length, the largest magnitude), run in C over the whole batch
instead of message by message in Python.

Why it never changes a verdict: :func:`parse_columns` accepts a batch only
when every message in it is one the message-by-message path would accept
with the same values and stream (no ``ts``, no integers to convert, no
other keys); anything else, one bad message included, gives ``None`` and
the whole batch goes through :func:`parse_message`, which gives each
message its reason. A batch with bad input therefore costs what it cost
before; a clean one costs one decoder call per message and a few passes in
C over the batch (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np

from edgewatch.agent.sources.parsing import _MAX_STREAM_ID, FLOAT32_MAX

try:
    from orjson import JSONDecodeError as _DecodeError
    from orjson import loads as _loads
except ImportError:  # without orjson every batch takes the message-by-message path
    _loads = None

_values = itemgetter("values")
_stream = itemgetter("stream")


@dataclass(slots=True)
class Columns:
    """A clean batch: row ``i`` of ``values`` came from ``streams[i]`` (None: the stream is the source)."""

    values: np.ndarray  # [n, n_features] float64
    streams: list[str] | None  # None when every message was a bare array


def parse_columns(payloads: Sequence[str | bytes], n_features: int, max_bytes: int) -> Columns | None:
    """The batch as columns when every message is a clean array or ``{"stream", "values"}`` object, else None."""
    if _loads is None or not payloads or max(map(len, payloads)) > max_bytes:
        return None
    try:
        objs = list(map(_loads, payloads))
    except (_DecodeError, TypeError):
        return None
    kinds = set(map(type, objs))
    if kinds == {list}:
        values, streams = objs, None
    elif kinds == {dict} and set(map(len, objs)) == {2}:
        try:
            values, streams = list(map(_values, objs)), list(map(_stream, objs))
        except KeyError:
            return None
        if set(map(type, streams)) != {str}:
            return None
        lengths = list(map(len, streams))
        if min(lengths) < 1 or max(lengths) > _MAX_STREAM_ID:
            return None
    else:
        return None
    # values of another type than list fail the second test: a string or an object yields no floats
    if set(map(len, values)) != {n_features} or set(map(type, chain.from_iterable(values))) != {float}:
        return None
    array = np.fromiter(chain.from_iterable(values), dtype=np.float64, count=len(values) * n_features)
    if not np.abs(array).max() <= FLOAT32_MAX:  # also false for a NaN
        return None
    return Columns(array.reshape(len(values), n_features), streams)
