"""The user's labels: eval csv runs the file through the agent's runtime; plot draws the 0/1 column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.eval.skab_score import Binary
from edgewatch.fit.pipeline import fit_model
from tests.plantkit import pump_rows, write_pump_csv

FAULTS = ((700, 900), (1600, 1660))


@pytest.fixture
def labelled(tmp_path: Path) -> dict[str, Path]:
    model = tmp_path / "pump.onnx"
    fit_model([write_pump_csv(tmp_path / "normal.csv", pump_rows(3600, seed=1))], model)
    x = pump_rows(2400, seed=2, start_row=3600)
    labels = np.zeros(len(x))
    for a, b in FAULTS:
        x[a:b, 0] *= 0.7
        x[a:b, 2] += 0.4
        labels[a:b] = 1
    data = write_pump_csv(tmp_path / "today.csv", x, labels=labels, start_row=3600)
    return {"model": model, "data": data, "dir": tmp_path, "labels": labels}


def test_eval_csv_in_the_default_form_matches_what_the_agent_sends(labelled: dict[str, Path]) -> None:
    res = CliRunner().invoke(main, ["eval", "csv", "--model", str(labelled["model"]), "--data", str(labelled["data"]),
                                    "--label-column", "anomaly", "--out", str(labelled["dir"] / "f.json")])
    assert res.exit_code == 0, res.output
    assert "2 of 2 labelled segments caught" in res.output
    assert "0 episode(s) overlapping no label" in res.output and "a day" in res.output
    alerts = labelled["dir"] / "alerts.jsonl"
    run = CliRunner().invoke(main, ["agent", "run", "--model", str(labelled["model"]), "--source",
                                    f"replay:{labelled['data']}", "--sink", f"jsonl:{alerts}", "-q"])
    assert run.exit_code == 0, run.output
    flags = np.zeros(2400, dtype=np.int8)
    for line in alerts.read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] == "end":
            flags[ev["episode"]["start_seq"]:ev["episode"]["last_over_seq"] + 1] = 1
    b = Binary.of(flags, labelled["labels"])
    assert f"F1 {b.f1:.3f}   FAR {b.far:.2f} %   MAR {b.mar:.2f} %" in res.output
    figures = json.loads((labelled["dir"] / "f.json").read_text())
    assert figures["caught"] == 2 and figures["false_episodes"] == 0
    delays = [s["delay_s"] for s in figures["segments"]]
    assert all(0 <= d <= 15 for d in delays), delays


def test_eval_csv_refuses_a_file_without_the_label_or_the_features(labelled: dict[str, Path]) -> None:
    res = CliRunner().invoke(main, ["eval", "csv", "--model", str(labelled["model"]), "--data", str(labelled["data"]),
                                    "--label-column", "fault"])
    assert res.exit_code == 4 and "no label column 'fault'" in res.output and "anomaly" in res.output
    other = labelled["dir"] / "other.csv"
    other.write_text("timestamp,flow,anomaly\n1,2,0\n2,3,0\n")
    res = CliRunner().invoke(main, ["eval", "csv", "--model", str(labelled["model"]), "--data", str(other)])
    assert res.exit_code == 4 and "does not have as numeric columns" in res.output


def test_plot_draws_the_truth_column_of_the_replayed_file(labelled: dict[str, Path]) -> None:
    pytest.importorskip("matplotlib")
    run_file = labelled["dir"] / "run.jsonl"
    run = CliRunner().invoke(main, ["agent", "run", "--model", str(labelled["model"]), "--source",
                                    f"replay:{labelled['data']}", "--record-run", str(run_file), "-q"])
    assert run.exit_code == 0, run.output
    png = labelled["dir"] / "run.png"
    res = CliRunner().invoke(main, ["plot", str(run_file), "-o", str(png), "--truth", str(labelled["data"]),
                                    "--truth-column", "anomaly"])
    assert res.exit_code == 0, res.output
    assert "truth caught 2/2" in res.output and "0 overlapping no truth" in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["plot", str(run_file), "-o", str(png), "--truth-column", "anomaly"])
    assert bad.exit_code == 2 and "give --truth DATA.csv too" in bad.output
