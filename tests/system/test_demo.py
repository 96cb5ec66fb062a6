"""`edgewatch demo`: the quick start's main job, end to end with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgewatch.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_demo_catches_the_injected_faults_with_the_shipped_model(tmp_path: Path) -> None:
    # 300 Hz instead of 70: the same messages (the schedule is in messages), in a quarter of the time
    result = CliRunner().invoke(main, ["demo", "--model", str(ROOT / "models" / "equipment-lstm-ae.onnx"),
                                       "--rate", "300", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "scorecard.json").read_text())
    assert [f["fault"] for f in card["faults"]] == ["spike", "level_shift", "noise_burst", "frozen", "overload",
                                                    "slow_drift"]
    assert card["caught"] == 6, card["missed"]
    assert len(card["false_alarms"]) <= 1
    assert "faults injected 6" in result.output
    recorded = (tmp_path / "run.jsonl").read_text().splitlines()
    assert len(recorded) > 2000  # the run was recorded for `edgewatch plot`


def test_demo_without_its_model_says_how_to_get_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--model", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 3 and "models/README.md" in result.output


def test_an_episode_inside_a_later_fault_is_not_credited_to_the_previous_one() -> None:
    from edgewatch.eval.fault_match import match_episodes

    truth = [{"fault": "a", "start_ts": 0.0, "end_ts": 1.0}, {"fault": "b", "start_ts": 1.5, "end_ts": 2.0}]
    card = match_episodes(truth, [0.1, 1.6, 2.4, 5.0], slack=1.0)  # 1.6 is inside b, though within a's slack
    assert [(f.fault, f.caught, f.episodes) for f in card.faults] == [("a", True, 1), ("b", True, 2)]
    assert card.false_alarms == [5.0]
