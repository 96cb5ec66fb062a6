"""The agent's running drift check with its defaults, on the simulator's equipment."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import kstwo

from edgewatch.agent.watch.drift_watch import DriftWatch, kolmogorov_isf, kolmogorov_sf, ks_statistics
from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.sources import Item, Kind
from edgewatch.data.simulator import FEATURES, simulate_series
from edgewatch.contract.drift_reference import drift_reference_from
from tests.modelkit import make_card, write_model


@pytest.mark.parametrize("n", [20, 50, 200, 1000, 5000])
def test_numpy_kolmogorov_matches_scipy(n: int) -> None:
    d = np.linspace(0.01, 0.5, 50)
    ours, exact = kolmogorov_sf(d, n), kstwo.sf(d, n)
    assert np.max(np.abs(ours - exact)) < 0.025
    tail = (exact > 1e-3) & (exact < 0.1)  # where decisions are made: relative accuracy
    assert np.all(np.abs(np.log(ours[tail] / exact[tail])) < 0.1)
    assert kolmogorov_isf(0.0125, n) == pytest.approx(kstwo.isf(0.0125, n), rel=0.01)


def test_discrete_feature_against_a_float32_reference() -> None:
    rng = np.random.default_rng(0)
    levels = rng.choice([0.2, 0.4, 0.6, 0.8], size=(20_000, 1))
    ref = drift_reference_from(levels.astype(np.float32))
    knots = np.asarray(ref.quantiles, dtype=np.float32).T
    d = ks_statistics(rng.choice([0.2, 0.4, 0.6, 0.8], size=(512, 1)), knots)
    assert d[0] < 0.08  # same distribution: 0.4 is not pushed past the knot float32(0.4)


T0 = 1_400_000_000.0  # the rows' own clock: May 2014, 1 s apart


def _agent_events(values: np.ndarray, reference_values: np.ndarray, seen: list[dict] | None = None
                  ) -> list[tuple[str, int]]:
    import tempfile
    from pathlib import Path

    card = make_card(window=5, features=list(FEATURES), drift_reference=drift_reference_from(reference_values))
    with tempfile.TemporaryDirectory() as tmp:
        from edgewatch.agent.model import ScoringModel

        agent = Agent(ScoringModel(write_model(Path(tmp) / "m.onnx", card)), [], AgentOptions())
    events: list[tuple[str, int]] = []

    class Rec:
        def on_batch(self, view) -> None:  # noqa: ANN001
            pass

        def on_event(self, event) -> None:  # noqa: ANN001
            if event["event"].startswith("drift"):
                events.append((event["event"], agent.table.seq[0]))
                if seen is not None:
                    seen.append(event)

    observer = Rec()
    agent.subscribe(observer.on_event, observer.on_batch)
    items = [Item(Kind.MEASUREMENT, "eq", Measurement(row.tolist(), T0 + i), float(i)) for i, row in enumerate(values)]
    for lo in range(0, len(items), 500):
        agent.process(items[lo:lo + 500])
    return events


def test_defaults_stay_quiet_on_unseen_equipment_and_catch_a_shift() -> None:
    training = np.concatenate([simulate_series(30_000, seed=s).values for s in (1, 2, 3)])
    for seed in (7, 9):  # equipments the reference never saw: no drift event
        assert _agent_events(simulate_series(20_000, seed=seed).values, training) == []
    shifted = simulate_series(30_000, seed=7).values.copy()
    shifted[10_000:, 1] = np.clip(shifted[10_000:, 1] + 0.1, 0, 1)  # memory reads 0.1 higher
    seen: list[dict] = []
    events = _agent_events(shifted, training, seen)
    assert [e for e, _ in events] == ["drift"]  # one event for one drift, not one per check
    assert 10_000 < events[0][1] < 16_000
    # on the stream's clock, like an alert: its last row (seq counts from 1), in 2014; the agent's time apart
    assert seen[0]["ts"] == T0 + events[0][1] - 1 and seen[0]["time"].startswith("2014-05-")
    assert seen[0]["checked_at"][:4] == time.strftime("%Y", time.gmtime())


def test_a_drift_that_ends_reports_its_end() -> None:
    rng = np.random.default_rng(1)
    ref = drift_reference_from(rng.normal(size=(50_000, 2)))
    watch = DriftWatch(ref, ["a", "b"], sample_size=256, check_every=256)
    kinds = []
    for block in (rng.normal(size=(1024, 2)), rng.normal(size=(1024, 2)) + [2.0, 0.0], rng.normal(size=(2048, 2))):
        for lo in range(0, len(block), 256):
            watch.observe_many(np.zeros(256, dtype=int), block[lo:lo + 256])
            kinds += [("drift" if ev.features else "drift_end", ev.features) for ev in watch.due_events()]
    assert kinds == [("drift", ["a"]), ("drift_end", [])]
