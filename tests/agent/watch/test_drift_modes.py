"""The drift check on data with operating points: a stream is compared with the points it runs in.

A pump fitted on normal data that runs and stops: a recent sample that is
all "stopped" is a subset of the training distribution, not a drift, yet KS
against the whole mixture flags it. With ``modes`` in the reference the
sample is tested against the mixture of the points' own distributions,
weighted by its own time in each (edgewatch/contract/drift_reference.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from edgewatch.agent.watch.drift_watch import DriftWatch, ks_statistics
from edgewatch.contract import DriftReference, ModelCard, Scaler
from edgewatch.contract.drift_reference import DriftModes, drift_reference_from
from edgewatch.errors import BadModelFile

FEATURES = ["flow", "pressure", "ambient"]
RUNNING = np.array([10.0, 7.5, 15.0])
RUN_SD = np.array([0.6, 0.03, 3.0])
STOPPED = np.array([0.0, 0.0, 15.0])
STOP_SD = np.array([0.01, 0.01, 3.0])


def rows(rng: np.random.Generator, n: int, running: bool, shift: np.ndarray | float = 0.0) -> np.ndarray:
    """A pump's rows: running (flow, pressure up) or stopped (both near zero); the ambient the same either way."""
    centre, sd = (RUNNING, RUN_SD) if running else (STOPPED, STOP_SD)
    return rng.normal(centre, sd, (n, 3)) + shift


def training(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rows(rng, 14_000, True), rows(rng, 6_000, False)])


CENTRES = [dict(zip(FEATURES, RUNNING.tolist())), dict(zip(FEATURES, STOPPED.tolist()))]


@pytest.fixture(scope="module")
def with_modes() -> DriftReference:
    return drift_reference_from(training(), features=FEATURES, modes=CENTRES)


@pytest.fixture(scope="module")
def without_modes() -> DriftReference:
    return drift_reference_from(training())


def check(reference: DriftReference, sample: np.ndarray):  # noqa: ANN201 - the DriftEvent or None
    watch = DriftWatch(reference, FEATURES, sample_size=len(sample), check_every=len(sample), min_statistic=0.25)
    watch.observe_many(np.zeros(len(sample), dtype=int), sample)
    events = watch.due_events()
    assert watch.checks_run == 1
    return events[0] if events else None


def test_fit_side_finds_both_points_and_their_own_quantiles(with_modes: DriftReference) -> None:
    modes = with_modes.modes
    assert modes is not None and modes.n == [14_000, 6_000]  # every row of each point, none of the other's
    assert modes.features == FEATURES
    assert modes.centre[0][0] == pytest.approx(10.0, abs=0.05) and modes.centre[1][0] == pytest.approx(0.0, abs=0.01)
    assert modes.scale[0] == pytest.approx(np.sqrt(0.7 * 0.36 + 0.3 * 1e-4), rel=0.05)  # pooled within the points
    assert modes.quantiles[1][0][0] > -0.1 and modes.quantiles[1][0][-1] < 0.1  # the stop's own flow
    assert with_modes.n == 20_000 and with_modes.quantiles[0][0] < 0.0  # the whole distribution is kept too


def test_a_long_stop_is_a_drift_against_the_mix_and_none_against_its_point(with_modes: DriftReference,
                                                                            without_modes: DriftReference) -> None:
    rng = np.random.default_rng(1)
    stopped = rows(rng, 512, False)
    before = check(without_modes, stopped)
    assert before is not None and {"flow", "pressure"} <= set(before.features)  # the false alarm reproduced
    assert check(with_modes, stopped) is None
    assert check(with_modes, rows(rng, 512, True)) is None  # a long run alone, too
    assert check(without_modes, rows(rng, 512, True)) is not None


