"""The default univariate detector (``edgewatch eval make-detector``): lengths in each stream's time and counts
stabilised, decided per stream by the agent's post-process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import StdoutSink
from edgewatch.agent.sources import ReplaySource
from edgewatch.cli import main
from edgewatch.eval.detectors import novelty_levels
from edgewatch.eval.detectors.registry import resolve
from edgewatch.eval.runner import ModelDetector, check_online

ROOT = Path(__file__).resolve().parents[2]


def _series(n: int, seed: int) -> np.ndarray:
    """NAB-like: a daily cycle of 96 rows with noise, a burst and a level shift late in the stream."""
    rng = np.random.default_rng(seed)
    x = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 1, n)
    x[n // 2:n // 2 + 20] += 30
    x[int(n * 0.8):] += 25
    return x


def _counts(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.poisson(10 + 5 * np.sin(np.arange(n) * 2 * np.pi / 96)).astype(np.float64)
    c[int(n * 0.7):int(n * 0.7) + 6] += 60
    return c


def _starts(scores: np.ndarray) -> list[int]:
    over = scores > 0.5
    return [i for i in np.flatnonzero(over).tolist() if i == 0 or not over[i - 1]]


def test_make_detector_writes_the_adapted_default_in_its_default_place(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    res = CliRunner().invoke(main, ["eval", "make-detector"])  # the README's form: models/nab-best.onnx
    assert res.exit_code == 0, res.output
    path = tmp_path / "models" / "nab-best.onnx"
    assert "wrote models/nab-best.onnx" in res.output
    card = ScoringModel(path).card
    novelty, levels = card.postprocess.parts
    assert (novelty.kind, levels.kind) == ("novelty", "levels")
    assert novelty.params["m_seconds"] == 192 * 300 and novelty.params["m"] == 192
    assert levels.params["range_seconds"] == 256 * 300 and levels.params["range_rows"] == 256
    assert (levels.params["range_min"], levels.params["range_max"]) == (48, 1536)
    assert novelty.params["count_rows"] == levels.params["count_rows"] == 48
    assert novelty.params["interval_rows"] == levels.params["interval_rows"] == 16
    assert novelty.params["tail"] == 1 and "tail" not in levels.params  # Student's predictive tail (eighth round)
    assert levels.params["edges"] == 1 and "edges" not in novelty.params  # symmetric edges (ninth round)
    assert novelty.params["handover"] == 1 and "handover" not in levels.params  # the hold carried (tenth round)
    assert card.postprocess.params == {"alert": 0.5}  # an alert is one event for both parts (thirteenth round)
    assert novelty.params["overlap"] == 1 and "overlap" not in levels.params  # overlap's bias (fourteenth round)
    # the shipped file is what the command writes
    assert path.read_bytes() == (ROOT / "models" / "nab-best.onnx").read_bytes()
    older = ScoringModel(novelty_levels.write_model(tmp_path / "5.onnx", novelty_levels.fifth_round())).card
    assert "m_seconds" not in older.postprocess.parts[0].params  # the fifth round's file: rows only
    thirteenth = ScoringModel(novelty_levels.write_model(tmp_path / "13.onnx",
                                                         novelty_levels.thirteenth_round())).card
    assert thirteenth.postprocess.params == {"alert": 0.5}
    plain = {k: v for k, v in novelty.params.items() if k != "overlap"}
    assert [q.params for q in thirteenth.postprocess.parts] == [plain, levels.params]
    tenth = ScoringModel(novelty_levels.write_model(tmp_path / "10.onnx", novelty_levels.tenth_round())).card
    assert tenth.postprocess.params == {} and tenth.postprocess.to_dict()["params"] == {}
    assert [q.params for q in tenth.postprocess.parts] == [plain, levels.params]
    ninth = ScoringModel(novelty_levels.write_model(tmp_path / "9.onnx", novelty_levels.ninth_round())).card
    assert ninth.postprocess.params == {}
    assert ninth.postprocess.parts[0].params == {k: v for k, v in plain.items() if k != "handover"}
    assert ninth.postprocess.parts[1].params == levels.params
    eighth = ScoringModel(novelty_levels.write_model(tmp_path / "8.onnx", novelty_levels.eighth_round())).card
    assert eighth.postprocess.parts[0].params == ninth.postprocess.parts[0].params
    assert eighth.postprocess.parts[1].params == {k: v for k, v in levels.params.items() if k != "edges"}
    seventh = ScoringModel(novelty_levels.write_model(tmp_path / "7.onnx", novelty_levels.seventh_round())).card
    assert seventh.postprocess.parts[0].params == {k: v for k, v in ninth.postprocess.parts[0].params.items()
                                                   if k != "tail"}
    assert seventh.postprocess.parts[1].params == eighth.postprocess.parts[1].params


def test_the_default_file_through_the_agent_adapts_each_replayed_stream(tmp_path: Path) -> None:
    """Three replayed streams in one agent: 5-minute levels, the same values hourly, hourly counts. Each
    stream's alerts are those of the file run on that stream alone with its times; the hourly one differs
    from the same values at 5 minutes."""
    path = ROOT / "models" / "nab-best.onnx"
    n = 1400
    streams = {"five": (_series(n, 1), 300.0), "hourly": (_series(n, 1), 3600.0), "counts": (_counts(n, 2), 3600.0)}
    agent_out = io.StringIO()
    agent = Agent(ScoringModel(path), [StdoutSink(agent_out)], AgentOptions(stride=1, k=1, n=1, drift_every=0))
    det = ModelDetector(path)
    want: dict[str, list[int]] = {}
    for name, (x, step) in streams.items():
        ts = 1.7e9 + step * np.arange(n)
        csv = tmp_path / f"{name}.csv"
        csv.write_text("timestamp,value\n" + "".join(f"{t:.0f},{v!r}\n" for t, v in zip(ts.tolist(), x.tolist())))
        agent.add_source(ReplaySource(csv, ["value"]))
        scores = det.score_series(x, name, ts)
        assert check_online(det, x, name, cut=40, times=ts)  # a cut inside the 48 decision rows
        want[f"replay:{name}.csv"] = _starts(scores)
    agent.run(duration=120)
    got: dict[str, list[int]] = {k: [] for k in want}
    for event in map(json.loads, agent_out.getvalue().splitlines()):
        if event["event"] == "start":
            got[event["stream"]].append(event["seq"])
    assert got == want
    assert all(got.values())
    assert got["replay:five.csv"] != got["replay:hourly.csv"]  # same values, another interval
    rows = _starts(det.score_series(streams["hourly"][0]))  # no times: the rows, as a 5-minute stream
    assert rows == got["replay:five.csv"]
    counts = streams["counts"][0]
    plain = ModelDetector(novelty_levels.write_model(tmp_path / "5.onnx", novelty_levels.fifth_round()))
    assert _starts(plain.score_series(counts)) != got["replay:counts.csv"]  # Anscombe and the hourly lengths


def test_the_previous_defaults_stay_by_name() -> None:
    assert resolve("fifth-round").name == "fifth-round" and resolve("fourth-round").name == "fourth-round"
    assert resolve("seventh-round").name == "seventh-round" and resolve("eighth-round").name == "eighth-round"
    assert resolve("ninth-round").name == "ninth-round" and resolve("tenth-round").name == "tenth-round"
    assert resolve("thirteenth-round").name == "thirteenth-round"
    x = _series(700, 3)
    ts = 1.7e9 + 3600.0 * np.arange(len(x))
    fifth = resolve("fifth-round")
    np.testing.assert_array_equal(fifth.score_series(x, "s", ts), fifth.score_series(x, "s"))  # reads no time
    default = resolve("novelty-levels")
    assert not np.array_equal(default.score_series(x, "s", ts), default.score_series(x, "s"))


def test_the_student_tail_alerts_less_on_short_histories_than_the_seventh_round() -> None:
    """Early rows are where the two differ: a rung's t tail of a few dozen learnt distances is stricter; once
    the rungs have long histories, both alert on the same rows. Six seeded cycles with heavy-tailed noise."""
    new, old = resolve("eighth-round"), resolve("seventh-round")
    early = {"new": 0, "old": 0}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = 100 + 10 * np.sin(np.arange(2400) * 2 * np.pi / 96) + rng.standard_t(3, 2400)
        x[1500:1520] += 30
        ts = 1.7e9 + 300.0 * np.arange(len(x))
        a, b = new.score_series(x, "s", ts), old.score_series(x, "s", ts)
        assert np.all(a[:67] == 0.0)
        early["new"] += int((a[67:600] >= 0.5).sum())
        early["old"] += int((b[67:600] >= 0.5).sum())
        later = _starts(a[1200:])
        assert later == _starts(b[1200:]) and any(300 <= i < 320 for i in later)  # the burst at 1500, in both
    assert early["new"] < early["old"]


def test_symmetric_edges_raise_fewer_early_level_alarms_than_the_eighth_round() -> None:
    """The ninth round's edges (in the tenth round's file) against the eighth on six seeded daily cycles with
    heavy-tailed noise: fewer new-level alarms (output 1.0) in a stream's first 1,200 rows, where a new minimum
    by a hair was one; a deep dip late in the stream still alerts in both, and no late alarm the eighth round
    did not raise."""
    new, old = resolve("tenth-round"), resolve("eighth-round")  # the ninth round's edges, nothing after them
    early = {"new": 0, "old": 0}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = 100 + 10 * np.sin(np.arange(2400) * 2 * np.pi / 288) + rng.standard_t(3, 2400)
        x[1800:1830] -= 40
        ts = 1.7e9 + 300.0 * np.arange(len(x))
        a, b = new.score_series(x, "s", ts), old.score_series(x, "s", ts)
        early["new"] += int((a[:1200] == 1.0).sum())
        early["old"] += int((b[:1200] == 1.0).sum())
        later = _starts(a[1700:])
        assert 100 in later and set(later) <= set(_starts(b[1700:]))
    assert early["new"] < early["old"]


def test_a_rung_taking_over_keeps_the_hold_instead_of_alarming_again() -> None:
    """The tenth round against the ninth on six seeded hourly daily cycles with a burst at rows 234-245, across
    the row (241) where the 192-row rung takes over from the 96-row one: the same outputs before it, fewer
    alarms on the burst after it (the ninth round alarmed again at the takeover on some seeds), and the
    agent's file equals the NumPy reference that carries the hold rung by rung."""
    new, old = resolve("tenth-round"), resolve("ninth-round")
    config = novelty_levels.tenth_round()
    burst = {"new": 0, "old": 0}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = 100 + 10 * np.sin(np.arange(400) * 2 * np.pi / 24) + rng.normal(0, 1, 400)
        x[234:246] += 8 * np.sin(np.arange(12) * np.pi / 3)
        ts = 1.7e9 + 3600.0 * np.arange(len(x))
        a, b = new.score_series(x, "s", ts), old.score_series(x, "s", ts)
        np.testing.assert_array_equal(a[:241], b[:241])
        np.testing.assert_allclose(a, novelty_levels.reference_scores(x, config, ts), rtol=1e-6, atol=1e-6)
        assert any(230 <= i <= 246 for i in _starts(a))  # the burst still alerts (one seed a row before it)
        burst["new"] += sum(234 <= i < 266 for i in _starts(a))
        burst["old"] += sum(234 <= i < 266 for i in _starts(b))
    assert burst["new"] < burst["old"]


