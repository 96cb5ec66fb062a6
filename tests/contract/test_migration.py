"""Card migration: older formats are upgraded step by step, newer ones read as far as this version knows.

The cards are synthetic: the project has one format version, so an older
one is made by pretending this reader is two versions ahead (a real file
written today then is a "version 1" card for it), and a newer one by
raising a file's version and adding a key no version knows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import ModelRuntime
from edgewatch.agent.sinks import MemorySink
from edgewatch.agent.sources import Item, Kind
from edgewatch.contract import FORMAT_VERSION, PREFIX, UPGRADES, ModelCard, migration, upgrade
from edgewatch.errors import BadModelFile
from tests.modelkit import make_card, write_model


def test_todays_table_reads_todays_cards_unchanged() -> None:
    assert set(UPGRADES) == set(range(min(UPGRADES), FORMAT_VERSION + 1)), "a step for every version read"
    card = make_card(window=5)
    props = {k[len(PREFIX):]: v for k, v in card.to_props().items()}
    assert upgrade(dict(props)) == (props, [])
    assert ModelCard.from_props(card.to_props()) == card


def test_an_older_card_is_upgraded_by_each_later_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = make_card(window=5, threshold_method="best F1 on the calibration set")
    props = written.to_props()
    # as version 1 spelt it in this made-up history: version 2 renamed the key, version 3 reworded the value
    props["edgewatch.calibration"] = props.pop("edgewatch.threshold_method").replace("best F1", "F1-best")
    path = write_model(tmp_path / "v1.onnx", card=written, props=props)
    applied: list[int] = []

    def v1_to_v2(p: dict[str, str]) -> dict[str, str]:
        applied.append(1)
        p["threshold_method"] = p.pop("calibration")
        return p

    def v2_to_v3(p: dict[str, str]) -> dict[str, str]:
        applied.append(2)
        p["threshold_method"] = p["threshold_method"].replace("F1-best", "best F1")
        return p

    monkeypatch.setattr(migration, "FORMAT_VERSION", 3)
    monkeypatch.setattr(migration, "UPGRADES", {1: v1_to_v2, 2: v2_to_v3, 3: migration._unchanged})
    card = ScoringModel(path).card  # the agent's own loading path
    assert applied == [1, 2] and card.format_version == 3 and card.format_warnings == []
    assert card.threshold_method == written.threshold_method and card.threshold == written.threshold
    monkeypatch.setattr(migration, "UPGRADES", {2: v2_to_v3, 3: migration._unchanged})  # version 1 dropped
    with pytest.raises(BadModelFile, match="format version 1; this edgewatch reads versions 2 to 3: re-export"):
        ScoringModel(path)


def _newer(tmp_path: Path, name: str, **changes: str | None) -> Path:
    card = make_card(window=5, threshold=0.1)
    props = card.to_props()
    props["edgewatch.format_version"] = str(FORMAT_VERSION + 1)
    for key, value in changes.items():
        if value is None:
            del props[f"edgewatch.{key}"]
        else:
            props[f"edgewatch.{key}"] = value
    return write_model(tmp_path / name, card=card, props=props)


def test_a_newer_card_runs_with_a_warning_naming_what_was_left_out(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = _newer(tmp_path, "v-next.onnx", input_gain="[-10, 10]")
    model = ScoringModel(path)
    assert model.card.format_version == FORMAT_VERSION + 1
    assert model.card.format_warnings == [
        f"model format version {FORMAT_VERSION + 1} is newer than this edgewatch's ({FORMAT_VERSION}): read as "
        f"version {FORMAT_VERSION}, ignoring ['input_gain']; upgrade edgewatch to read all of it"]
    with caplog.at_level(logging.WARNING, logger="edgewatch"):
        runtime = ModelRuntime.build(model)
    assert runtime.warnings[0] == model.card.format_warnings[0]
    assert any("newer than this edgewatch" in r.getMessage() for r in caplog.records)
    # and it scores like the same card of today's version, through the agent's loop
    today = write_model(tmp_path / "today.onnx", make_card(window=5, threshold=0.1))
    rows = [[0.5, 2.0 if 10 <= i < 16 else 0.5, 0.5, 0.5] for i in range(30)]
    events = []
    for p in (path, today):
        sink = MemorySink()
        agent = Agent(ScoringModel(p), [sink])
        agent.process([Item(Kind.RAW, "s", json.dumps(r).encode(), 1000.0 + i) for i, r in enumerate(rows)])
        agent.close_episodes("end of test")
        events.append([(e["event"], e["seq"], e["score"]) for e in sink.events])
    assert events[0] and events[0] == events[1]
    x = np.asarray(rows[:5], np.float32)[None]
    assert np.array_equal(model.score_many(x).scores, ScoringModel(today).score_many(x).scores)


@pytest.mark.parametrize("changes, reason", [
    ({"threshold": None}, r"lacks edgewatch metadata \['threshold'\] \(model format version \d+ is newer"),
    ({"postprocess": '{"kind": "kalman", "params": {}}'}, r"unknown post-process kind 'kalman'.*is newer"),
    ({"window": '"five"'}, r"newer than this edgewatch"),
])
def test_a_newer_card_that_cannot_run_is_refused_with_the_reason(tmp_path: Path, changes: dict,
                                                                 reason: str) -> None:
    with pytest.raises(BadModelFile, match=reason):
        ScoringModel(_newer(tmp_path, "bad.onnx", **changes))


def test_a_version_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    card = make_card(window=5)
    props = card.to_props()
    props["edgewatch.format_version"] = "two"
    with pytest.raises(BadModelFile, match="format version 'two', not a whole number"):
        ScoringModel(write_model(tmp_path / "two.onnx", card=card, props=props))
