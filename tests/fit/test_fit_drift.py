"""The agent's drift check on a model from ``edgewatch fit``: it judges each feature in what the model reads.

A feature whose level drifts through the normal data (a warming temperature)
is scored by its rate; its level must not be KS-tested against the training
data, or replaying the very file the model was fitted on raises ``drift``
(seen: 4 ``drift`` + 3 ``drift_end`` on 'Temperature'). Real drifts must
still be found: a faster warming by the model's score, a level shift of a
steady sensor by the drift check. Files without the reference's
``unchecked`` (older edgewatch) keep their old drift check.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.model import ScoringModel
from tests.agent.test_without_torch import BLOCKER

ROWS = 12_000  # the default drift check samples every 10th row, 512 of them: the first check at row 5,120
NAMES = ["Temperature", "Pressure", "Flow", "Vibration"]
MODELS = Path(__file__).resolve().parents[2] / "models"


def pump(rows: int, seed: int, warm_per_row: float = 20.0 / ROWS, faster_from: int | None = None,
         pressure_shift_from: int | None = None) -> np.ndarray:
    """A pump's sensors: a temperature warming steadily from 40 degC, steady pressure, flow and vibration."""
    rng = np.random.default_rng(seed)
    rate = np.full(rows, warm_per_row)
    if faster_from is not None:
        rate[faster_from:] *= 150.0  # the cooling failed: 0.25 degC a row, over fit's 0.115 it says it sees
    temperature = 40.0 + np.concatenate([[0.0], np.cumsum(rate[:-1])]) + rng.normal(0, 0.2, rows)
    pressure = 3.0 + rng.normal(0, 0.05, rows)
    if pressure_shift_from is not None:
        pressure[pressure_shift_from:] += 0.4
    flow = 120.0 + rng.normal(0, 1.0, rows)
    vibration = 0.02 + np.abs(rng.normal(0, 0.004, rows))
    return np.stack([temperature, pressure, flow, vibration], axis=1)


def write_csv(path: Path, x: np.ndarray) -> Path:
    lines = ["timestamp," + ",".join(NAMES)]
    for i, row in enumerate(x):
        stamp = f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        lines.append(stamp + "," + ",".join(f"{v:.5f}" for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``edgewatch ARGS`` as a user types it (torch blocked for the agent, as on an edge box)."""
    proc = subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


def fit(cwd: Path, normal: Path, out: Path) -> str:
    """``edgewatch fit NORMAL -o OUT`` in its default form (torch is not blocked: fit may try conv1d-ae): its report."""
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "fit", str(normal), "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def replay(cwd: Path, model: Path, data: Path) -> tuple[list[dict], str]:
    """``edgewatch agent run --model M --source replay:D`` (default sink: stdout): its events and its log."""
    proc = run(cwd, "agent", "run", "--model", str(model), "--source", f"replay:{data}")
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return events, proc.stderr


def drift_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] in ("drift", "drift_end")]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("driftrate")
    normal = write_csv(d / "normal.csv", pump(ROWS, seed=11))
    report = fit(d, normal, d / "m.onnx")
    return {"dir": d, "normal": normal, "model": d / "m.onnx", "report": report}


def test_fit_records_the_rate_feature_as_unchecked(fitted: dict) -> None:
    assert "rate      Temperature" in fitted["report"]
    card = ScoringModel(fitted["model"]).card
    assert card.trained_on["rates"] == ["Temperature"]
    assert list(card.drift_reference.unchecked) == ["Temperature"]
    assert "rate" in card.drift_reference.unchecked["Temperature"]


def test_replaying_the_normal_file_the_model_was_fitted_on_raises_no_drift(fitted: dict) -> None:
    events, log = replay(fitted["dir"], fitted["model"], fitted["normal"])
    assert drift_events(events) == [], drift_events(events)[:2]
    assert not [e for e in events if e["event"] == "start"]
    said = [line for line in log.splitlines()
            if "drift check: not testing the level of Temperature: the model reads its rate" in line]
    assert len(said) == 1, log  # said once, with the reason
    assert "rate" in said[0]


def test_a_faster_warming_is_still_caught_by_the_score(fitted: dict) -> None:
    seen = re.search(r"a change of pace smaller than Temperature ([0-9.]+) per second is not seen", fitted["report"])
    assert seen and float(seen.group(1)) < 150 * 20.0 / ROWS  # the faster pace is one fit says its model sees
    faster = write_csv(fitted["dir"] / "faster.csv", pump(ROWS, seed=12, faster_from=7000))
    events, _ = replay(fitted["dir"], fitted["model"], faster)
    starts = [e for e in events if e["event"] == "start"]
    assert starts, "the temperature warming 150x faster raised no episode"
    assert 7000 <= starts[0]["seq"] <= 7100, starts[0]["seq"]
    assert starts[0]["top_features"][0]["feature"] == "Temperature"
    assert all("Temperature" not in e.get("features", []) for e in drift_events(events))


def test_a_level_shift_of_a_steady_sensor_is_still_a_drift(fitted: dict) -> None:
    shifted = write_csv(fitted["dir"] / "pressure.csv", pump(ROWS, seed=13, pressure_shift_from=4000))
    events, _ = replay(fitted["dir"], fitted["model"], shifted)
    drifts = [e for e in events if e["event"] == "drift"]
    assert drifts and drifts[0]["check"] == "ks", drift_events(events)
    assert drifts[0]["features"] == ["Pressure"]
    assert "Temperature" not in drifts[0]["statistic"]  # not tested: the model reads its rate


def test_a_file_written_without_unchecked_keeps_its_old_drift_check(fitted: dict) -> None:
    """A file as an older edgewatch wrote it (no ``unchecked`` in its reference) tests every feature's level."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(fitted["model"]))
    for prop in model.metadata_props:
        if prop.key == "edgewatch.drift_reference":
            ref = json.loads(prop.value)
            del ref["unchecked"]
            prop.value = json.dumps(ref, separators=(",", ":"))
    old = fitted["dir"] / "old.onnx"
    onnx.save(model, str(old))
    assert ScoringModel(old).card.drift_reference.unchecked == {}
    events, log = replay(fitted["dir"], old, fitted["normal"])
    assert [e["features"] for e in events if e["event"] == "drift"][:1] == [["Temperature"]]  # as before the fix
    assert "not testing the level" not in log


def test_a_shipped_model_file_loads_and_checks_every_feature() -> None:
    from edgewatch.agent.watch.drift_watch import DriftWatch

    card = ScoringModel(MODELS / "equipment-lstm-ae.onnx").card
    assert card.drift_reference is not None and card.drift_reference.unchecked == {}
    watch = DriftWatch(card.drift_reference, card.features)
    assert watch.checked_features == card.features
    assert watch.alpha_corrected == pytest.approx(0.05 / card.n_features)
