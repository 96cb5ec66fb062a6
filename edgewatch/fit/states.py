"""Text state columns in ``edgewatch fit``: coded as numbers, and their codes written into the model file.

The rule of what a state column is and which code each text gets is
:mod:`edgewatch.wire.csv_states` (the agent reads live texts by it). Here:
the codes are chosen once over every file given (``fit a.csv b.csv``: a
state seen only in the second file has the same code in both), each file's
column becomes numbers, and the model file's card gets the codes of the
state columns that are among its features, so that the agent needs no
flag to read ``"state": "Run"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgewatch.contract import PREFIX, ModelCard
from edgewatch.errors import BadModelFile
from edgewatch.files import write_bytes
from edgewatch.wire.csv_states import MAX_STATES, StateLookup, distinct_states, is_state_column, state_codes
from edgewatch.wire.csv_table import CsvTable
from edgewatch.wire.onnx_read import ModelBytes, metadata_record

STATES_KEY = PREFIX + "states"


def code_state_columns(tables: Sequence[CsvTable]) -> dict[str, dict[str, int]]:
    """Make each table's state columns numeric columns (NaN where blank) and return their codes.

    A column is coded when it is a state column in every file and all its
    files' texts together are still at most :data:`MAX_STATES`; the numeric
    columns are put back in the header's order, so the features keep the
    file's order. Tables without a state column are left as they are.
    """
    names = [n for n in tables[0].state_cells
             if all(n in t.state_cells and is_state_column(t.state_cells[n][0]) for t in tables)]
    codes: dict[str, dict[str, int]] = {}
    for name in names:
        texts = distinct_states(text for t in tables for text in t.state_cells[name][0])
        if len(texts) <= MAX_STATES:
            codes[name] = state_codes(texts)
    for table in tables:
        if not codes:
            break
        for name, mapping in codes.items():
            texts, ids = table.state_cells[name]
            lookup = StateLookup(mapping)
            by_id = np.array([lookup.code(t) for t in texts] + [np.nan], dtype=np.float64)
            values = by_id[ids]  # -1: the last entry, NaN
            table.numeric[name] = values
            table.missing[name] = int(np.isnan(values).sum())
            table.text_columns.pop(name, None)
        order = {n: i for i, n in enumerate(table.layout.header)}
        table.numeric = dict(sorted(table.numeric.items(), key=lambda kv: order.get(kv[0], len(order))))
    return codes


def write_states(out: Path, states: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Add the codes of the model's state features to the card of the model file ``out``; returns what was added.

    The card is read back from the new bytes before they replace the file,
    so a file whose card does not validate is never kept. The graph and
    every other entry stay byte for byte (the entry is appended, as a
    signature is).
    """
    data = out.read_bytes()
    parsed = ModelBytes.parse(data, str(out))
    props = {k: v for k, v, _ in parsed.metadata}
    features = json.loads(props.get(PREFIX + "features", "[]"))
    ours = {f: {t: int(c) for t, c in states[f].items()} for f in features if f in states}
    if not ours:
        return {}
    if STATES_KEY in props:
        raise BadModelFile(f"{out} already carries state codes")
    text = json.dumps(ours, separators=(",", ":"))
    ModelCard.from_props({**props, STATES_KEY: text}, str(out))
    write_bytes(out, data + metadata_record(STATES_KEY, text))
    return ours
