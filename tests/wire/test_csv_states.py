"""Text state columns (wire/csv_states.py): which text columns are states, the code of each text, live lookups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgewatch.wire.csv_states import MAX_STATES, StateLookup, describe, is_state_column, state_codes
from edgewatch.wire.csv_table import read_csv_table


@pytest.mark.parametrize("texts, codes", [
    (["Run", "Stop"], {"Run": 1, "Stop": 0}),
    (["Closed", "Open"], {"Closed": 0, "Open": 1}),
    (["TRUE", "FALSE"], {"FALSE": 0, "TRUE": 1}),
    (["On", "Off"], {"Off": 0, "On": 1}),
    (["Running", "Idle"], {"Idle": 0, "Running": 1}),
    (["Auto", "Manual", "Off"], {"Auto": 0, "Manual": 1, "Off": 2}),  # not a pair: sorted
    (["On", "Running", "Off"], {"Off": 0, "On": 1, "Running": 2}),  # three texts are never folded onto two codes
    (["Off", "Stop"], {"Off": 0, "Stop": 1}),  # both off words: no pair
    (["Run", "RUN", "run ", "Stop"], {"RUN": 1, "Stop": 0}),  # one state in any case (one spelling)
    (["b", "A", "c"], {"A": 0, "b": 1, "c": 2}),  # sorted case-folded
])
def test_state_codes(texts: list[str], codes: dict[str, int]) -> None:
    assert state_codes(texts) == codes
    assert state_codes(list(reversed(texts))) == codes  # whatever order the file met them in


def test_one_text_or_too_many_are_no_state_column() -> None:
    assert not is_state_column(["Auto"])
    assert not is_state_column(["Auto", "AUTO"])
    assert is_state_column([f"s{k}" for k in range(MAX_STATES)])
    assert not is_state_column([f"s{k}" for k in range(MAX_STATES + 1)])
    with pytest.raises(ValueError):
        state_codes([f"s{k}" for k in range(MAX_STATES + 1)])


def test_live_values_are_looked_up_in_any_case_bools_by_their_text_or_pair_and_unknown_texts_are_none() -> None:
    run = StateLookup({"Run": 1, "Stop": 0})
    assert [run.code(v) for v in ("Run", "RUN", " stop ", True, False)] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert run.code("Fault") is None and run.code(3.0) is None
    alarm = StateLookup({"FALSE": 0, "TRUE": 1})
    assert alarm.code(True) == 1.0 and alarm.code("true") == 1.0
    mode = StateLookup({"Auto": 0, "Manual": 1, "Off": 2})
    assert mode.code(True) is None  # no pair: a bool names no mode
    assert describe({"Stop": 0, "Run": 1}) == "Run=1, Stop=0"


def test_the_table_keeps_each_rows_text_of_a_state_column_and_not_of_names(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    rows = ["time,flow,Pump State,Valve,Note"]
    for i in range(300):
        state = "" if i == 5 else ("Run" if i % 50 < 40 else "Stop")
        rows.append(f"2024-01-01 00:{i // 60:02d}:{i % 60:02d},{i * 0.1:.1f},{state},{'Open' if i % 2 else 'Closed'},"
                    f"note {i}")
    path.write_text("\n".join(rows) + "\n")
    table = read_csv_table(path)
    assert set(table.text_columns) == {"Pump State", "Valve", "Note"}  # still text to whoever reads numbers
    assert set(table.state_cells) == {"Pump State", "Valve"}  # 300 distinct notes are no states
    texts, ids = table.state_cells["Pump State"]
    assert texts == ["Run", "Stop"] and len(ids) == 300
    assert ids[5] == -1 and ids[0] == 0 and ids[45] == 1
    assert np.array_equal(np.asarray(texts)[ids[ids >= 0]] == "Run",
                          np.array([i % 50 < 40 for i in range(300) if i != 5]))
