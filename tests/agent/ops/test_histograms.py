"""The inference histograms take a drained batch's observations at once and expose what Prometheus's own would.

``BatchHistogram`` (one NumPy pass per batch) against ``prometheus_client.Histogram``
fed the same values one by one, both read back through prometheus_client's text parser.
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgewatch.agent.ops.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, METRICS, AgentMetrics, MetricSpec


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    return {(s.name, s.labels.get("le", "")): s.value for fam in text_string_to_metric_families(text)
            if fam.name == name for s in fam.samples if not s.name.endswith("_created")}


@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS, BATCH_BUCKETS])
def test_batched_observations_read_as_prometheus_histograms_do(buckets: tuple[float, ...]) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.choice(buckets, 20), rng.uniform(0, 2 * buckets[-1], 200), [0.0, 1e9]])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batched = MetricSpec("h", METRICS["latency"].kind, "a histogram", buckets=buckets).build(ours)
    one_by_one = Histogram("h", "a histogram", buckets=buckets, registry=theirs)
    for part in np.array_split(values, 7):  # drained batches of several sizes, one of them a single value
        batched.observe_many(part)
    batched.observe(0.5)
    for v in [*values.tolist(), 0.5]:
        one_by_one.observe(v)
    got, want = _samples(ours, "h"), _samples(theirs, "h")
    assert got.keys() == want.keys() and len(got) == len(buckets) + 3  # the buckets, +Inf, count and sum
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_the_agents_inference_histograms_and_their_stand_ins() -> None:
    metrics = AgentMetrics()
    metrics.latency.observe_many([0.001, 0.002])
    metrics.batch_size.observe_many(np.array([16, 15]))
    assert metrics.registry.get_sample_value("edgewatch_inference_seconds_count") == 2
    assert metrics.registry.get_sample_value("edgewatch_inference_batch_bucket", {"le": "16.0"}) == 2
    quiet = AgentMetrics(exported=False)
    quiet.latency.observe_many([0.001])  # without --metrics: nothing is kept, nothing fails
    with pytest.raises(ValueError, match="no labels"):
        MetricSpec("x", METRICS["latency"].kind, "labelled", ("a",), buckets=(1.0,)).build(CollectorRegistry())
