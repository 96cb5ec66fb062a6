"""A pump that stops and starts in normal operation: ``edgewatch fit``, then the agent's drift check over hours.

Before the drift reference carried operating points, a stop (or a run)
longer than the drift sample (512 kept rows, every 10th message: 85
minutes at one row a second) was tested against the whole stop/run mix of
the training data: 3 ``drift`` events in 6.4 h of normal data (a run of
100 minutes and the stops after it). ``edgewatch fit`` now writes the operating points it
finds into the reference, and the agent compares a stream with the points
it ran in (docs/drift.md). Fit and agent run as the README runs them, on
an edge box (torch blocked: fit chooses pca, in a second).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.model import ScoringModel
from edgewatch.contract.drift_reference import drift_reference_from
from tests.fit.test_behaviour import _compressor, _write
from tests.fit.test_fit_drift import drift_events
from tests.fit.test_fit_drift import run as edgewatch  # edgewatch ARGS as on an edge box (torch blocked)

DRIVEN = ("flow", "current", "pressure", "vibration")  # near zero while the pump is stopped
TRAINING = [(1800, True), (900, False)] * 8  # 6 h: runs of 30 minutes, stops of 15
LONG_STOPS = [(6000, True), (6000, False), (2400, True), (7000, False), (1800, True)]  # 6.4 h, stops of 100+ min


def pump(seed: int, schedule: list[tuple[int, bool]], offset: tuple[str, float, int] | None = None,
         slower_from: int | None = None) -> dict[str, np.ndarray]:
    """One row a second of a compressor (tests/fit/test_behaviour.py) that runs and stops on ``schedule``."""
    rng = np.random.default_rng(seed)
    on = np.concatenate([np.full(seconds, running) for seconds, running in schedule])
    cols = _compressor(rng, on.size)
    if offset is not None:
        name, by, start = offset
        cols[name][start:] += by
    if slower_from is not None:  # half speed, never seen in the normal data
        for k in DRIVEN:
            cols[k][slower_from:] *= 0.5
    for k in DRIVEN:
        cols[k] = np.where(on, cols[k], rng.normal(0, 0.01, on.size))
    return cols


def replay(cwd: Path, model: Path, data: Path) -> list[dict]:
    out = edgewatch(cwd, "agent", "run", "--model", str(model), "--source", f"replay:{data}").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def drifts(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "drift"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("driftmodes")
    normal = _write(d / "normal.csv", pump(1, TRAINING))
    report = edgewatch(d, "fit", str(normal), "-o", str(d / "m.onnx")).stdout
    return {"dir": d, "normal": normal, "model": d / "m.onnx", "report": report,
            "long_stops": _write(d / "long_stops.csv", pump(2, LONG_STOPS))}


def test_fit_writes_the_operating_points_it_reports_into_the_drift_reference(fitted: dict) -> None:
    assert "two distinct operating points" in fitted["report"]
    ref = ScoringModel(fitted["model"]).card.drift_reference
    assert ref.modes is not None and len(ref.modes.n) == 2
    assert sum(ref.modes.n) == ref.n == 21_600
    assert set(DRIVEN) <= set(ref.modes.features)
    running = int(np.argmax([c[ref.modes.features.index("flow")] for c in ref.modes.centre]))
    assert ref.modes.n[running] == pytest.approx(14_400, abs=100)  # 4 of the 6 hours ran
    said = edgewatch(fitted["dir"], "agent", "check", str(fitted["model"])).stdout
    assert f"drift check   reference of 21600 rows in 2 operating points ({ref.modes.n[0]}, {ref.modes.n[1]} rows" in said


def test_hours_of_normal_stops_and_runs_raise_no_drift(fitted: dict) -> None:
    events = replay(fitted["dir"], fitted["model"], fitted["long_stops"])
    assert drift_events(events) == [], drift_events(events)[:1]
    assert [e for e in events if e["event"] == "start"] == []  # nor an alert: the model knows both points


def test_the_same_file_without_its_operating_points_drifts_on_each_long_stop_as_before(fitted: dict) -> None:
    """Read as a file written before ``modes``: its reference is what the older fit wrote, and it gives the
    older check's events (the false alarms reproduced)."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(fitted["model"]))
    for prop in model.metadata_props:
        if prop.key == "edgewatch.drift_reference":
            ref = json.loads(prop.value)
            del ref["modes"]
            prop.value = json.dumps(ref, separators=(",", ":"))
    old = fitted["dir"] / "old.onnx"
    onnx.save(model, str(old))
    reference = ScoringModel(old).card.drift_reference
    assert reference.modes is None
    rows = np.loadtxt(fitted["normal"], delimiter=",", skiprows=1, usecols=range(1, 6))
    assert reference == drift_reference_from(rows)  # the reference an edgewatch without modes wrote
    found = drifts(replay(fitted["dir"], old, fitted["long_stops"]))
    # the first 100-minute run and the stops after it (KS distances 0.27-0.67 against the floor of 0.25)
    assert len([e for e in found if set(DRIVEN) <= set(e["features"])]) >= 2, found
    assert all("modes" not in e for e in found)


def test_an_offset_of_one_sensor_while_running_is_still_a_drift(fitted: dict) -> None:
    """Flow reads 0.8 high (8 % of its running level, about one running sd) from the 6,000th row on."""
    data = _write(fitted["dir"] / "flow.csv", pump(3, [(19_800, True)], offset=("flow", 0.8, 6000)))
    found = drifts(replay(fitted["dir"], fitted["model"], data))
    assert len(found) == 1 and found[0]["features"] == ["flow"], found
    assert found[0]["modes"][running_mode(fitted)] == 1.0


def test_a_level_outside_every_operating_point_is_a_drift(fitted: dict) -> None:
    data = _write(fitted["dir"] / "half.csv", pump(4, [(19_800, True)], slower_from=6000))
    found = drifts(replay(fitted["dir"], fitted["model"], data))
    assert found and set(DRIVEN) <= set(found[0]["features"]), found


def running_mode(fitted: dict) -> int:
    modes = ScoringModel(fitted["model"]).card.drift_reference.modes
    return int(np.argmax([c[modes.features.index("flow")] for c in modes.centre]))


def test_the_torch_family_writes_the_same_operating_points() -> None:
    """conv1d-ae (chosen by fit when torch is installed and it does better) takes the points the same way."""
    pytest.importorskip("torch")
    from edgewatch.models.conv1d_ae import Conv1dAutoencoder
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.window_ae import WindowAeConfig, train_window_ae

    cols = pump(5, [(600, True), (300, False)] * 2)
    x = np.column_stack(list(cols.values()))
    centres = [dict(zip(cols, x[:600].mean(axis=0).tolist())), dict(zip(cols, x[600:900].mean(axis=0).tolist()))]
    cfg = WindowAeConfig(window=16, train=TrainConfig(epochs=1, batch_size=64, seed=0, progress=False))
    run = train_window_ae(Conv1dAutoencoder, "conv1d-ae", x, list(cols), cfg, drift_modes=centres)
    ref = run.card().drift_reference
    assert ref.modes is not None and ref.modes.n == [1200, 600]
    assert ref.modes == drift_reference_from(x.astype(np.float32), features=list(cols), modes=centres).modes
