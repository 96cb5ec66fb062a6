"""Text state columns in ``edgewatch fit``: coded as numbers; and the card fields that ``fit`` takes from the data.

The rule of what a state column is and which code each text gets is
:mod:`edgewatch.wire.csv_states` (the agent reads live texts by it). Here:
the codes are chosen once over every file given (``fit a.csv b.csv``: a
state seen only in the second file has the same code in both), and each
file's column becomes numbers. :func:`card_fields` gives the writers of
every family (pca, the univariate detector, conv1d-ae) what the data says
beyond the model: the codes of the state columns among its features
(``states``), so that the agent needs no flag to read ``"state": "Run"``,
each feature's logging step (``logged_every``), so that it holds a
60-s tag's first value as long as the model was fitted on it held, and
the totalisers fit kept as their rate (``totalisers``), so that it
differences their raw values by fit's rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewatch.wire.csv_states import MAX_STATES, StateLookup, distinct_states, is_state_column, state_codes
from edgewatch.wire.csv_table import CsvTable

if TYPE_CHECKING:
    from edgewatch.fit.normal_data import NormalData


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


def card_fields(data: NormalData, features: Sequence[str]) -> dict[str, Any]:
    """The card fields the data gives the model of ``features``: ``states``, ``logged_every`` and ``totalisers``,
    each only when it has something to say, so that a file without text states or tags logged at several rates is written byte
    for byte as before (the writers build them into the card they validate and write: no second read and write)."""
    out: dict[str, Any] = {}
    states = data.notes.states
    ours = {f: {t: int(c) for t, c in states[f].items()} for f in features if f in states}
    if ours:
        out["states"] = ours
    steps = data.logged_every(features)
    if steps is not None:
        out["logged_every"] = steps
    counted = {f: data.notes.totalisers[f] for f in features if f in data.notes.totalisers}
    if counted:  # totalisers kept as their rate (edgewatch/fit/totalisers.py): the agent differences them alike
        out["totalisers"] = counted
    return out