def test_a_sample_in_both_points_at_its_own_shares_is_compared_with_their_mixture(with_modes: DriftReference) -> None:
    rng = np.random.default_rng(2)
    sample = np.concatenate([rows(rng, 100, True), rows(rng, 412, False)])
    watch = DriftWatch(with_modes, FEATURES, sample_size=512, check_every=512, min_statistic=0.0)
    watch.observe_many(np.zeros(512, dtype=int), sample)
    assert watch.due_events() == []
    shifted = sample + [0.0, 0.02, 0.0]  # every row's pressure up: 2/3 of the running sd, 2 sd of a stop's
    event = check(with_modes, shifted)
    assert event is not None and event.features == ["pressure"]
    assert event.modes == pytest.approx([100 / 512, 412 / 512])
    n_k = np.asarray(with_modes.modes.n, dtype=float)
    w = np.asarray(event.modes)
    assert event.n_reference == round(1 / float((w * w / n_k).sum()))


def test_an_offset_while_running_is_still_a_drift(with_modes: DriftReference) -> None:
    """A sensor offset of a small fraction of its level (pressure +0.1 on 7.5, 3 running sd)."""
    rng = np.random.default_rng(3)
    event = check(with_modes, rows(rng, 512, True, shift=np.array([0.0, 0.1, 0.0])))
    assert event is not None and event.features == ["pressure"]
    assert event.modes == [1.0, 0.0] and event.n_reference == 14_000


def test_a_level_outside_every_point_is_a_drift(with_modes: DriftReference) -> None:
    rng = np.random.default_rng(4)
    half = rng.normal([5.0, 3.75, 15.0], RUN_SD, (512, 3))  # half speed: never in the training data
    event = check(with_modes, half)
    assert event is not None and event.features == ["flow", "pressure"]
    # midway, its rows split between the two points, each beyond its point's every value: a distance of 1/2
    assert event.statistic["flow"] == pytest.approx(0.5, abs=0.05)
    low = rng.normal([-3.0, 7.5, 15.0], RUN_SD, (512, 3))  # flow under a stop's with the pressure up: near no point
    assert check(with_modes, low).statistic["flow"] > 0.95
    assert check(with_modes, rows(rng, 512, False, shift=np.array([0.0, 0.0, 20.0]))).features == ["ambient"]


def test_two_speeds_seen_one_at_a_time_raise_nothing() -> None:
    rng = np.random.default_rng(5)
    slow, fast = np.array([5.0, 3.0, 15.0]), np.array([10.0, 7.5, 15.0])
    train = np.concatenate([rng.normal(slow, RUN_SD, (8_000, 3)), rng.normal(fast, RUN_SD, (8_000, 3))])
    centres = [dict(zip(FEATURES, slow.tolist())), dict(zip(FEATURES, fast.tolist()))]
    ref = drift_reference_from(train, features=FEATURES, modes=centres)
    for centre in (slow, fast):
        assert check(ref, rng.normal(centre, RUN_SD, (512, 3))) is None
    assert check(drift_reference_from(train), rng.normal(slow, RUN_SD, (512, 3))) is not None


def test_false_alarm_rate_at_any_occupancy_stays_near_alpha(with_modes: DriftReference) -> None:
    """200 fresh samples of 512, each at a random share of running: the KS test alone (no floor), alpha 5 %."""
    rng = np.random.default_rng(6)
    watch = DriftWatch(with_modes, FEATURES, sample_size=512, check_every=512, min_statistic=0.0)
    trials = 200
    for slot in range(trials):
        running = int(rng.integers(0, 513))
        watch.observe_many(np.full(512, slot), np.concatenate([rows(rng, running, True), rows(rng, 512 - running, False)]))
    events = watch.due_events()
    assert watch.checks_run == trials
    assert len(events) / trials <= 0.08


