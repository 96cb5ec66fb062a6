"""The agent's running drift check: KS against a quantile reference, per stream."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from edgewatch.agent.watch.drift_watch import DriftWatch, ks_pvalue, ks_statistic_vs_quantiles
from edgewatch.contract import DriftReference, ModelCard, Scaler
from edgewatch.contract.drift_reference import drift_reference_from
from edgewatch.errors import BadInput, BadModelFile

FEATURES = ["load", "temp", "step", "noise"]


def nominal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four unlike features: normal, skewed, discrete steps, uniform."""
    return np.column_stack([
        rng.normal(0.5, 0.1, n),
        rng.gamma(2.0, 0.1, n),
        rng.choice([0.0, 0.25, 0.75], size=n, p=[0.5, 0.3, 0.2]),
        rng.uniform(0, 1, n),
    ])


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return drift_reference_from(nominal(np.random.default_rng(0), 20_000))


def test_reference_summarises_training_data_and_round_trips_through_the_card(reference: DriftReference) -> None:
    assert reference.n == 20_000
    assert len(reference.quantiles) == 4 and all(len(q) == 101 for q in reference.quantiles)
    assert reference.mean[0] == pytest.approx(0.5, abs=0.01)
    assert reference.std[3] == pytest.approx(1 / np.sqrt(12), abs=0.01)
    card = ModelCard(family="x", task="reconstruct", sample_shape=[5, 4], features=FEATURES,
                     scaler=Scaler.identity(4), score="mse", threshold=1.0, threshold_method="t",
                     score_stats={}, quantization="none", trained_on={}, window=5, drift_reference=reference)
    back = ModelCard.from_props(card.to_props())
    assert back.drift_reference == reference


def test_reference_refuses_too_little_data() -> None:
    with pytest.raises(BadInput):
        drift_reference_from(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(BadModelFile):
        DriftWatch(DriftReference(10, [[0.0, 1.0]], [0.5], [0.3]), FEATURES)


def test_statistic_matches_the_one_sample_ks_against_the_true_cdf() -> None:
    rng = np.random.default_rng(1)
    knots = np.asarray(drift_reference_from(rng.normal(size=200_000)).quantiles[0])
    for shift in (0.0, 0.2):
        x = rng.normal(shift, 1.0, 512)
        ours = ks_statistic_vs_quantiles(x, knots)
        exact = stats.kstest(x, stats.norm.cdf).statistic
        assert ours == pytest.approx(exact, abs=0.01)


def test_p_value_is_the_two_sample_one_at_the_effective_size() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=3000), rng.normal(0.1, 1.0, 400)
    knots = np.asarray(drift_reference_from(ref).quantiles[0])
    d = ks_statistic_vs_quantiles(cur, knots)
    scipy_two = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(scipy_two.statistic, abs=0.01)
    assert float(ks_pvalue(d, 400, 3000)) == pytest.approx(scipy_two.pvalue, rel=0.35)


def test_point_masses_and_constant_features_are_handled() -> None:
    ref = drift_reference_from(np.column_stack([np.full(1000, 3.0), np.repeat([0.0, 1.0], 500)]))
    knots_const, knots_step = (np.asarray(q) for q in ref.quantiles)
    assert ks_statistic_vs_quantiles(np.full(100, 3.0), knots_const) == 0.0
    assert ks_statistic_vs_quantiles(np.full(100, 3.5), knots_const) == 1.0
    assert ks_statistic_vs_quantiles(np.repeat([0.0, 1.0], 50), knots_step) == pytest.approx(0.0, abs=0.011)
    assert ks_statistic_vs_quantiles(np.repeat([0.0, 1.0], [80, 20]), knots_step) == pytest.approx(0.3, abs=0.011)


def test_false_positive_rate_on_data_drawn_from_the_reference(reference: DriftReference) -> None:
    """Fresh nominal samples of 512: the family-wise rate must stay near alpha = 5 %."""
    watch = DriftWatch(reference, FEATURES, sample_size=512, check_every=512)
    trials = 200
    rng = np.random.default_rng(3)
    for slot in range(trials):
        watch.observe_many(np.full(512, slot), nominal(rng, 512))
    events = watch.due_events()
    assert watch.checks_run == trials
    assert len(events) / trials <= 0.08


