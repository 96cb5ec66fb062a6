"""``edgewatch eval csv`` on a model fitted on a text state column (``Pump State`` = ``Run``/``Stop``).

docs/fit.md's flow in its default form: ``edgewatch fit n.csv -o pump.onnx`` (no flags), then ``edgewatch eval csv
--model pump.onnx --data labelled.csv --label-column anomaly`` on a day whose running vibration rises 30 % from its
middle (labelled) and whose state column says ``Fault`` for 100 rows (a state the normal data never held). The
figures must be what the agent makes of the same file replayed (``agent run --source replay:``), torch blocked.
The run/stop pump and its seeds are those of tests/fit/test_text_states.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgewatch.eval.skab_score import Binary
from tests.fit.test_fit_drift import run
from tests.fit.test_plant_kinds import _pump_motor
from tests.fit.test_text_states import STATE, _pump_file

ONSET = 3600
FAULT = (2000, 2100)  # rows whose state column says "Fault"


def _labelled(path: Path, state: str, keep: np.ndarray | None = None, fault: tuple[int, int] | None = FAULT
              ) -> tuple[Path, np.ndarray]:
    """The seed-111 day (vibration +30 % while running from ``ONSET``) with its state as ``state`` and a label
    column, 1 from the onset; ``keep``: only those rows. Returns the file and its labels."""
    cols = _pump_motor(np.random.default_rng(111), 7200, rise_from=ONSET)
    _pump_file(path, cols, state, fault=fault)
    labels = (np.arange(7200) >= ONSET).astype(int)
    lines = path.read_text().splitlines()
    body = [f"{x},{y}" for x, y in zip(lines[1:], labels)]
    if keep is not None:
        body, labels = [b for b, k in zip(body, keep) if k], labels[keep]
    path.write_text("\n".join([lines[0] + ",anomaly", *body]) + "\n")
    return path, labels


def _agent_flags(cwd: Path, data: str) -> tuple[np.ndarray, str]:
    """The agent's episodes on the replayed file as 0/1 per row it read (``start_seq``..``last_over_seq``)."""
    proc = run(cwd, "agent", "run", "--model", "pump.onnx", "--source", f"replay:{data}")
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    tail = proc.stderr.rsplit("messages ", 1)[1]
    messages, bad = int(tail.split()[0]), int(tail.split("bad ", 1)[1].split(",")[0])
    flags = np.zeros(messages - bad, dtype=np.int8)  # the rows it scored: seq counts those
    for e in events:
        if e["event"] == "end":
            flags[e["episode"]["start_seq"]:e["episode"]["last_over_seq"] + 1] = 1
    return flags, proc.stderr


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("eval-states")
    _pump_file(d / "n.csv", _pump_motor(np.random.default_rng(11), 4800), "text")
    report = run(d, "fit", "n.csv", "-o", "pump.onnx").stdout
    assert f"state     {STATE:24s} Run=1, Stop=0" in report, report
    return d


def test_eval_csv_reads_the_state_words_by_the_models_codes_and_skips_an_unknown_state_as_the_agent_does(
        fitted: Path) -> None:
    """Before, eval csv refused the file: the model reads 'Pump State', which it did not have as a number."""
    d = fitted
    _, labels = _labelled(d / "labelled.csv", "text")
    proc = run(d, "eval", "csv", "--model", "pump.onnx", "--data", "labelled.csv", "--label-column", "anomaly",
               "--out", "f.json")
    out = proc.stdout
    assert ("rows      7,100 scored from row 0; 100 skipped unknown_state (a state the model's normal data never "
            "held: Pump State 'Fault' 100)") in out, out
    assert "1 of 1 labelled segments caught" in out and "0 episode(s) overlapping no label" in out, out
    assert "'Pump State' is 'Fault', a state the normal data of the model never held" in proc.stderr, proc.stderr
    figures = json.loads((d / "f.json").read_text())
    assert figures["unknown_state"] == {STATE: {"Fault": 100}} and figures["false_episodes"] == 0
    assert 0 <= figures["segments"][0]["delay_s"] <= 10, figures["segments"]

    # the agent replaying the same file: the same 100 rows refused, the same episodes on the 7,100 it read
    flags, log = _agent_flags(d, "labelled.csv")
    assert "bad input by reason: unknown_state 100" in log and len(flags) == 7100, log[-800:]
    read = np.ones(7200, dtype=bool)
    read[FAULT[0]:FAULT[1]] = False
    b = Binary.of(flags, labels[read])
    assert f"F1 {b.f1:.3f}   FAR {b.far:.2f} %   MAR {b.mar:.2f} %   (TP {b.tp:,} FP {b.fp:,}" in out, (b, out)
    assert b.tp > 0 and b.fp == 0

    # the same day with the state written as the codes (1/0) and the Fault rows blank: the same figures
    _labelled(d / "numbers.csv", "number", fault=None)
    lines = (d / "numbers.csv").read_text().splitlines()
    for i in range(*FAULT):
        head, _, label = lines[1 + i].rpartition(",")
        lines[1 + i] = head.rpartition(",")[0] + ",," + label
    (d / "numbers.csv").write_text("\n".join(lines) + "\n")
    numbers = run(d, "eval", "csv", "--model", "pump.onnx", "--data", "numbers.csv").stdout
    assert "100 skipped (a feature was blank)" in numbers, numbers
    assert numbers.splitlines()[2:] == out.splitlines()[2:-1], (numbers, out)  # -1: "figures written to"


def test_a_day_that_only_ran_is_read_though_its_state_column_holds_one_word(fitted: Path) -> None:
    """A labelled file of running rows only: 'Run' alone (in two spellings) is no state column to fit, but it is
    the model's state 1; before, eval csv refused the file as text."""
    d = fitted
    running = _pump_motor(np.random.default_rng(111), 7200)["amps"] > 20
    path, labels = _labelled(d / "running.csv", "text", keep=running, fault=None)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + [x.replace(",Run,", ",RUN,") if i % 2 else x
                                           for i, x in enumerate(lines[1:])]) + "\n")
    out = run(d, "eval", "csv", "--model", "pump.onnx", "--data", "running.csv").stdout
    assert f"rows      {int(running.sum()):,} scored from row 0\n" in out, out
    assert "1 of 1 labelled segments caught" in out and "0 episode(s) overlapping no label" in out, out
    flags, log = _agent_flags(d, "running.csv")
    assert "bad 0," in log and len(flags) == running.sum(), log[-800:]
    b = Binary.of(flags, labels)
    assert f"F1 {b.f1:.3f}   FAR {b.far:.2f} %   MAR {b.mar:.2f} %   (TP {b.tp:,} FP {b.fp:,}" in out, (b, out)
