"""Features the model reads by their rate (or not at all) are left out of the level checks, and only those.

The reference names them in ``unchecked`` with the reason; a reference
without it (an older file) tests every feature as before.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from edgewatch.agent.watch.drift_watch import DriftWatch
from edgewatch.agent.watch.range_check import range_check_for
from edgewatch.contract import DriftReference, ModelCard, Scaler
from edgewatch.contract.drift_reference import RATE_REASON, drift_reference_from, unchecked_reasons
from edgewatch.errors import BadModelFile

FEATURES = ["temp", "pressure", "flow"]


def training(rng: np.random.Generator, n: int) -> np.ndarray:
    """A temperature warming through the data (40 -> 60), a steady pressure and flow."""
    return np.column_stack([np.linspace(40, 60, n) + rng.normal(0, 0.2, n),
                            rng.normal(3.0, 0.05, n), rng.normal(120, 1.0, n)])


def card_with(ref: DriftReference, training_range: dict | None = None) -> ModelCard:
    return ModelCard(family="x", task="reconstruct", sample_shape=[10, 3], features=FEATURES,
                     scaler=Scaler("identity", [0.0] * 3, [1.0] * 3), score="mse", threshold=1.0,
                     threshold_method="fixed", score_stats={}, quantization="none", trained_on={}, window=10,
                     drift_reference=ref, training_range=training_range)


def late_rows(rng: np.random.Generator, n: int, pressure: float = 3.0) -> np.ndarray:
    """Rows from the end of the warm-up (temperature near 60): in training, but only its last part."""
    return np.column_stack([59 + rng.normal(0, 0.2, n), rng.normal(pressure, 0.05, n), rng.normal(120, 1.0, n)])


def events_of(watch: DriftWatch, rows: np.ndarray) -> list:
    out = []
    for start in range(0, len(rows), 64):
        chunk = rows[start:start + 64]
        watch.observe_many(np.zeros(len(chunk), dtype=np.intp), chunk)
        out += watch.due_events()
    return out


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return training(np.random.default_rng(0), 20_000)


def test_the_reason_round_trips_through_the_card(data: np.ndarray) -> None:
    ref = drift_reference_from(data, unchecked=unchecked_reasons(FEATURES, rates=["temp"]))
    assert ref.unchecked == {"temp": RATE_REASON} and ref.checked(FEATURES) == [1, 2]
    back = ModelCard.from_props(card_with(ref).to_props()).drift_reference
    assert back == ref


def test_a_reference_with_nothing_unchecked_is_written_as_before(data: np.ndarray) -> None:
    """Agents older than ``unchecked`` refuse a reference that has it: a model with no rate or ignored feature
    must not carry it, so a fleet of older agents still takes such files."""
    ref = drift_reference_from(data)
    written = json.loads(card_with(ref).to_props()["edgewatch.drift_reference"])
    assert list(written) == ["n", "quantiles", "mean", "std"]
    with_rates = drift_reference_from(data, unchecked=unchecked_reasons(FEATURES, rates=["temp"]))
    assert json.loads(card_with(with_rates).to_props()["edgewatch.drift_reference"])["unchecked"] == {
        "temp": RATE_REASON}


def test_a_reference_without_unchecked_reads_as_before(data: np.ndarray) -> None:
    """An older file's reference JSON has no ``unchecked``: it loads, and every feature is tested."""
    props = card_with(drift_reference_from(data)).to_props()
    old = json.loads(props["edgewatch.drift_reference"])
    old.pop("unchecked", None)
    assert set(old) == {"n", "quantiles", "mean", "std"}  # the reference as edgewatch wrote it before
    props["edgewatch.drift_reference"] = json.dumps(old)
    ref = ModelCard.from_props(props).drift_reference
    assert ref.unchecked == {}
    watch = DriftWatch(ref, FEATURES, sample_size=512, check_every=512)
    assert watch.checked_features == FEATURES and watch.alpha_corrected == pytest.approx(0.05 / 3)
    # and it flags the late part of the warm-up, as it always did
    found = events_of(watch, late_rows(np.random.default_rng(1), 1024))
    assert found and found[0].features == ["temp"]


def test_the_rate_feature_is_not_ks_tested_but_a_steady_one_still_is(data: np.ndarray,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    ref = drift_reference_from(data, unchecked={"temp": RATE_REASON})
    with caplog.at_level(logging.INFO, logger="edgewatch.agent"):
        watch = DriftWatch(ref, FEATURES, sample_size=512, check_every=512)
    said = [r.getMessage() for r in caplog.records if "not testing the level" in r.getMessage()]
    assert said == [f"drift check: not testing the level of temp: {RATE_REASON}"]
    assert watch.checked_features == ["pressure", "flow"] and watch.alpha_corrected == pytest.approx(0.05 / 2)
    rng = np.random.default_rng(2)
    assert events_of(watch, late_rows(rng, 2048)) == []  # the training data's own late part: no drift
    assert watch.checks_run >= 3
    found = events_of(watch, late_rows(rng, 1024, pressure=3.3))
    assert found and found[0].features == ["pressure"]
    assert set(found[0].statistic) == {"pressure", "flow"}


def test_every_feature_unchecked_runs_no_ks_check(data: np.ndarray) -> None:
    ref = drift_reference_from(data, unchecked=unchecked_reasons(FEATURES, rates=["temp"], ignored=["pressure",
                                                                                                     "flow"]))
    watch = DriftWatch(ref, FEATURES, sample_size=512, check_every=512)
    assert events_of(watch, late_rows(np.random.default_rng(3), 2048, pressure=9.0)) == []
    assert watch.checks_run == 0


def test_unknown_or_malformed_unchecked_is_refused(data: np.ndarray) -> None:
    with pytest.raises(BadModelFile, match="not features"):
        DriftWatch(drift_reference_from(data, unchecked={"speed": "x"}), FEATURES)
    bad = drift_reference_from(data)
    bad.unchecked = ["temp"]  # type: ignore[assignment]
    with pytest.raises(BadModelFile, match="unchecked must map"):
        DriftWatch(bad, FEATURES)


def test_the_first_rows_range_leaves_out_unchecked_features(data: np.ndarray) -> None:
    """Without a training_range every feature's reference span is watched, less the unchecked ones."""
    plain = range_check_for(card_with(drift_reference_from(data)))
    assert plain is not None and plain.watched.tolist() == [True, True, True]
    rated = range_check_for(card_with(drift_reference_from(data, unchecked={"temp": RATE_REASON})))
    assert rated is not None and rated.watched.tolist() == [False, True, True]
    # a stream starting warmer than training: not a finding when temp is read by its rate
    warm = late_rows(np.random.default_rng(4), 120)
    warm[:, 0] += 30
    for check, expect in ((plain, ["temp"]), (rated, [])):
        check.observe(np.zeros(120, dtype=np.intp), warm)
        assert [f for found in check.take() for f in found.features] == expect
    ranged = range_check_for(card_with(drift_reference_from(data, unchecked={"flow": "the score ignores it"}),
                                       training_range={"pressure": [2.8, 3.2], "flow": [116, 124]}))
    assert ranged is not None and ranged.watched.tolist() == [False, True, False]
    everything = drift_reference_from(data, unchecked=dict.fromkeys(FEATURES, "x"))
    assert range_check_for(card_with(everything)) is None