def test_finds_the_shifted_stream_and_names_the_feature(reference: DriftReference) -> None:
    watch = DriftWatch(reference, FEATURES, sample_size=256, check_every=256)
    rng = np.random.default_rng(4)
    for _ in range(256):  # one message per stream per batch, as the agent sends them
        rows = nominal(rng, 4)
        rows[2, 1] += 0.05  # stream 2: temp up by a quarter of its std
        watch.observe_many(np.arange(4), rows)
    events = watch.due_events()
    assert [e.slot for e in events] == [2]
    event = events[0]
    assert event.features == ["temp"]
    assert event.p_value["temp"] < event.alpha == pytest.approx(0.05 / 4)
    assert event.n == 256 and event.n_reference == 20_000
    assert event.drifted  # its emitted form, events.drift_event, is tested through the agent (tests/agent/test_drift_agent.py)
    assert watch.due_events() == []  # counters restart after a check


def test_checks_wait_for_check_every_messages(reference: DriftReference) -> None:
    watch = DriftWatch(reference, FEATURES, sample_size=64, check_every=100)
    rng = np.random.default_rng(5)
    shifted = nominal(rng, 99) + 1.0
    watch.observe_many(np.zeros(99, dtype=int), shifted)
    assert watch.due_events() == [] and watch.checks_run == 0
    watch.observe_many([0], shifted[:1])
    events = watch.due_events()
    assert len(events) == 1 and events[0].n == 64  # the ring keeps the newest 64


def test_batched_observation_equals_one_by_one(reference: DriftReference) -> None:
    rng = np.random.default_rng(6)
    slots = rng.integers(0, 5, size=300)
    rows = nominal(rng, 300)
    for keep_every in (1, 3):
        one = DriftWatch(reference, FEATURES, sample_size=32, keep_every=keep_every)
        many = DriftWatch(reference, FEATURES, sample_size=32, keep_every=keep_every)
        for s, r in zip(slots, rows):
            one.observe_many([s], r[None])
        for start in range(0, 300, 37):
            many.observe_many(slots[start:start + 37], rows[start:start + 37])
        for s in range(5):
            a, b = one.sample(s), many.sample(s)
            assert a.shape == b.shape
            assert np.array_equal(np.sort(a, axis=0), np.sort(b, axis=0))
            expected = rows[slots == s][::keep_every][-32:].astype(np.float32)  # the sample is kept in float32
            assert np.array_equal(np.sort(a, axis=0), np.sort(expected, axis=0))


def test_a_batch_sorted_by_its_caller_is_kept_the_same(reference: DriftReference) -> None:
    """The agent's column path hands over the slot order it computed; the samples are those of no order."""
    rng = np.random.default_rng(7)
    slots = rng.integers(0, 5, size=300)
    rows = nominal(rng, 300)
    for keep_every in (1, 3):
        plain = DriftWatch(reference, FEATURES, sample_size=32, keep_every=keep_every)
        ordered = DriftWatch(reference, FEATURES, sample_size=32, keep_every=keep_every)
        for start in range(0, 300, 37):
            part = slots[start:start + 37]
            plain.observe_many(part, rows[start:start + 37])
            ordered.observe_many(part, rows[start:start + 37], np.argsort(part, kind="stable"))
        for s in range(5):
            assert plain.sample(s).shape[0] > 0
            assert np.array_equal(plain.sample(s), ordered.sample(s))


def test_reset_bad_rows_and_bad_shapes(reference: DriftReference) -> None:
    watch = DriftWatch(reference, FEATURES, sample_size=32, check_every=10)
    rows = nominal(np.random.default_rng(7), 40)
    rows[::4, 0] = np.nan
    watch.observe_many(np.full(40, 9), rows)
    assert watch.sample(9).shape == (30, 4) and np.isfinite(watch.sample(9)).all()
    watch.reset(9)
    assert watch.sample(9).shape == (0, 4) and watch.due_events() == []
    with pytest.raises(BadInput):
        watch.observe_many([0, 1], rows[:3])
    with pytest.raises(BadInput):
        watch.observe_many([-1], rows[:1])


BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'sklearn', 'matplotlib'):
            raise ImportError(f'{name} is blocked in this test')
        return None
sys.meta_path.insert(0, _Block())
import numpy as np
from edgewatch.agent.watch.drift_watch import DriftWatch
from edgewatch.contract.drift_reference import drift_reference_from
rng = np.random.default_rng(0)
watch = DriftWatch(drift_reference_from(rng.normal(size=(1000, 2))), ['a', 'b'], 64, 64)
watch.observe_many(np.zeros(64, dtype=int), rng.normal(size=(64, 2)) + [0.0, 2.0])
events = watch.due_events()
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'sklearn', 'matplotlib'))
print(events[0].features, heavy)
"""


def test_the_watch_runs_with_torch_onnx_sklearn_blocked() -> None:
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['b'] []"
