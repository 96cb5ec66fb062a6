"""``edgewatch plot``: a PNG of a recorded run with its truth, from the real agent loop."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.ops.recorder import RunRecorder
from edgewatch.agent.sources import Item, Kind
from edgewatch.cli import main
from edgewatch.data.faults import FEATURES, FaultSpec
from edgewatch.data.simulator import simulate_series
from edgewatch.errors import BadInput
from edgewatch.plot.plot_run import agreement
from edgewatch.plot.run_file import Interval, read_fault_truth, read_nab_windows, truth_for
from tests.modelkit import make_card, write_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(tmp_path: Path, values: np.ndarray, ts: np.ndarray, stream: str = "eq-0") -> Path:
    card = make_card(window=10, features=list(FEATURES), threshold=0.15, stride=2, k=2, n=3)
    agent = Agent(ScoringModel(write_model(tmp_path / "square.onnx", card)), [], AgentOptions(drift_every=0))
    path = tmp_path / "run.jsonl"
    rec = RunRecorder.for_agent(agent, path)
    agent.subscribe(rec.on_event, rec.on_batch)
    items = [Item(Kind.MEASUREMENT, "t", Measurement(v.tolist(), float(t), stream), float(t))
             for v, t in zip(values, ts)]
    for lo in range(0, len(items), 50):
        agent.process(items[lo:lo + 50])
    rec.close()
    return path


@pytest.fixture
def sim_run(tmp_path: Path) -> tuple[Path, Path]:
    series = simulate_series(900, seed=5, start_ts=1.7e9,
                             faults=[FaultSpec.at("overload", 200), FaultSpec.at("slow_drift", 600, 200)])
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(r.to_json() + "\n" for r in series.truth))
    return record(tmp_path, series.values, series.timestamps), truth


def test_plot_command_draws_a_run_with_fault_truth(sim_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, truth = sim_run
    out = tmp_path / "out" / "run.png"
    res = CliRunner().invoke(main, ["plot", str(run), "-o", str(out), "--truth", str(truth)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000
    # the square model sees the overload and (by design) not the early slow drift
    assert "truth caught 1/2" in res.output and "0 overlapping no truth" in res.output


def test_plot_defaults_its_output_beside_the_run_and_zooms(sim_run: tuple[Path, Path]) -> None:
    run, _ = sim_run
    res = CliRunner().invoke(main, ["plot", str(run), "--last", "5", "--log-score"])
    assert res.exit_code == 0, res.output
    assert run.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_plot_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    bogus = tmp_path / "alerts.jsonl"
    bogus.write_text('{"event": "start"}\n')
    res = CliRunner().invoke(main, ["plot", str(bogus), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 4 and "--record-run" in res.output
    res = CliRunner().invoke(main, ["plot", str(bogus), "--nab-key", "a.csv"])
    assert res.exit_code == 2


def test_plot_unknown_stream_lists_the_streams(sim_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = sim_run
    res = CliRunner().invoke(main, ["plot", str(run), "-o", str(tmp_path / "x.png"), "--stream", "nope"])
    assert res.exit_code == 4 and "eq-0" in res.output


def test_nab_windows_on_a_long_run(tmp_path: Path) -> None:
    """NAB-like data: 5-minute steps over a day, read with the same local-time rule as the CSV replay."""
    n = 300
    start = datetime(2015, 8, 10, 0, 0).timestamp()
    ts = start + 300.0 * np.arange(n)
    values = np.full((n, 4), 0.5) + np.random.default_rng(0).normal(0, 0.02, (n, 4))
    values[150:170] = 0.98  # an anomaly the square model scores high
    run = record(tmp_path, values, ts, stream="nab")
    windows = tmp_path / "combined_windows.json"
    a = datetime.fromtimestamp(ts[145]).isoformat(sep=" ")
    b = datetime.fromtimestamp(ts[175]).isoformat(sep=" ")
    windows.write_text(json.dumps({"realTraffic/TravelTime_451.csv": [[a, b]], "other.csv": []}))
    got = read_nab_windows(windows, "realTraffic/TravelTime_451.csv")
    assert [(g.start, g.end) for g in got] == [(ts[145], ts[175])]
    with pytest.raises(BadInput, match="did you mean 'realTraffic/TravelTime_451.csv'"):
        read_nab_windows(windows, "realKnownCause/TravelTime_451.csv")
    out = tmp_path / "nab.png"
    res = CliRunner().invoke(main, ["plot", str(run), "-o", str(out), "--nab-windows", str(windows),
                                    "--nab-key", "realTraffic/TravelTime_451.csv"])
    assert res.exit_code == 0, res.output
    assert "truth caught 1/1" in res.output and out.read_bytes()[:8] == PNG_MAGIC


def test_agreement_counts_overlaps() -> None:
    truth = [Interval(10, 20, "a"), Interval(40, 50, "b"), Interval(70, 80, "c")]
    episodes = [Interval(15, 25, "alert"), Interval(30, 35, "alert"), Interval(79, np.nan, "alert")]
    found = agreement(episodes, truth, end=100)
    assert (found.truth, found.caught, found.episodes, found.false_episodes) == (3, 2, 3, 1)


def test_truth_matches_streams_by_name_or_single_equipment(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"fault":"spike","features":["cpu"],"start_index":1,"end_index":7,"start_ts":1.0,'
                 '"end_ts":2.0,"stream":"eq-0"}\n')
    truth = read_fault_truth(p)
    assert truth_for("eq-0", truth) == truth
    assert truth_for("ws://127.0.0.1:8765/", truth) == truth  # one equipment, named by URL in the agent
    two = truth + [Interval(3.0, 4.0, "x", "eq-1")]
    assert truth_for("eq-1", two) == [two[1]] and truth_for("ws://h/", two) == []
    p.write_text("not json\n")
    with pytest.raises(BadInput, match="simulate --truth"):
        read_fault_truth(p)


def test_lanes_scale_each_feature_to_its_training_range_and_episodes_name_their_features(tmp_path: Path) -> None:
    """Voltage (~230) beside vibration (~0.03): each in its own lane with its training band; the drop of the
    vibration shows in its lane, the bars are anomaly_score with its 1.0 line, the episode names the feature."""
    import matplotlib.pyplot as plt

    from edgewatch.plot.plot_run import draw_run
    from edgewatch.plot.run_file import read_run

    features = ["voltage", "vibration"]
    ranges = {"voltage": [225.0, 235.0], "vibration": [0.028, 0.032]}
    card = make_card(window=5, features=features, threshold=0.5, k=2, n=3, training_range=ranges)
    card.scaler.offset, card.scaler.scale = [230.0, 0.03], [1 / 5.0, 1 / 0.002]  # each range's half-width -> 1
    agent = Agent(ScoringModel(write_model(tmp_path / "m.onnx", card)), [], AgentOptions(drift_every=0))
    path = tmp_path / "run.jsonl"
    rec = RunRecorder.for_agent(agent, path)
    agent.subscribe(rec.on_event, rec.on_batch)
    rng = np.random.default_rng(0)
    rows = np.column_stack([230 + rng.normal(0, 1.5, 120), 0.03 + rng.normal(0, 0.0005, 120)])
    rows[60:80, 1] = 0.02  # the vibration drops out of its range
    agent.process([Item(Kind.MEASUREMENT, "t", Measurement(r.tolist(), 1000.0 + i, "pump"), 1000.0 + i)
                   for i, r in enumerate(rows)])
    agent.close_episodes("end of test")
    rec.close()

    run = read_run(path)
    s = run.streams["pump"]
    assert run.ranges == [(225.0, 235.0), (0.028, 0.032)]
    scale = agent.runtime.scale
    np.testing.assert_allclose(s.anomaly, [scale.score(v) for v in s.scores], rtol=1e-4, atol=1e-5)
    assert (s.over == (s.anomaly > 1)).all() and s.over.any()
    (episode,) = s.episodes
    assert episode.features[0][0] == "vibration" and episode.features[0][1] > 0.9

    fig, _ = draw_run(run)
    try:
        *lanes, score = fig.axes
        assert [ax.get_ylabel() for ax in lanes] == features
        for ax, (lo, hi) in zip(lanes, run.ranges):
            (band,) = [p for p in ax.patches if p.get_alpha() == 0.12]  # the training range, in data units
            assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((lo, hi))
            assert ax.get_ylim()[0] < lo and ax.get_ylim()[1] > hi
        assert lanes[1].get_ylim()[0] < 0.021  # the drop is inside its lane, not clipped away
        assert lanes[0].get_ylim()[1] - lanes[0].get_ylim()[0] < 20  # voltage keeps its own scale
        assert score.get_ylabel() == "anomaly_score"
        assert any(list(line.get_ydata()) == [1.0, 1.0] for line in score.get_lines())
        assert any(t.get_text().startswith("vibration ") for t in score.texts)
    finally:
        plt.close(fig)
