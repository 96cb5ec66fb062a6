"""The ``levels`` post-process, its model file and the novelty-levels ensemble on NAB."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.agent.postprocess import Levels, make_postprocessor
from edgewatch.contract.postprocess import KindParams, LevelsParams
from edgewatch.contract import PostProcess
from edgewatch.errors import BadModelFile
from edgewatch.eval.detectors import levels
from edgewatch.eval.runner import MaxEnsemble, ModelDetector, check_online

DATASETS = Path(os.environ.get("EDGEWATCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
NAB = DATASETS / "nab"


def noisy(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, n)


def post(**params: float) -> Levels:
    p = make_postprocessor(PostProcess("levels", params))
    assert isinstance(p, Levels)
    return p


def test_new_level_fires_once_then_rests_and_known_levels_stay_quiet() -> None:
    x = noisy(0, 600)
    x[:2] = 0.0, 1.0  # the range rows span [0, 1]
    x[450:460] = 1.5  # level 12 of 8 over the range [0, 1]: never seen
    x[470] = 1.5  # the same level again, inside the rest
    x[580] = -0.3  # a new level below the range, after the rest
    out = post(range_rows=100, rest=50).update_many(np.zeros(600, int), x)
    assert np.all(out[:100] == 0.0)  # learning the range
    assert out[450] == 1.0
    assert np.all(out[451:501] == 0.0)  # rest, and 1.5 is no longer new
    assert out[580] == 1.0
    assert np.flatnonzero(out).tolist() == [450, 580]  # uniform noise inside the range never fires


def test_output_depends_only_on_the_past_and_streams_are_separate() -> None:
    a, b = noisy(1, 500) * np.linspace(1, 3, 500), noisy(2, 500)
    whole = post(range_rows=50).update_many(np.zeros(500, int), a)
    part = post(range_rows=50).update_many(np.zeros(300, int), a[:300])
    np.testing.assert_array_equal(whole[:300], part)
    assert whole.sum() >= 2  # the widening range keeps reaching new levels
    mixed = post(range_rows=50)
    slots = np.tile([4, 9], 500)
    both = mixed.update_many(slots, np.column_stack([a, b]).ravel())
    np.testing.assert_array_equal(both[slots == 4], whole)
    np.testing.assert_array_equal(both[slots == 9], post(range_rows=50).update_many(np.zeros(500, int), b))


def test_memory_is_capped_and_reset_forgets() -> None:
    p = post(range_rows=10, rest=0, cap=20)
    ramp = np.r_[np.arange(10.0), 20.0 + 10.0 * np.arange(290)]  # after the range rows, every row a new level
    out = p.update_many(np.zeros(300, int), ramp)
    assert len(p._streams[0].seen) == 20
    assert out[10:].all()  # unseen levels beyond the cap are still reported
    p.reset(0)
    assert np.all(p.update_many(np.zeros(10, int), ramp[:10]) == 0.0)  # learning again


def test_constant_start_and_bad_parameters() -> None:
    x = np.r_[np.ones(100), np.full(50, 5.0)]
    assert np.all(post(range_rows=100).update_many(np.zeros(150, int), x) == 0.0)  # no scale, never fires
    with pytest.raises(BadModelFile, match="unknown parameters"):
        make_postprocessor(PostProcess("levels", {"bits": 3}))
    with pytest.raises(BadModelFile, match="out of range"):
        LevelsParams.from_dict({"bins": 0})


def test_symmetric_edges_need_a_levels_margin_below_the_range_as_above_it() -> None:
    """``edges`` 1: a stream and its negative get the same alarms; absent, any new minimum is a new level."""
    x = noisy(4, 400)
    x[:2] = 0.0, 1.0  # the range rows span [0, 1]: one level is 0.125
    x[150], x[200] = -0.05, 1.05  # just beyond either end: within a level's margin
    x[300], x[360] = -0.2, 1.2  # more than a level beyond
    slots = np.zeros(400, int)
    old = post(range_rows=100, rest=10).update_many(slots, x)
    assert np.flatnonzero(old).tolist() == [150, 300, 360]  # the minimum has no margin, the maximum has one
    sym = post(range_rows=100, rest=10, edges=1).update_many(slots, x)
    assert np.flatnonzero(sym).tolist() == [300, 360]
    np.testing.assert_array_equal(post(range_rows=100, rest=10, edges=1).update_many(slots, -x), sym)
    assert not np.array_equal(post(range_rows=100, rest=10).update_many(slots, -x), old)
    walk = np.cumsum(np.random.default_rng(5).normal(0, 1, 3000))  # wanders to new levels on both sides
    a = post(range_rows=200, edges=1).update_many(np.zeros(3000, int), walk)
    np.testing.assert_array_equal(post(range_rows=200, edges=1).update_many(np.zeros(3000, int), -walk), a)
    assert a.sum() >= 3


def test_edges_are_checked_and_an_older_reader_refuses_them() -> None:
    with pytest.raises(BadModelFile, match="edges must be one of 0 \\(from_minimum\\), 1 \\(symmetric\\)"):
        make_postprocessor(PostProcess("levels", {"edges": 2}))
    older = dataclasses.make_dataclass("LevelsParams", [(f.name, float, f.default)
                                                        for f in dataclasses.fields(LevelsParams)
                                                        if f.name != "edges"], bases=(KindParams,))
    with pytest.raises(BadModelFile, match="unknown parameters \\['edges'\\]"):
        older.from_dict({"bins": 8, "edges": 1}, "levels")
    assert post().symmetric is False and post(edges=1).symmetric is True  # absent: from the minimum, as before


def test_width_is_checked_and_an_older_reader_refuses_it() -> None:
    with pytest.raises(BadModelFile, match="width must be one of 0 \\(range\\), 1 \\(spread\\)"):
        make_postprocessor(PostProcess("levels", {"width": 2}))
    older = dataclasses.make_dataclass("LevelsParams", [(f.name, float, f.default)
                                                        for f in dataclasses.fields(LevelsParams)
                                                        if f.name != "width"], bases=(KindParams,))
    with pytest.raises(BadModelFile, match="unknown parameters \\['width'\\]"):
        older.from_dict({"bins": 8, "width": 1}, "levels")
    x = noisy(2, 900)  # no times: a stream's range rows are the card's, so the width changes nothing
    np.testing.assert_array_equal(post(range_rows=100, width=1).update_many(np.zeros(900, int), x),
                                  post(range_rows=100).update_many(np.zeros(900, int), x))


def test_margin_everywhere_needs_a_whole_level_from_every_value_shown() -> None:
    """``margin`` 1: inside the range a hair across a cell's edge no longer alarms; a value a whole level from all
    shown alarms wherever it lies; each value shown covers a level either side, so a slow creep out of the range
    never alarms (the cell rule alarms on each new cell); checked, and refused by an older reader."""
    ramp = np.linspace(0.0, 8.0, 100)  # range 0..8 learnt over 100 rows: one level is 1.0
    gap = np.r_[np.linspace(0.0, 2.95, 50), np.linspace(5.5, 8.0, 50)]  # nothing shown between 2.95 and 5.5
    rows = np.zeros(102, int)
    cells = post(range_rows=100, rest=0, edges=1).update_many(rows, np.r_[gap, [3.02, 9.5]])
    dist = post(range_rows=100, rest=0, edges=1, margin=1).update_many(rows, np.r_[gap, [3.02, 9.5]])
    assert cells[100:].tolist() == [1.0, 1.0]  # 3.02: the empty cell 3..4, a hair across its edge
    assert dist[100:].tolist() == [0.0, 1.0]  # 3.02 is 0.07 from 2.95; 9.5 is 1.5 from 8.0 in both
    creep = np.r_[ramp, 8.0 + 0.5 * np.arange(1, 21)]  # 0.5 a row up to 18: every value within a level of the last
    assert post(range_rows=100, rest=0, edges=1, margin=1).update_many(np.zeros(120, int), creep).sum() == 0.0
    assert post(range_rows=100, rest=0, edges=1).update_many(np.zeros(120, int), creep).sum() >= 9
    with pytest.raises(BadModelFile, match="margin must be one of 0 \\(edges\\), 1 \\(everywhere\\)"):
        make_postprocessor(PostProcess("levels", {"margin": 2}))
    older = dataclasses.make_dataclass("LevelsParams", [(f.name, float, f.default)
                                                        for f in dataclasses.fields(LevelsParams)
                                                        if f.name != "margin"], bases=(KindParams,))
    with pytest.raises(BadModelFile, match="unknown parameters \\['margin'\\]"):
        older.from_dict({"bins": 8, "margin": 1}, "levels")


def test_model_file_and_ensemble_run_like_the_agent(tmp_path: Path) -> None:
    from edgewatch.agent.model import ScoringModel

    path = levels.write_model(tmp_path / "levels.onnx", levels.LevelsConfig(params={"range_rows": 200}))
    m = ScoringModel(path)
    assert m.card.window == 1 and m.card.postprocess.kind == "levels"
    x = np.clip(np.sin(np.arange(800) / 9.0) + noisy(3, 800) * 0.1, -1.0, 1.0)
    x[:2] = -1.0, 1.0  # the range rows span [-1, 1]
    x[600:] += 2.0  # a shift to values never seen
    det = ModelDetector(path)
    s = det.score_series(x)
    assert s[600] == 1.0 and s[:600].max() == 0.0
    assert check_online(det, x, cut=650)

    class Half:
        name = "half"

        def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
            return np.full(len(values), 0.5)

    both = MaxEnsemble("both", [det, Half()]).score_series(x)
    np.testing.assert_array_equal(both, np.maximum(s, 0.5))


def test_make_detector_writes_one_file_the_agent_runs_like_the_pair(tmp_path: Path) -> None:
    import io
    import json

    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.sinks import StdoutSink
    from edgewatch.agent.sources import ReplaySource
    from edgewatch.commands.eval import eval_group
    from edgewatch.eval.detectors import novelty, novelty_levels

    res = CliRunner().invoke(eval_group, ["make-detector", "-o", str(tmp_path / "d.onnx")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.onnx"]  # one file
    card = ScoringModel(tmp_path / "d.onnx").card
    assert card.window == 1 and card.aux == [] and card.postprocess.kind == "max"
    assert [(p.kind, p.input) for p in card.postprocess.parts] == [("novelty", "score"), ("levels", "score")]

    # a seeded stream with a shape change (novelty) and, later, a slow climb to new levels (levels)
    n = 1400
    rng = np.random.default_rng(11)
    x = 10 + np.sin(np.arange(n) * 2 * np.pi / 48) + rng.normal(0, 0.05, n)
    x[700:760] = 10 + rng.normal(0, 0.05, 60)  # flat: a new shape inside the known range
    x[1000:] += np.linspace(0, 6, n - 1000)
    # the fourth-round file (one 384-row span) equals the graph-based pair it replaced
    pair = MaxEnsemble("pair", [ModelDetector(novelty.write_model(tmp_path / "pair" / "n.onnx")),
                                ModelDetector(levels.write_model(tmp_path / "pair" / "l.onnx"))])
    want = pair.score_series(x)  # the distance from the 384-row graph, in float32
    fourth = ModelDetector(novelty_levels.write_model(tmp_path / "pair" / "4.onnx", novelty_levels.fourth_round()))
    got = fourth.score_series(x)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.array_equal(got >= 0.5, want >= 0.5)
    # the default's stepped span speaks from row 67 (span 48 + 20 learning rows); the fourth round's first
    # output is its levels step's, from row 256
    ts = 1.7e9 + 300.0 * np.arange(n)  # a 5-minute stream: the default's lengths in time are its rows
    want = ModelDetector(tmp_path / "d.onnx").score_series(x, times=ts)
    np.testing.assert_array_equal(want, ModelDetector(tmp_path / "d.onnx").score_series(x))  # no times: rows
    assert not want[:67].any() and (want[67:256] > 0).any() and not got[:256].any()
    assert (want == 1.0).any() and ((want > 0.5) & (want < 1.0)).any()  # both steps alert somewhere

    csv_path = tmp_path / "s.csv"
    csv_path.write_text("timestamp,value\n" + "".join(f"{t:.0f},{v!r}\n" for t, v in zip(ts.tolist(), x.tolist())))
    out = io.StringIO()
    agent = Agent(ScoringModel(tmp_path / "d.onnx"), [StdoutSink(out)],
                  AgentOptions(stride=1, k=1, n=1, drift_every=0))
    agent.add_source(ReplaySource(csv_path, ["value"]))
    agent.run(duration=60)
    starts = [e["seq"] for e in map(json.loads, out.getvalue().splitlines()) if e["event"] == "start"]
    assert starts and starts == [i for i in np.flatnonzero(want > 0.5).tolist()
                                 if i - 1 not in set(np.flatnonzero(want > 0.5).tolist())]


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (NAB / "data").is_dir(), reason=f"NAB dataset not found at {NAB}")
def test_one_file_nab_best_scores_on_the_nab_folder(tmp_path: Path) -> None:
    import torch

    from edgewatch.eval.detectors import novelty_levels
    from edgewatch.eval.detectors.registry import resolve
    from edgewatch.eval.runner import run_nab

    torch.set_num_threads(1)
    path = novelty_levels.write_model(tmp_path / "nab-best.onnx")
    result, _ = run_nab(NAB, resolve(f"model:{path}"), progress=False)
    got = {p.profile: p.score for p in result.profiles}
    assert got["standard"] == pytest.approx(80.21, abs=0.01)  # the fourteenth round: the overlap's bias
    assert got["reward_low_FP_rate"] == pytest.approx(75.19, abs=0.01)
    assert got["reward_low_FN_rate"] == pytest.approx(84.24, abs=0.01)
    result, _ = run_nab(NAB, resolve("thirteenth-round"), progress=False)  # the previous defaults, by name
    assert [round(p.score, 2) for p in result.profiles] == [79.66, 74.08, 83.88]
    result, _ = run_nab(NAB, resolve("tenth-round"), progress=False)
    assert [round(p.score, 2) for p in result.profiles] == [79.23, 73.21, 83.59]
    result, _ = run_nab(NAB, resolve("eighth-round"), progress=False)
    assert [round(p.score, 2) for p in result.profiles] == [78.80, 72.36, 83.30]
    result, _ = run_nab(NAB, resolve("seventh-round"), progress=False)
    assert [round(p.score, 2) for p in result.profiles] == [78.68, 72.10, 83.22]
    result, _ = run_nab(NAB, resolve("fifth-round"), progress=False)
    assert [round(p.score, 2) for p in result.profiles] == [78.13, 71.70, 82.86]
    result, _ = run_nab(NAB, resolve("fourth-round"), progress=False)
    assert [round(p.score, 2) for p in result.profiles] == [75.90, 68.01, 81.37]


def test_build_model_for_one_named_feature(tmp_path: Path) -> None:
    """What ``edgewatch fit`` writes for a single-feature series: the default detector with the feature's name."""
    from edgewatch.agent.model import ScoringModel
    from edgewatch.eval.detectors import novelty_levels
    from edgewatch.numpy_models.univariate import detector_bytes

    (tmp_path / "m.onnx").write_bytes(detector_bytes(feature="temperature", data="plant.csv, column temperature"))
    card = ScoringModel(tmp_path / "m.onnx").card
    assert card.features == ["temperature"] and card.trained_on["data"] == "plant.csv, column temperature"
    assert card.postprocess.parts[0].params == novelty_levels.NoveltyLevelsConfig().novelty
    path = novelty_levels.write_model(tmp_path / "w.onnx", feature="temperature")  # checked when written
    assert ScoringModel(path).card.features == ["temperature"]