def test_an_alert_is_one_event_for_both_parts() -> None:
    """The thirteenth round against the tenth on six seeded 5-minute daily cycles with a mild shift at row 700:
    the levels alarm on its first value, and in the tenth round the novelty alarmed again two rows later on
    some seeds, while that value was still in its latest stretch; the thirteenth round alerts once, the same
    outputs before it and no alert the tenth round did not raise, and its file equals the NumPy reference."""
    new, old = resolve("thirteenth-round"), resolve("tenth-round")
    config = novelty_levels.thirteenth_round()
    starts = {"new": 0, "old": 0}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = 100 + 10 * np.sin(np.arange(1200) * 2 * np.pi / 96) + rng.normal(0, 1, 1200)
        x[700:740] += 6
        ts = 1.7e9 + 300.0 * np.arange(len(x))
        a, b = new.score_series(x, "s", ts), old.score_series(x, "s", ts)
        np.testing.assert_array_equal(a[:701], b[:701])
        np.testing.assert_allclose(a, novelty_levels.reference_scores(x, config, ts), rtol=1e-6, atol=1e-6)
        assert set(_starts(a)) <= set(_starts(b)) and any(700 <= i <= 702 for i in _starts(a))  # it still alerts
        starts["new"] += sum(700 <= i < 740 for i in _starts(a))
        starts["old"] += sum(700 <= i < 740 for i in _starts(b))
    assert starts["new"] < starts["old"]


