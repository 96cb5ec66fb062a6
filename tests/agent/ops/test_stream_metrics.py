"""Per-stream Prometheus series from a real agent and its real /metrics endpoint.

The scrape is parsed with prometheus_client's own text parser. Without
``--metrics`` the loop's per-stream calls are stand-ins that keep nothing.
"""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.ops.metrics import OTHER_STREAMS, STREAM_SERIES, AgentMetrics, StreamSeries, UnexportedStreams
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.ops.server import OpsServer
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.sources import Item, Kind
from tests.modelkit import make_card, write_model

THRESHOLD = 0.1


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScoringModel:
    return ScoringModel(write_model(tmp_path_factory.mktemp("m") / "m.onnx",
                                    make_card(window=3, threshold=THRESHOLD, k=1, n=1)))


def _items(stream: str, rows: list[list[float]], t0: float = 1000.0) -> list[Item]:
    return [Item(Kind.MEASUREMENT, "test", Measurement(r, t0 + i, stream), t0 + i) for i, r in enumerate(rows)]


def _scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name of each sample -> {sorted label items: value}."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_series_per_stream_with_the_rest_under_other(model: ScoringModel) -> None:
    metrics = AgentMetrics(exported=True)
    agent = Agent(model, [], AgentOptions(drift_every=0, sensitivity=2.0), metrics=metrics)
    ops = OpsServer(agent, "127.0.0.1:0", max_streams=2)
    try:
        calm, hot = [[0.5] * 4] * 6, [[0.5] * 4] * 3 + [[1.5, 0.5, 0.5, 0.5]] * 3
        agent.process(_items("s0", hot) + _items("s1", calm) + _items("s2", calm[:4]) + _items("s3", hot))
        got = _scrape(ops.url)
    finally:
        ops.close()
    stream = lambda name: (("stream", name),)  # noqa: E731
    windows = got["edgewatch_stream_windows_total"]
    assert windows == {stream("s0"): 4, stream("s1"): 4, stream(OTHER_STREAMS): 2 + 4}
    assert got["edgewatch_streams_aggregated"] == {(): 2}
    score = got["edgewatch_anomaly_score"]
    # s0's last window holds the 1.5 in all three rows: score 0.25, anomaly_score 2 x (0.25 - 0.01) / 0.09
    assert score[stream("s0")] == pytest.approx(2 * (0.25 - 0.01) / (THRESHOLD - 0.01), rel=1e-5)
    assert score[stream("s1")] == pytest.approx(2 * (0 - 0.01) / (THRESHOLD - 0.01))
    assert score[stream(OTHER_STREAMS)] == pytest.approx(score[stream("s0")])  # the largest of s2, s3
    alerting = got["edgewatch_stream_alerting"]
    assert alerting == {stream("s0"): 1, stream("s1"): 0, stream(OTHER_STREAMS): 1}
    ages = got["edgewatch_stream_last_message_age_seconds"]
    assert set(ages) == set(alerting) and all(0 <= a < 10 for a in ages.values())
    (labels, one), = got["edgewatch_model_info"].items()
    info = dict(labels)
    assert one == 1 and info["sha256"] == model.sha256 and info["family"] == "test-square"
    assert info["sensitivity"] == "2" and float(info["threshold"]) == pytest.approx(0.055)
    assert {s.name for s in STREAM_SERIES.values()} <= {n.removesuffix("_total") for n in got}


def test_evicted_streams_leave_the_scrape_and_their_slot_starts_from_zero(model: ScoringModel) -> None:
    metrics = AgentMetrics(exported=True)
    agent = Agent(model, [], AgentOptions(drift_every=0, stream_ttl=1.0), metrics=metrics)
    ops = OpsServer(agent, "127.0.0.1:0")
    try:
        agent.process(_items("old", [[0.5] * 4] * 5))
        assert agent.evict_idle(now=agent.table.last_seen[0] + 2.0) == 1
        agent.process(_items("new", [[0.5] * 4] * 3))
        got = _scrape(ops.url)
    finally:
        ops.close()
    assert got["edgewatch_stream_windows_total"] == {(("stream", "new"),): 1}
    assert got["edgewatch_streams_aggregated"] == {(): 0}


def test_series_keep_the_last_window_of_a_slot_and_nothing_without_metrics() -> None:
    from edgewatch.agent.score_scale import SCORE_CAP, ScoreScale

    series = StreamSeries()
    series.scored([3, 1, 3], [0.2, 0.4, 0.6], ScoreScale(0.0, 0.2))
    assert series.read(3) == (2, pytest.approx(3.0)) and series.read(1) == (1, pytest.approx(2.0))
    assert series.read(0)[0] == 0 and np.isnan(series.read(0)[1]) and series.read(99)[0] == 0
    series.scored([1], [1e300], ScoreScale(0.0, 1e-300))  # an infinite anomaly_score is read as the cap
    assert series.read(1) == (2, SCORE_CAP)
    assert isinstance(AgentMetrics(exported=False).stream_series, UnexportedStreams)
