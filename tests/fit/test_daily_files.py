"""A folder of one-file-per-period exports, as a logger writes them: a period the logger was off, a file cut off.

``edgewatch fit FOLDER`` in its default form (``fit_model`` with no options). Before, the report of a month of
daily files with a day missing and a file cut off at noon said nothing of either gap (each file's windows were
cut at its end, so nothing wrong was learnt, but the reader took it for an even month) and ``skipped 1 line(s)``
without saying in which of the 29 files.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from edgewatch.fit.normal_data import read_normal_data
from edgewatch.fit.pipeline import fit_model

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
STEP = 10.0
ROWS = 2160  # six hours a file


def _export(folder: Path, part: int, rng: np.random.Generator, cut: bool = False) -> None:
    """The ``part``-th six hours of a tank's level, flow and pump current, as the logger writes one file."""
    i = np.arange(part * ROWS, (part + 1) * ROWS)
    level = 50 + 25 * np.sin(2 * np.pi * i / 720) + rng.normal(0, 0.3, ROWS)
    flow = 40 + 0.5 * level + rng.normal(0, 1.0, ROWS)
    amps = 8 + 0.05 * flow + rng.normal(0, 0.1, ROWS)
    lines = ["Timestamp,Level,Flow,Amps"] + [
        f"{T0 + timedelta(seconds=float(k) * STEP):%Y-%m-%d %H:%M:%S},{a:.2f},{b:.2f},{c:.3f}"
        for k, a, b, c in zip(i, level, flow, amps)]
    text = "\n".join(lines) + "\n"
    if cut:  # the logger stopped mid-write: half the file, its last line torn in its time
        half = text.index("\n", len(text) // 2) + 1
        text = text[:half + 18]
    (folder / f"tank_{part:02d}.csv").write_text(text)


def _folder(path: Path, missing: int | None, cut: int | None) -> Path:
    path.mkdir()
    rng = np.random.default_rng(5)
    for part in range(6):
        if part != missing:
            _export(path, part, rng, cut=part == cut)
    return path


def test_a_missing_file_and_a_file_cut_off_are_gaps_and_the_torn_line_names_its_file(tmp_path: Path) -> None:
    report = fit_model([_folder(tmp_path / "days", missing=3, cut=1)], tmp_path / "m.onnx")
    lines = report.lines()
    gap = next((x for x in lines if "gap(s) in time" in x), None)
    assert gap is not None, lines
    # part 1 ends at about 09:00 (cut at half), part 2 begins at 12:00; part 3 (18:00-24:00) is missing
    assert gap.strip().startswith("2 gap(s) in time") and "the longest 6.0 h, from 2026-11-01 17:59:50" in gap, gap
    torn = next(x for x in lines if "another number of fields" in x)
    assert "(tank_01.csv: 1)" in torn, torn


def test_files_that_follow_on_make_no_gap(tmp_path: Path) -> None:
    lines = fit_model([_folder(tmp_path / "days", missing=None, cut=None)], tmp_path / "m.onnx").lines()
    assert not any("gap(s) in time" in x for x in lines), lines
    assert not any("another number of fields" in x for x in lines), lines


def _one_file(path: Path, end: str) -> Path:
    """Six hours of the tank's rows; ``end`` replaces the file's last characters (its line end and more)."""
    path.mkdir()
    _export(path, 0, np.random.default_rng(6))
    f = path / "tank_00.csv"
    text = f.read_text()
    if end == "torn":  # the write stopped after the first digit of the last current: "...,11.372" -> "...,1"
        text = text[:text.rindex(",") + 2]
    elif end == "no line end":
        text = text.rstrip("\n")
    f.write_text(text)
    return f


def test_a_last_value_cut_short_by_a_torn_write_is_skipped_and_said(tmp_path: Path) -> None:
    """Before, ``...,64.08,1`` of ``...,64.08,11.372`` had every field and was read as a current of 1 A."""
    f = _one_file(tmp_path / "torn", "torn")
    data = read_normal_data([f])
    assert data.rows == ROWS - 1 and data.notes.ragged == 1
    assert float(np.min(np.concatenate(data.segments)[:, data.features.index("Amps")])) > 8.5
    report = fit_model([f], tmp_path / "m.onnx")
    assert any("or cut off at the file's end" in x for x in report.lines())


def test_a_file_without_its_final_line_end_keeps_its_last_row(tmp_path: Path) -> None:
    for end in ("no line end", ""):
        data = read_normal_data([_one_file(tmp_path / (end or "whole"), end)])
        assert data.rows == ROWS and data.notes.ragged == 0, end
