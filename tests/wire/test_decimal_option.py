"""``edgewatch fit --decimal ,`` as a README user runs it, on a file whose numbers cannot tell their decimal mark.

A German export in l/h writes 1.205 for 1205 in every row of normal operation (no flow below 1000, no decimal
comma anywhere): the reader takes ``.`` for a decimal point and says it guessed. The day with the fault writes
853 l/h too, which tells: fitted on the guess, the replay raised its alert at its 10th row (the whole day 1000
times the training range) instead of the fault at row 500.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.plantkit import START, pump_rows

ROOT = Path(__file__).resolve().parents[2]  # this checkout's edgewatch, whatever the working directory
FAULT = (500, 600)
NORMAL_ROWS = 1800


def _dotted(v: float) -> str:
    n = int(round(v))
    return f"{n // 1000}.{n % 1000:03d}" if n >= 1000 else str(n)


def _export(path: Path, x: np.ndarray, start_row: int = 0) -> Path:
    """Flow in l/h with '.' grouping thousands, pressure in mbar and current in mA as integers; ISO times."""
    lines = ["Zeitstempel;Durchfluss;Druck;Strom"]
    for i, r in enumerate(x):
        t = (START + timedelta(seconds=start_row + i)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{t};{_dotted(r[0] * 10)};{round(r[1] * 1000)};{round(r[2] * 1000)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def plant(tmp_path: Path) -> dict[str, Path]:
    return {"normal": _export(tmp_path / "normal.csv", pump_rows(NORMAL_ROWS, seed=1)),
            "today": _export(tmp_path / "today.csv", pump_rows(900, seed=2, fault=FAULT, start_row=NORMAL_ROWS),
                             NORMAL_ROWS),
            "dir": tmp_path}


def _edgewatch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", *args], capture_output=True, text=True,
                         timeout=120, cwd=cwd, env=env)
    assert run.returncode == 0, run.stderr
    return run


def _starts(plant: dict[str, Path], model: str) -> list[int]:
    """Rows of today's file at which the replay opened an episode."""
    alerts = plant["dir"] / f"{model}.jsonl"
    _edgewatch(plant["dir"], "agent", "run", "--model", model, "--source", "replay:today.csv",
               "--sink", f"jsonl:{alerts}")
    events = [json.loads(line) for line in alerts.read_text().splitlines()]
    t0 = START.timestamp() + NORMAL_ROWS
    return [round(e["ts"] - t0) for e in events if e["event"] == "start"]


def test_fit_with_the_decimal_mark_given_then_the_replay_alerts_at_the_fault(plant: dict[str, Path]) -> None:
    report = _edgewatch(plant["dir"], "fit", "--decimal", ",", "normal.csv", "-o", "told.onnx").stdout
    assert "separator ';', decimal comma (as given), thousands mark '.'" in report
    assert "could as well group thousands" not in report
    flow = next(line for line in report.splitlines() if line.strip().startswith("Durchfluss") and ".." in line)
    low, high = (float(v) for v in flow.split()[1:4:2])
    assert 1100 < low < high < 1300, flow  # l/h, as the plant means them
    starts = _starts(plant, "told.onnx")
    assert len(starts) == 1 and FAULT[0] <= starts[0] < FAULT[0] + 20, starts


def test_fit_in_the_default_form_says_its_guess_and_the_option(plant: dict[str, Path]) -> None:
    """Without the option: the report names the guess and '--decimal ,'; the replay on it alerts at once."""
    report = _edgewatch(plant["dir"], "fit", "normal.csv", "-o", "guess.onnx").stdout
    assert "'.' read as the decimal mark" in report and "edgewatch fit --decimal ," in report
    starts = _starts(plant, "guess.onnx")
    assert starts and starts[0] < 20, starts  # the whole day outside the range learnt: not the fault
