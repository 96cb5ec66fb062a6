"""The wrong model says so within a minute: a stream's first rows outside the card's training range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.agent.watch.range_check import FirstRowsRange
from edgewatch.cli import main
from edgewatch.data.skab import default_skab_dir
from edgewatch.fit.pipeline import Family, FitOptions, fit_model
from tests.plantkit import pump_rows, write_pump_csv

SKAB = default_skab_dir()


def _run_agent(model: Path, source: str, tmp_path: Path, messages: int) -> tuple[list[dict], str]:
    out = tmp_path / f"events-{messages}.jsonl"
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(model), "--source", source, "--sink",
                                    f"jsonl:{out}", "--max-messages", str(messages), "-q"])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return events, res.output


def test_a_model_of_another_operating_point_says_so_within_120_messages(tmp_path: Path) -> None:
    model = tmp_path / "pump.onnx"
    fit_model([write_pump_csv(tmp_path / "normal.csv", pump_rows(3600, seed=1))], model)
    other = write_pump_csv(tmp_path / "slow.csv", pump_rows(600, seed=2, operating_point=0.3, start_row=3600),
                           start_row=3600)
    events, output = _run_agent(model, f"replay:{other}", tmp_path, 120)
    drift = [e for e in events if e["event"] == "drift"]
    assert len(drift) == 1, events
    ev = drift[0]
    assert ev["check"] == "range" and ev["features"][0] in ("flow", "current")
    assert ev["outside"]["flow"]["value"] < ev["outside"]["flow"]["low"] and ev["outside"]["flow"]["std_away"] > 10
    assert "flow at" in ev["reason"] and "training range" in ev["reason"] and "edgewatch fit" in ev["reason"]
    assert "WARNING" in output and "the data is not what the model was made for" in output  # logged too
    same = write_pump_csv(tmp_path / "same.csv", pump_rows(600, seed=3, start_row=3600), start_row=3600)
    events, _ = _run_agent(model, f"replay:{same}", tmp_path, 600)
    assert not [e for e in events if e["event"] == "drift"]


def test_first_rows_range_counts_blocks_and_fires_once() -> None:
    check = FirstRowsRange(["a", "b"], np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([0.3, 0.3]),
                           np.array([True, False]), rows=60, block=20)
    inside = np.full((20, 2), 0.5)
    check.observe(np.zeros(20, dtype=np.intp), inside)
    assert check.take() == []
    outside = np.full((20, 2), 5.0)  # b is outside too, but not watched
    outside[:9, 0] = 0.5  # 11 of 20 outside: a majority
    check.observe(np.zeros(20, dtype=np.intp), outside)
    found = check.take()
    assert len(found) == 1 and found[0].features == ["a"] and found[0].outside["a"]["share"] == pytest.approx(0.55)
    check.observe(np.zeros(20, dtype=np.intp), np.full((20, 2), 5.0))
    assert check.take() == []  # once per stream
    check.reset(0)
    check.observe(np.zeros(20, dtype=np.intp), np.full((20, 2), 5.0))
    assert len(check.take()) == 1  # a reconnected stream is checked again
    edge = FirstRowsRange(["a"], np.array([0.0]), np.array([1.0]), np.array([0.3]), np.array([True]), 20, 20)
    edge.observe(np.zeros(20, dtype=np.intp), np.full((20, 1), 1.2))  # within a quarter of the range beyond it
    assert edge.take() == []


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (SKAB / "data" / "valve1").is_dir(), reason=f"SKAB not found at {SKAB}")
def test_anomaly_free_model_on_a_valve_experiment_says_it_is_the_wrong_model(tmp_path: Path) -> None:
    model = tmp_path / "free.onnx"
    fit_model([SKAB / "data" / "anomaly-free" / "anomaly-free.csv"], model, FitOptions(family=Family.PCA))
    valve = SKAB / "data" / "valve1" / "1.csv"
    events, _ = _run_agent(model, f"replay:{valve}?sep=;&time=datetime", tmp_path, 120)
    drift = [e for e in events if e["event"] == "drift" and e["check"] == "range"]
    assert len(drift) == 1
    assert "Accelerometer2RMS" in drift[0]["features"] and drift[0]["outside"]["Accelerometer2RMS"]["std_away"] > 10


def test_a_scale_or_a_swap_is_asked_about_only_where_the_range_can_tell_it() -> None:
    """A range of 10..100 spans a decade: 130 is as likely the range exceeded by 30 % as a scale off by ten, so
    no scale is suggested; a narrow range (40..60) read at 500 is one decade up and is said. Two features are
    asked about as swapped only where each reads inside the other's range as the check widens it."""
    from edgewatch.agent.watch.range_check import RangeFinding, power_of_ten_off

    def o(value: float, low: float, high: float) -> dict[str, float]:
        return {"value": value, "low": low, "high": high, "std_away": 3.0, "share": 1.0}

    assert power_of_ten_off(o(130.0, 10.0, 100.0)) is None
    assert power_of_ten_off(o(1900.0, 10.0, 100.0)) is None
    assert power_of_ten_off(o(500.0, 40.0, 60.0)) == 10.0
    assert power_of_ten_off(o(5.2, 40.0, 60.0)) == 0.1
    assert power_of_ten_off(o(95.0, 40.0, 60.0)) is None  # 9.5 is not a flow of 40..60 either
    near = RangeFinding(0, ["a", "b"], {"a": o(7.0, 1.0, 3.0), "b": o(2.5, 6.0, 8.0)}, n=10)
    far = RangeFinding(0, ["a", "b"], {"a": o(9.5, 1.0, 3.0), "b": o(4.5, 6.0, 8.0)}, n=10)
    assert "are their inputs swapped?" in near.reason()
    assert "are their inputs swapped?" not in far.reason()
