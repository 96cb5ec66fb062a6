"""Device clocks as plants have them, through the README's form (``edgewatch agent run --model M --source stdin``).

A gateway stamps its messages in the unit it was set up with (Node-RED
milliseconds, Telegraf's ``json_timestamp_units = "1us"`` or ``"1ns"``,
InfluxDB nanoseconds), and a device's clock can be set back a day, or fall
to 1970 when its battery dies, in the middle of a fault.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.modelkit import make_card, write_model

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
PROFILE = [0.5] * 6 + [2.5] * 4 + [0.5] * 6  # one fault: a start and an end (window 4, 2 of 3 over)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


def _run(model: Path, lines: list[dict], *args: str) -> tuple[list[dict], str]:
    """The installed command on these stdin lines: (the events it printed, its stderr)."""
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", "stdin", *args], input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return [json.loads(x) for x in proc.stdout.decode().splitlines()], proc.stderr.decode()


def test_epoch_seconds_milliseconds_microseconds_and_nanoseconds_are_one_time(model: Path) -> None:
    units = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
    lines = []
    for name, per_second in units.items():
        for i, v in enumerate(PROFILE):
            lines.append({"values": [v] * 4, "ts": (T0 + 60 * i) * per_second, "stream": name})
        for i, v in enumerate(PROFILE):  # the keyed form, as a gateway names its values
            lines.append({"a": v, "b": v, "c": v, "d": v, "timestamp": (T0 + 60 * i) * per_second,
                          "stream": f"{name}-keyed"})
        for i, v in enumerate(PROFILE):  # the number as text, as gateways that write every field as a string
            lines.append({"values": [v] * 4, "ts": str((T0 + 60 * i) * per_second), "stream": f"{name}-text"})
    events, err = _run(model, lines)
    assert "bad_timestamp" not in err
    got = {(e["stream"], e["event"]): e["time"] for e in events}
    for name in units:
        for stream in (name, f"{name}-keyed", f"{name}-text"):
            # the fault's first window over the threshold ends at row 6, its end at the fifth quiet row after it
            assert got[(stream, "start")] == "2023-11-14T22:19:20.000+00:00", (stream, got)
            assert got[(stream, "end")] == "2023-11-14T22:28:20.000+00:00", (stream, got)


@pytest.mark.parametrize("clock", ["a day back", "1970"])
def test_a_clock_set_back_during_a_fault_never_ends_it_before_it_began(model: Path, clock: str) -> None:
    back = T0 - 86400 if clock == "a day back" else 0
    lines = [{"values": [v] * 4, "ts": T0 + 60 * i, "stream": "pump"} for i, v in enumerate(PROFILE[:9])]
    lines += [{"values": [v] * 4, "ts": back + 60 * i, "stream": "pump"} for i, v in enumerate(PROFILE[9:])]
    events, _ = _run(model, lines)
    start, end = events
    assert (start["event"], end["event"]) == ("start", "end") and "reason" not in end  # its data ended it
    assert end["episode"]["end_ts"] >= start["episode"]["start_ts"]
    assert end["episode"]["duration_s"] == 0.0  # unknown, not negative


@pytest.mark.parametrize("form", ["keyed", "one topic per sensor"])
def test_one_message_stamped_a_year_ahead_does_not_silence_its_stream(model: Path, form: str, make_broker) -> None:
    """A device's clock jumps a year ahead and is put right (or one message's time is corrupt). Rows made from
    values held per feature judged every later value older than that one, out of order: the stream made no row
    until the wall clock reached the wrong time, a year later. Its time going back that far is a clock set back."""
    profile = [0.5] * 12 + PROFILE  # a fault after the bad time, which must still be seen
    stamps = [T0 + 60 * i for i in range(len(profile))]
    stamps[5] = T0 + 365 * 86400
    if form == "keyed":
        lines = [{"a": v, "b": v, "c": v, "d": v, "ts": ts, "stream": "pump"} for ts, v in zip(stamps, profile)]
        events, err = _run(model, lines)
    else:
        events, err = _per_sensor(model, make_broker().start(), stamps, profile)
    assert "went back" in err
    assert [e["event"] for e in events] == ["start", "end"], err[-2000:]
    assert events[0]["ts"] == T0 + 60 * (12 + 6)  # the fault's first row over the threshold


def _per_sensor(model: Path, broker, stamps: list[int], profile: list[float]  # noqa: ANN001
                ) -> tuple[list[dict], str]:
    """The same on a real mosquitto, one topic per sensor with its own ts, through the agent in this process."""
    import logging
    import threading

    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.sinks import MemorySink
    from edgewatch.agent.sources import make_source
    from tests.agent.sources.test_mqtt import Publisher
    from tests.waiting import wait_until

    sink = MemorySink()
    agent = Agent(ScoringModel(model), [sink], AgentOptions(drift_every=0, agent_id="clocks"))
    src = make_source(f"mqtt://{broker.host}:{broker.port}/plant/{{stream}}/{{feature}}", ["a", "b", "c", "d"],
                      agent_id="clocks")
    agent.add_source(src)
    logs: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("edgewatch.agent.sources").addHandler(handler)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    pub = Publisher(broker)
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))
        for ts, v in zip(stamps, profile):
            for name in "abcd":
                pub.send(f"plant/pump/{name}", json.dumps({"value": v, "ts": ts}))
        assert wait_until(lambda: agent.summary.messages >= len(profile) - 1)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
        logging.getLogger("edgewatch.agent.sources").removeHandler(handler)
    return [e for e in sink.events if e["event"] in ("start", "end")], "\n".join(logs)
