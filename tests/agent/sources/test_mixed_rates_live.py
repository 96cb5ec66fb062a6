"""Per-sensor MQTT topics at their own rates, against a real mosquitto and ``edgewatch agent run`` in its
default form (walk-through 7): a 1-s vibration, a 5-s flow and a bearing temperature, the temperature published
every 60 s, then only when it changes (a deadband)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from edgewatch.contract import PREFIX
from edgewatch.wire.onnx_read import ModelBytes
from tests.agent.sources.broker_agent import run_agent_on_broker
from tests.fit.test_fit_drift import run
from tests.fit.test_mixed_rates import T0, TAGS, _plant, _wide


def _live(tmp_path: Path, broker, model: Path, cols: dict[str, np.ndarray], deadband: float | None,  # noqa: ANN001
          query: str = "", root: str = "rates", flags: tuple[str, ...] = ("--sink", "stdout")
          ) -> tuple[list[dict], str]:
    """Publish each tag on ROOT/pump1/TAG with its own time; the agent's events and its log. The root is the
    test's own: other tests leave retained plant/<agent>/status topics on the session broker."""
    messages = []
    last = None
    for i in range(len(cols["VIB_RMS"])):
        ts = T0.timestamp() + i
        for tag in TAGS:
            v = float(cols[tag][i])
            if tag == "FLOW" and i % 5:
                continue
            if tag == "BRG_TEMP":
                if deadband is None and i % 60:
                    continue
                if deadband is not None and last is not None and abs(v - last) <= deadband:
                    continue
                last = v
            messages.append((f"{root}/pump1/{tag}", json.dumps({"value": round(v, 3), "ts": ts})))
    done = run_agent_on_broker(
        broker, [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source",
                 f"mqtt://{broker.host}:{broker.port}/{root}/{{stream}}/{{feature}}{query}", *flags],
        messages, tmp_path, tmp_path / "agent.err")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], done.stderr


def test_a_slow_sensor_is_held_at_the_fast_rate_and_a_deadband_one_is_named_with_the_way_out(
        tmp_path: Path, broker) -> None:  # noqa: ANN001
    """Every 60 s: held, a row per vibration message. On change: rows skipped stale_feature, and before, the log
    only counted them (1,161 of 2,567 in the walk); now it names the feature, its limit and ?max_age=."""
    model = tmp_path / "m.onnx"
    run(tmp_path, "fit", str(_wide(tmp_path / "n.csv", _plant(1, 7200))), "--family", "pca", "-q", "-o", str(model))
    day = _plant(2, 1200)
    events, log = _live(tmp_path, broker, model, day, None)
    assert "messages 1200 " in log or "messages 1199 " in log, log  # one row per vibration message
    assert not [e for e in events if e["event"] == "start"], events
    assert "'BRG_TEMP' held" not in log

    events, log = _live(tmp_path, broker, model, day, deadband=0.15)
    assert "stale_feature" in log
    assert "'BRG_TEMP' held" in log and "?max_age=" in log, log
    events, log = _live(tmp_path, broker, model, day, deadband=0.15, query="?max_age=2h")
    assert "stale_feature" not in log and "bad 0" in log, log


def test_the_cards_logging_steps_hold_a_60_s_sensors_first_minute_live_and_keep_the_slow_sensor_line_quiet(
        tmp_path: Path, broker) -> None:  # noqa: ANN001
    """``edgewatch fit N.csv -o M.onnx`` and ``edgewatch agent run --model M --source mqtt://...`` as the README
    runs them (no flags; torch blocked, as on the base install): the card says BRG_TEMP was logged every 60 s, so
    its first value is held for 180 s, not 3 s (before: the first minute's rows were stale_feature, 56 of them),
    and the line that called it a slow sensor to leave out, said 9 minutes in, is not said. The same file without
    the field (as fitted before) behaves as before, with flags (``--sink stdout``)."""
    model = tmp_path / "m.onnx"
    run(tmp_path, "fit", str(_wide(tmp_path / "n.csv", _plant(1, 7200))), "-o", str(model))
    day = _plant(2, 660)  # 11 minutes: the slow-sensor check comes with the temperature's 10th value, at 540 s
    events, log = _live(tmp_path, broker, model, day, None, root="steps-new", flags=())
    assert "messages 660 " in log or "messages 659 " in log, log
    assert "stale_feature" not in log and "bad 0" in log, log
    assert "reports every" not in log, log
    assert not [e for e in events if e["event"] == "start"], events

    parsed = ModelBytes.parse(model.read_bytes())
    field = {rec.start for key, _, rec in parsed.metadata if key == PREFIX + "logged_every"}
    assert len(field) == 1
    old = tmp_path / "old.onnx"
    old.write_bytes(parsed.without(field))
    events, log = _live(tmp_path, broker, old, day, None, root="steps-old")
    skipped = re.search(r"bad input by reason: stale_feature (\d+)\n", log)
    assert skipped and 50 <= int(skipped.group(1)) <= 60, log  # 56 in the first minute (the flow's first 5 s too)
    assert "'BRG_TEMP' reports every 60 s, rows are made every 1 s" in log, log