def test_the_max_steps_alert_is_checked_when_the_card_is_read() -> None:
    """The composite's one parameter: out of [0, 1], not a number, or misspelt, refused by name when read."""
    from edgewatch.contract import ModelCard
    from edgewatch.errors import BadModelFile
    from edgewatch.numpy_models.univariate import make_card

    props = make_card(novelty_levels.NoveltyLevelsConfig()).to_props()
    assert ModelCard.from_props(props).postprocess.params == {"alert": 0.5}
    post = json.loads(props["edgewatch.postprocess"])
    for params, why in (({"alert": 2}, "alert must be a number in \\[0, 1\\]"),
                        ({"alert": "0.5"}, "alert must be a number in \\[0, 1\\]"),
                        ({"alrt": 0.5}, "takes only \\['alert'\\], got \\['alrt'\\]")):
        bad = dict(props, **{"edgewatch.postprocess": json.dumps({**post, "params": params})})
        with pytest.raises(BadModelFile, match=why):
            ModelCard.from_props(bad)


def test_a_rungs_overlapping_distances_widen_its_early_spread() -> None:
    """The default against the thirteenth round on six seeded 5-minute daily cycles with heavy-tailed noise and
    a burst at row 850: the thirteenth round read a short rung's first distances as independent and alerted on
    ordinary rows early on several seeds; the default alerts there less (never more), the same alerts from row 483 on,
    both alert on the burst, and the agent's file equals the NumPy reference."""
    new, old = resolve("novelty-levels"), resolve("thirteenth-round")
    fewer = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = 100 + 10 * np.sin(np.arange(1000) * 2 * np.pi / 288) + rng.standard_t(3, 1000)
        x[850:870] += 40
        ts = 1.7e9 + 300.0 * np.arange(len(x))
        a, b = _starts(new.score_series(x, "s", ts)), _starts(old.score_series(x, "s", ts))
        early_a, early_b = [i for i in a if i < 483], [i for i in b if i < 483]
        assert len(early_a) <= len(early_b)
        fewer += len(early_b) - len(early_a)
        assert [i for i in a if i >= 483] == [i for i in b if i >= 483] and 850 in a
        ref = novelty_levels.reference_scores(x, novelty_levels.NoveltyLevelsConfig(), ts)
        np.testing.assert_allclose(new.score_series(x, "s", ts), ref, atol=1e-9)
    assert fewer >= 3