def test_the_mixture_statistic_is_the_ks_distance_to_the_true_mixture_cdf() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 100_000), rng.normal(4, 0.5, 100_000)
    knots = np.stack([np.quantile(a, np.linspace(0, 1, 101))[:, None], np.quantile(b, np.linspace(0, 1, 101))[:, None]])
    for w in (0.3, 0.8):
        x = np.concatenate([rng.normal(0, 1, int(400 * w)), rng.normal(4, 0.5, 400 - int(400 * w))])[:, None]
        ours = float(ks_statistics(x, knots, np.array([w, 1 - w]))[0])
        exact = stats.kstest(x[:, 0], lambda v: w * stats.norm.cdf(v) + (1 - w) * stats.norm.cdf(v, 4, 0.5)).statistic
        assert ours == pytest.approx(exact, abs=0.012)


def test_one_point_of_weight_one_is_the_plain_statistic_bit_for_bit() -> None:
    rng = np.random.default_rng(8)
    knots = np.sort(rng.normal(size=(101, 3)), axis=0)
    x = rng.normal(size=(300, 3))
    assert np.array_equal(ks_statistics(x, knots), ks_statistics(x, knots[None], np.ones(1)))


def test_modes_round_trip_through_the_card_and_older_references_read_without_them(with_modes: DriftReference,
                                                                                   without_modes: DriftReference
                                                                                   ) -> None:
    def card(ref: DriftReference) -> ModelCard:
        return ModelCard(family="x", task="reconstruct", sample_shape=[5, 3], features=FEATURES,
                         scaler=Scaler.identity(3), score="mse", threshold=1.0, threshold_method="t",
                         score_stats={}, quantization="none", trained_on={}, window=5, drift_reference=ref)

    back = ModelCard.from_props(card(with_modes).to_props()).drift_reference
    assert back == with_modes and isinstance(back.modes, DriftModes)
    props = card(without_modes).to_props()
    assert "modes" not in json.loads(props["edgewatch.drift_reference"])  # older agents still read such files
    assert ModelCard.from_props(props).drift_reference.modes is None


@pytest.mark.parametrize("breakage, says", [
    (lambda m: m.update(scale=[0.5, 0.0, 1.0]), "scales finite and positive"),
    (lambda m: m.update(features=["flow", "pressure", "humidity"]), "which are not features"),
    (lambda m: m.update(quantiles=m["quantiles"][:1]), "at least two centres"),
    (lambda m: m["quantiles"][0][1].reverse(), "non-decreasing"),
    (lambda m: m.update(centre=3.0), "malformed"),
])
def test_a_malformed_modes_entry_is_refused_saying_why(with_modes: DriftReference, breakage, says: str) -> None:  # noqa: ANN001
    plain = json.loads(json.dumps(with_modes.to_dict()))
    breakage(plain["modes"])
    with pytest.raises(BadModelFile, match=says):
        DriftWatch(DriftReference.from_dict(plain), FEATURES)


SHIPPED = sorted((Path(__file__).resolve().parents[3] / "models").glob("*.onnx")) + sorted(
    (Path(__file__).resolve().parents[3] / "edgewatch" / "shipped_models").glob("*.onnx"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_model_files_load_and_check_the_whole_distribution_as_before(path: Path) -> None:
    from edgewatch.agent.model import ScoringModel

    card = ScoringModel(path).card
    ref = card.drift_reference
    if ref is None:  # a file without one (nab-best.onnx) still loads, and has no drift check
        assert card.features
        return
    assert ref.modes is None and "modes" not in ref.to_dict()
    watch = DriftWatch(ref, card.features, sample_size=256, check_every=256)
    sample = np.asarray(ref.mean) + np.asarray(ref.std) * np.random.default_rng(9).standard_normal((256, card.n_features))
    watch.observe_many(np.zeros(256, dtype=int), sample + np.asarray(ref.std))  # one std up: a drift
    events = watch.due_events()
    assert len(events) == 1 and events[0].modes is None and events[0].n_reference == ref.n
    knots = np.asarray(ref.quantiles).T[:, watch._checked]
    assert list(events[0].statistic.values()) == ks_statistics(sample + np.asarray(ref.std), knots).tolist()
