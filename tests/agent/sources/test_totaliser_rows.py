"""The row assembler turns a model's totalisers into their rate (the card's ``totalisers``), per stream, by fit's rule
(edgewatch/fit/totalisers.py): live rows equal what ``edgewatch fit`` trained on and what the replay gives."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.sources.parsing import BadReason, Measurement
from edgewatch.agent.sources.rows import RowAssembler
from edgewatch.fit import totalisers
from tests.agent.sources.broker_agent import run_agent_on_broker
from tests.agent.test_without_torch import BLOCKER
from tests.fit.test_totalisers import STEP, T0, packaging_line, write

FEATURES = ["belt_speed_mps", "motor_current_A", "pack_count"]
WRAPPED = {"pack_count": {"per": "s", "wrap": 65536}}


def test_the_first_row_has_no_rate_a_wrap_is_exact_and_a_reset_holds() -> None:
    rows = RowAssembler(FEATURES, totalisers=WRAPPED)
    assert rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 65500}, "a", 0.0) \
        is BadReason.MISSING_FEATURE  # no previous value: no rate yet (fit drops that row too)
    m = rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 24}, "a", 5.0)
    assert type(m) is Measurement and m.values == [1.0, 9.0, 12.0]  # (24 - 65500) mod 65536 = 60 packs in 5 s
    # another stream has its own previous value
    assert rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 5}, "b", 5.0) \
        is BadReason.MISSING_FEATURE
    assert rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 74}, "a", 10.0).values[2] == 10.0
    rows.use_totalisers(dict(WRAPPED))  # a swapped model with the same rule: the streams' rates go on
    assert rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 99}, "a", 15.0).values[2] == 5.0
    rows.use_totalisers({"pack_count": {"per": "row", "wrap": 65536}})  # another rule: they start again
    assert rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 109}, "a", 20.0) \
        is BadReason.MISSING_FEATURE
    rows.use_totalisers(None)  # a model without: the raw value, as before
    assert rows.keyed({"belt_speed_mps": 1, "motor_current_A": 9, "pack_count": 119}, "a", 25.0).values[2] == 119.0

    reset = RowAssembler(["flow", "total"], totalisers={"total": {"per": "s"}})
    got = [reset.keyed({"flow": 1, "total": v}, "s", 60.0 * i) for i, v in enumerate([100.0, 160.0, 4.0, 64.0])]
    assert got[0] is BadReason.MISSING_FEATURE
    assert [g.values[1] for g in got[1:]] == [1.0, 1.0, 1.0]  # the reset's step holds the rate before it
    per_row = RowAssembler(["x", "n"], totalisers={"n": {"per": "row"}})
    per_row.keyed({"x": 0, "n": 10}, "s", 0.0)
    assert per_row.keyed({"x": 0, "n": 17}, "s", 3.0).values == [0.0, 7.0]


def test_the_assembler_gives_the_rates_fit_trained_on() -> None:
    """Row by row, the same numbers as :func:`edgewatch.fit.totalisers.rate` over the file's column."""
    cols = packaging_line(5, 400)
    t = T0.timestamp() + STEP * np.arange(400)
    rows = RowAssembler(FEATURES, totalisers=WRAPPED)
    got = [rows.keyed({f: float(cols[f][i]) for f in FEATURES}, "s", float(t[i])) for i in range(400)]
    want = totalisers.rate(cols["pack_count"], t, totalisers.wrap_of([cols["pack_count"]]))
    assert got[0] is BadReason.MISSING_FEATURE and math.isnan(want[0])
    assert [g.values[2] for g in got[1:]] == list(want[1:])
    assert RowAssembler(FEATURES).keyed({f: 1.0 for f in FEATURES}, "s", 0.0).values == [1.0, 1.0, 1.0]


def _starts(events: list[dict]) -> list[tuple]:
    return [(e["ts"], [(f["feature"], f["error"]) for f in e["top_features"]]) for e in events
            if e["event"] == "start"]


def _stdin(model: Path, lines: list[str], cwd: Path) -> tuple[list[dict], str]:
    run = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "run", "--model", str(model), "--source", "stdin",
                          "--sink", "stdout"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")], run.stderr


@pytest.fixture(scope="module")
def fault(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A model fitted in the default form on the packaging line, a short fault day and the replay's events."""
    tmp = tmp_path_factory.mktemp("live")
    normal = write(tmp / "normal.csv", packaging_line(1, 4800))
    fit = subprocess.run([sys.executable, "-c", BLOCKER, "fit", str(normal), "-o", str(tmp / "m.onnx"), "-q"],
                         capture_output=True, text=True, timeout=300, cwd=tmp)
    assert fit.returncode == 0, fit.stderr
    n, onset = 700, 400
    cols = packaging_line(3, n, fault_from=onset)
    day = write(tmp / "fault.csv", cols)
    run = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "run", "--model", str(tmp / "m.onnx"), "--source",
                          f"replay:{day}", "--sink", "stdout"], capture_output=True, text=True, timeout=120, cwd=tmp)
    assert run.returncode == 0, run.stderr
    replay = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    starts = _starts(replay)
    assert len(starts) == 1 and 0 <= starts[0][0] - (T0.timestamp() + onset * STEP) <= 120, replay
    assert starts[0][1][0][0] == "pack_count", replay  # the packing rate alone dropped
    return {"dir": tmp, "model": tmp / "m.onnx", "cols": cols, "n": n, "replay": replay,
            "t": T0.timestamp() + STEP * np.arange(n)}


