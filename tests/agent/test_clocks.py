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
