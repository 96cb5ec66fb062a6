"""A text column holding one word only is no state column to ``fit``, though the CSV table now keeps its words.

The table keeps each row's text of any text column of few distinct texts (``eval csv`` reads a labelled day of
``Run`` alone by a model's codes: tests/eval/test_csv_states.py); ``fit`` still codes only the columns that are state
columns (2 to 10 texts) in every file it is given, as before.
"""

from __future__ import annotations

from pathlib import Path

from edgewatch.fit.normal_data import read_normal_data


def _write(path: Path, states: list[str], start: int) -> Path:
    rows = ["time,flow,Pump State"] + [f"{1.7e9 + start + i:.0f},{1 + 0.01 * (i % 7)},{s}"
                                       for i, s in enumerate(states)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_column_of_one_word_is_left_out_as_text_and_a_file_of_one_word_keeps_the_column_uncoded(
        tmp_path: Path) -> None:
    alone = read_normal_data([_write(tmp_path / "run.csv", ["Run"] * 100, 0)])
    assert alone.notes.states == {} and alone.features == ["flow"]
    assert "Pump State" in alone.notes.text_columns
    both = read_normal_data([_write(tmp_path / "a.csv", ["Run"] * 100, 0),
                             _write(tmp_path / "b.csv", ["Run"] * 50 + ["Stop"] * 50, 100)])
    assert both.notes.states == {} and both.features == ["flow"], (both.notes.states, both.features)
