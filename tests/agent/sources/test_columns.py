"""A drained batch parsed as columns (``sources/columns.py``) gives what ``parse_message`` gives, or nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.sources.columns import parse_columns
from edgewatch.agent.sources.parsing import Measurement, parse_message

F = 4
CLEAN = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=F, max_size=F)
# forms parse_message accepts or refuses, beside the clean ones
ODD = st.sampled_from([
    "[1, 2, 3, 4]", "[0.5, 0.5, 0.5]", "[0.5, 0.5, 0.5, true]", '[0.5, 0.5, 0.5, "x"]', "[NaN, 0.5, 0.5, 0.5]",
    "[1e39, 0.5, 0.5, 0.5]", "[1e400, 0.5, 0.5, 0.5]", "garbage", "{}", '{"values": [0.5, 0.5, 0.5, 0.5]}',
    '{"stream": "", "values": [0.5, 0.5, 0.5, 0.5]}', '{"stream": 7, "values": [0.5, 0.5, 0.5, 0.5]}',
    '{"stream": "s", "values": [0.5, 0.5, 0.5, 0.5], "ts": 1700000000}', '{"stream": "s", "v": [0.5, 0.5, 0.5, 0.5]}',
    '{"stream": "s", "values": "0.5"}', '{"stream": "s", "values": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}}',
    '{"stream": "' + "x" * 201 + '", "values": [0.5, 0.5, 0.5, 0.5]}', "[[0.5], 0.5, 0.5, 0.5]", "0.5", "null",
    b"\xff\xfe", b"[0.5, 0.5, 0.5, 0.5]", "[0.5, 0.5, 0.5, 0.5]" + " " * 300])


def _clean(values: list[float], stream: str | None) -> str:
    return json.dumps(values if stream is None else {"stream": stream, "values": values})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(CLEAN, st.none() | st.sampled_from(["a", "b", "pump-7"])), ODD),
                min_size=1, max_size=12))
def test_columns_accept_only_what_parse_message_accepts_the_same(batch) -> None:
    payloads = [m if isinstance(m, (str, bytes)) else _clean(*m) for m in batch]
    cols = parse_columns(payloads, F, max_bytes=300)
    one_by_one = [parse_message(p, F, max_bytes=300) for p in payloads]
    clean = [m for m in batch if isinstance(m, tuple)]
    if len(clean) == len(batch) and len({m[1] is None for m in clean}) == 1:
        assert cols is not None  # a clean batch of one form takes the fast path
    if cols is None:
        return
    assert all(type(m) is Measurement and m.ts is None for m in one_by_one)
    np.testing.assert_array_equal(cols.values, np.array([m.values for m in one_by_one], dtype=np.float64))
    if cols.streams is None:
        assert all(m.stream is None for m in one_by_one)
    else:
        assert cols.streams == [m.stream for m in one_by_one]


@pytest.mark.parametrize("with_stream", [False, True])
def test_a_clean_batch_of_one_form_takes_the_columns(with_stream: bool) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, F)).round(5).tolist()
    payloads = [_clean(r, f"s{i % 7}" if with_stream else None) for i, r in enumerate(rows)]
    cols = parse_columns(payloads, F, max_bytes=1000)
    assert cols is not None
    np.testing.assert_array_equal(cols.values, np.array(rows))
    assert cols.streams == ([f"s{i % 7}" for i in range(50)] if with_stream else None)