def test_stdin_rows_keyed_or_in_model_order_equal_the_replays(fault: dict) -> None:
    cols, t = fault["cols"], fault["t"]
    keyed = [json.dumps({"ts": float(t[i]), **{f: float(f"{cols[f][i]:.6g}") for f in FEATURES}})
             for i in range(fault["n"])]
    events, log = _stdin(fault["model"], keyed, fault["dir"])
    assert "missing_feature 1" in log, log
    _same_starts(events, fault["replay"], log)
    arrays = [json.dumps({"ts": float(t[i]), "values": [float(f"{cols[f][i]:.6g}") for f in FEATURES]})
              for i in range(fault["n"])]
    events, log = _stdin(fault["model"], arrays, fault["dir"])
    _same_starts(events, fault["replay"], log)


def _mqtt(fault: dict, broker, url: str, messages: list[tuple[str, str]]) -> tuple[list[dict], str]:  # noqa: ANN001
    """``agent run`` on a real mosquitto (``url``), torch blocked, sent ``messages`` (topic, payload): its events and
    its log."""
    done = run_agent_on_broker(broker, [sys.executable, "-c", BLOCKER, "agent", "run", "--model", str(fault["model"]),
                                        "--source", url, "--sink", "stdout"], messages, fault["dir"],
                               fault["dir"] / "agent.err")
    return [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")], done.stderr


def _same_starts(events: list[dict], replay: list[dict], log: str) -> None:
    """The same episode starts, at the same times with the same top features; the windows are scored in other
    batches live, which moves an error in its 7th digit."""
    live, want = _starts(events), _starts(replay)
    assert [(ts, [f for f, _ in top]) for ts, top in live] == [(ts, [f for f, _ in top]) for ts, top in want], \
        (live, want, log)
    assert [e for _, top in live for _, e in top] == pytest.approx([e for _, top in want for _, e in top], rel=1e-5)


def test_one_mqtt_topic_per_sensor_gives_the_replays_rows(fault: dict, broker) -> None:  # noqa: ANN001
    """A real mosquitto, one topic per sensor (the counter's raw value as the PLC publishes it), each with its time;
    the roots are this test's own (others leave retained topics on the session broker)."""
    cols, t, root = fault["cols"], fault["t"], "totaliser-rates"
    messages = [(f"{root}/line1/{f}", json.dumps({"value": float(f"{cols[f][i]:.6g}"), "ts": float(t[i])}))
                for i in range(fault["n"]) for f in FEATURES]
    events, log = _mqtt(fault, broker, f"mqtt://{broker.host}:{broker.port}/{root}/{{stream}}/{{feature}}", messages)
    assert "bad 1, windows scored 690" in log and "missing_feature 1" in log, log  # 700 rows, a window of 10
    _same_starts(events, fault["replay"], log)
    root = "totaliser-arrays"  # a values array in the model's order, parsed whole by the MQTT source
    messages = [(f"{root}/line1", json.dumps({"ts": float(t[i]), "values": [float(f"{cols[f][i]:.6g}")
                                                                           for f in FEATURES]}))
                for i in range(fault["n"])]
    events, log = _mqtt(fault, broker, f"mqtt://{broker.host}:{broker.port}/{root}/#", messages)
    assert "missing_feature 1" in log, log
    _same_starts(events, fault["replay"], log)


def test_a_sparkplug_row_reaches_the_model_as_the_counters_rate() -> None:
    """The MQTT source's Sparkplug path (a birth, then report by exception) builds its rows itself; for a model
    with totalisers they go through the assembler too (``RowAssembler.whole``)."""
    from edgewatch.agent.sources.mqtt import MqttSource
    from edgewatch.mqtt.connection import parse_broker_url
    from edgewatch.wire.sparkplug import encode_metric, encode_payload

    broker, topic = parse_broker_url("mqtt://127.0.0.1:1/spBv1.0/#", "totaliser-test")
    src = MqttSource("sp", broker, topic, ["speed", "packs"])
    src.rows.use_totalisers({"packs": {"per": "s", "wrap": 65536}})
    birth = encode_payload([encode_metric("speed", 1.0, alias=1), encode_metric("packs", 65500.0, alias=2)],
                           timestamp=1_000)
    assert [i.payload for i in src._items("spBv1.0/plant/DBIRTH/gw1/line1", birth, 1.0)] == [
        BadReason.MISSING_FEATURE]
    data = encode_payload([encode_metric(None, 24.0, alias=2)], timestamp=6_000)  # wrapped: 60 packs in 5 s
    (item,) = src._items("spBv1.0/plant/DDATA/gw1/line1", data, 6.0)
    assert item.payload == Measurement([1.0, 12.0], 6.0, "spBv1.0/plant/gw1/line1")