def test_the_levels_in_spread_candidate_by_name_differs_only_off_the_reference_rate(tmp_path: Path) -> None:
    """The sixteenth round's candidate (``width`` 1 on the levels): its file is checked against the NumPy reference
    when written (an hourly stream included), gives a 5-minute stream the default's scores and an hourly one
    other scores; the card says ``width`` 1 and the default's card says nothing of it."""
    cand = resolve("levels-in-spread")
    assert cand.name == "levels-in-spread"
    assert novelty_levels.levels_in_spread().levels["width"] == 1
    assert "width" not in novelty_levels.NoveltyLevelsConfig().levels
    x = _series(1500, 5)
    five = 1.7e9 + 300.0 * np.arange(len(x))
    hourly = 1.7e9 + 3600.0 * np.arange(len(x))
    default = resolve("novelty-levels")
    np.testing.assert_array_equal(cand.score_series(x, "s", five), default.score_series(x, "s", five))
    got = cand.score_series(x, "s", hourly)
    assert not np.array_equal(got, default.score_series(x, "s", hourly))
    np.testing.assert_allclose(got, novelty_levels.reference_scores(x, novelty_levels.levels_in_spread(), hourly),
                               rtol=1e-6, atol=1e-6)


def test_the_levels_margin_candidate_by_name_raises_fewer_levels_alarms() -> None:
    """The sixteenth round's second candidate (``margin`` 1 on the levels): written and checked against the NumPy
    reference by name; on a 5-minute stream its levels alarms (1.0) are no more than the default's, and the
    default's card says nothing of ``margin``."""
    cand = resolve("levels-margin")
    assert cand.name == "levels-margin" and novelty_levels.levels_margin().levels["margin"] == 1
    assert "margin" not in novelty_levels.NoveltyLevelsConfig().levels
    x = _series(2000, 6)
    ts = 1.7e9 + 300.0 * np.arange(len(x))
    got, default = cand.score_series(x, "s", ts), resolve("novelty-levels").score_series(x, "s", ts)
    assert (got == 1.0).sum() <= (default == 1.0).sum() and not np.array_equal(got, default)
    np.testing.assert_allclose(got, novelty_levels.reference_scores(x, novelty_levels.levels_margin(), ts),
                               rtol=1e-6, atol=1e-6)
