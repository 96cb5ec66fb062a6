"""Each feature's logging step in the card (``logged_every``), as the row assembler uses it: a 60-s sensor's first
value is held for three of its own steps, not three of the rows', and the slow-sensor line is said only well beyond
the step the model was fitted with. A card without it behaves as before. (The fit and the live run through
mosquitto: tests/fit/test_mixed_rates.py, tests/agent/sources/test_mixed_rates_live.py.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import load_runtime
from edgewatch.agent.sinks.memory import MemorySink
from edgewatch.agent.sources import make_source
from edgewatch.agent.sources.parsing import BadReason, Measurement
from edgewatch.agent.sources.rows import RowAssembler
from edgewatch.contract import PREFIX, ModelCard
from edgewatch.errors import BadModelFile
from tests.modelkit import make_card, write_model

TAGS = ["VIB_RMS", "FLOW", "BRG_TEMP"]
STEPS = {"VIB_RMS": 1.0, "FLOW": 5.0, "BRG_TEMP": 60.0}


def _pump(rows: RowAssembler, seconds: int, temp_every: int = 60) -> list[Measurement | BadReason]:
    """A 1-s vibration, a 5-s flow and a bearing temperature every ``temp_every`` s, one message per value, each
    timed by its own ts (as on one MQTT topic per sensor)."""
    out: list[Measurement | BadReason] = []
    for i in range(seconds):
        out += rows.feature("pump1", "VIB_RMS", 1.8, float(i), float(i))
        if i % 5 == 0:
            out += rows.feature("pump1", "FLOW", 77.5, float(i), float(i))
        if i % temp_every == 0:
            out += rows.feature("pump1", "BRG_TEMP", 57.5, float(i), float(i))
    return out


def test_a_60_s_sensors_first_minute_is_held_by_the_cards_step_and_stale_without_it() -> None:
    """Before (and still for a card without the field): the first values of the flow and the temperature were held
    for three *row* intervals (3 s) until each had an interval of its own, so 56 of the first 300 rows were
    stale_feature; the replay of the same file held them all."""
    old = _pump(RowAssembler(TAGS), 300)
    assert old.count(BadReason.STALE_FEATURE) == 56
    new = _pump(RowAssembler(TAGS, logged_every=STEPS), 300)
    assert BadReason.STALE_FEATURE not in new and len(new) == 299  # a row per vibration value (the last waits)
    rows = RowAssembler(TAGS, logged_every=STEPS)
    _pump(rows, 30)
    assert rows.limit("pump1", 2) == 180.0  # 3 of its 60 s before it has an interval of its own
    # a sensor that stops is still stale by its card step: the temperature's only value, from 180 s old on
    got = [(i, r) for i in range(30, 200) for r in rows.feature("pump1", "VIB_RMS", 1.8, float(i), float(i))
           + (rows.feature("pump1", "FLOW", 77.5, float(i), float(i)) if i % 5 == 0 else [])]
    assert [i for i, r in got if r is BadReason.STALE_FEATURE][:1] == [182]  # the row of 181 s, made at 182


def test_the_slow_sensor_line_is_said_only_well_beyond_the_step_the_model_was_fitted_with(
        caplog: pytest.LogCaptureFixture) -> None:
    """Before: 'BRG_TEMP reports every 60 s ... or leave it out' although the model was fitted on it held between
    its 60-s values. Now said when its live step is at least 3 times the card's (here 600 s against 60 s); a card
    without the field keeps the line as it was."""
    caplog.set_level(logging.WARNING, "edgewatch.agent.sources")
    _pump(RowAssembler(TAGS, logged_every=STEPS, source="new"), 700)
    assert "reports every" not in caplog.text, caplog.text
    _pump(RowAssembler(TAGS, source="old"), 700)
    assert "source old: 'BRG_TEMP' reports every 60 s, rows are made every 1 s" in caplog.text, caplog.text
    assert "source old: 'FLOW' reports every 5 s" in caplog.text
    caplog.clear()
    _pump(RowAssembler(TAGS, logged_every=STEPS, source="slower"), 6100, temp_every=600)
    assert "source slower: 'BRG_TEMP' reports every 600 s, the model was fitted on it logged every 60 s" \
        in caplog.text, caplog.text
    assert "'FLOW'" not in caplog.text


def test_the_card_carries_logged_every_only_when_set_and_refuses_what_is_no_step() -> None:
    card = make_card(features=TAGS)
    assert PREFIX + "logged_every" not in card.to_props()  # a card without it is written as before
    props = make_card(features=TAGS, logged_every=STEPS).to_props()
    assert json.loads(props[PREFIX + "logged_every"]) == STEPS
    assert ModelCard.from_props(props).logged_every == STEPS
    for steps, why in [({"nope": 1.0}, "not features"), ({"FLOW": 0}, "positive number"),
                       ({"FLOW": True}, "positive number"), ({"FLOW": "5 s"}, "positive number"),
                       ([5.0], "must map features")]:
        with pytest.raises(BadModelFile, match=why):
            ModelCard.from_props({**props, PREFIX + "logged_every": json.dumps(steps)})


def test_the_agent_gives_each_source_the_cards_steps_and_a_swapped_models(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("Time,VIB_RMS,FLOW,BRG_TEMP\n" + "".join(f"{i},1.8,77.5,57.5\n" for i in range(5)))
    old = ScoringModel(write_model(tmp_path / "old.onnx", make_card(window=3, features=TAGS)))
    agent = Agent(old, [MemorySink()], AgentOptions(stride=1, drift_every=0, agent_id="steps"))
    source = make_source(f"replay:{csv}", TAGS)
    agent.add_source(source)
    assert source.rows.logged_every == [None, None, None]
    new = write_model(tmp_path / "new.onnx", make_card(window=3, features=TAGS, logged_every=STEPS))
    agent.queue_model(load_runtime(new))
    agent.run(duration=30)
    assert source.rows.logged_every == [1.0, 5.0, 60.0]
