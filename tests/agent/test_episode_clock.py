"""An episode the agent ends itself (stopping, a model swap, an idle stream) ends on its stream's clock.

Its start is a message's time; its end was the wall clock, so a replay of
2015 data gave ``duration_s`` 212817737 (issue 24, item 6). The end is now
the stream's last message time and the wall time is ``closed_at``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.runtime import ModelRuntime
from edgewatch.agent.sinks import MemorySink
from edgewatch.agent.sources import Item, Kind
from tests.modelkit import make_card, write_model

T0 = 1439294400.0  # 2015-08-11 12:00 UTC, the day of NAB's TravelTime_451 anomaly


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


def _items(stream: str, start: float, values: list[float], step: float = 300.0) -> list[Item]:
    return [Item(Kind.MEASUREMENT, "src", Measurement([v] * 4, start + i * step, stream), 0.0)
            for i, v in enumerate(values)]


def _closed(event: dict, last_ts: float) -> None:
    assert event["event"] == "end" and event["ts"] == pytest.approx(last_ts)
    assert event["episode"]["end_ts"] == pytest.approx(last_ts)
    assert 0 <= event["episode"]["duration_s"] < 3600  # hours of data, not years
    closed = datetime.fromisoformat(event["closed_at"]).timestamp()
    assert abs(closed - time.time()) < 120  # the agent's own clock, beside the data's


def test_stopping_mid_episode_ends_it_at_the_last_rows_time(model_path: Path, tmp_path: Path) -> None:
    """The README's form on historical data: a replay that ends inside an anomaly."""
    csv = tmp_path / "old.csv"
    rows = [f"{T0 + i * 300:.0f},0.5,0.5,0.5,0.5" for i in range(10)] + \
           [f"{T0 + i * 300:.0f},2.5,2.5,2.5,2.5" for i in range(10, 16)]
    csv.write_text("timestamp,a,b,c,d\n" + "\n".join(rows) + "\n")
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model_path),
                           "--source", f"replay:{csv}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    start, end = [json.loads(line) for line in proc.stdout.splitlines()]
    assert start["event"] == "start" and end["reason"] == "agent stopped" and "closed_at" not in start
    _closed(end, T0 + 15 * 300)
    assert end["time"].startswith("2015-08-11T13:15")


def test_a_model_swap_and_an_idle_stream_end_episodes_on_the_streams_clock(model_path: Path) -> None:
    sink = MemorySink()
    agent = Agent(ScoringModel(model_path), [sink], AgentOptions(drift_every=0, stream_ttl=60.0))
    agent.process(_items("p", T0, [0.5] * 4 + [2.5] * 4) + _items("q", T0 + 7, [0.5] * 4 + [2.5] * 5))
    assert [(e["event"], e["stream"]) for e in sink.events] == [("start", "p"), ("start", "q")]
    agent.queue_model(ModelRuntime.build(ScoringModel(model_path), agent.options.overrides()))
    agent.process([])
    ends = [e for e in sink.events if e["event"] == "end"]
    assert [(e["stream"], e["reason"]) for e in ends] == [("p", "model swapped"), ("q", "model swapped")]
    _closed(ends[0], T0 + 7 * 300)
    _closed(ends[1], T0 + 7 + 8 * 300)
    agent.process(_items("q", T0 + 7 + 9 * 300, [2.5] * 3))  # q opens a new episode, then falls silent
    assert agent.evict_idle(now=time.monotonic() + 61) == 2
    idle = sink.events[-1]
    assert (idle["stream"], idle["reason"]) == ("q", "stream idle")
    _closed(idle, T0 + 7 + 11 * 300)
