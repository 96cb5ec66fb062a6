"""anomaly_score: one scale for every family (1.0 = the threshold), and --sensitivity, through the real command.

The square test model scores a window by the mean squared distance of its
values from 0.5; its card says the median score on normal data is 0.01.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.score_scale import ScaleOrigin, ScoreScale, check_sensitivity, scale_for
from edgewatch.contract import PostProcess, ScoreStats
from edgewatch.errors import BadOverride
from tests.modelkit import make_card, write_model

NORMAL_MEDIAN = 0.01  # make_card's score_stats["normal"].p50


def _stats(p50: float) -> dict[str, ScoreStats]:
    return {"normal": ScoreStats(10, p50, 0.1, p50, p50 + 0.1, p50 + 0.2, p50 + 0.3)}


@pytest.mark.parametrize("card_kw, threshold, origin, basis", [
    ({}, 0.25, NORMAL_MEDIAN, ScaleOrigin.NORMAL_MEDIAN),
    ({}, 0.005, 0.0, ScaleOrigin.ZERO),  # a threshold under the normal median: score / threshold
    ({"score_stats": {}}, 0.3, 0.0, ScaleOrigin.ZERO),
    ({"score_stats": _stats(-5.0)}, -1.0, -5.0, ScaleOrigin.NORMAL_MEDIAN),  # log-likelihood-like scores
    ({}, -1.0, -2.0, ScaleOrigin.UNIT_BELOW_THRESHOLD),  # nothing normal below it, and not positive
    ({"score_stats": {"train": ScoreStats(5, 2, 0.1, 2.0, 2.1, 2.2, 2.3)}}, 2.5, 2.0, ScaleOrigin.NORMAL_MEDIAN),
    ({"postprocess": PostProcess("likelihood")}, 0.5, 0.0, ScaleOrigin.POSTPROCESS_ZERO),
    ({"postprocess": PostProcess("levels")}, 0.5, 0.0, ScaleOrigin.POSTPROCESS_ZERO),
], ids=["normal-median", "threshold-under-median", "no-stats", "negative-scores", "unit", "train-stats",
        "likelihood", "levels"])
def test_each_card_gets_0_at_its_origin_and_1_at_its_threshold(card_kw: dict, threshold: float, origin: float,
                                                                basis: ScaleOrigin) -> None:
    scale = scale_for(make_card(threshold=threshold, **card_kw), threshold)
    assert (scale.origin, scale.basis) == (origin, basis)
    assert scale.score(threshold) == 1.0 and scale.level == threshold
    assert scale.score(origin) == 0.0
    assert scale.score(origin + 2 * (threshold - origin)) == pytest.approx(2.0)
    assert scale.scores([origin, threshold]).tolist() == [0.0, 1.0]


def test_a_plain_ratio_would_mislead_where_the_normal_median_does_not() -> None:
    """A pca-like card: normal scores at 80 % of the threshold. score/threshold reads 0.8 on a quiet machine,
    and sensitivity 2 would put every normal window over; anchored at the median it stays quiet."""
    card = make_card(threshold=2.5, score_stats=_stats(2.0))
    quiet = 2.0
    scale = scale_for(card, 2.5, sensitivity=2.0)
    assert quiet / 2.5 * 2.0 > 1  # the ratio's verdict
    assert scale.score(quiet) == 0.0 and scale.level == pytest.approx(2.25)


@given(origin=st.floats(-1e6, 1e6), rel_span=st.floats(1e-4, 1e3), sensitivity=st.floats(0.01, 100),
       a=st.floats(-1e7, 1e7), b=st.floats(-1e7, 1e7))
def test_the_scale_is_monotone_and_alerts_above_its_level(origin: float, rel_span: float, sensitivity: float,
                                                          a: float, b: float) -> None:
    threshold = origin + rel_span * max(1.0, abs(origin))  # a span that float64 resolves at this magnitude
    scale = ScoreScale(origin, threshold, sensitivity, ScaleOrigin.NORMAL_MEDIAN)
    lo, hi = sorted((a, b))
    assert scale.score(lo) <= scale.score(hi)
    assert scale.score(scale.level) == pytest.approx(1.0, rel=1e-6, abs=1e-6)
    assert scale.score(threshold) == pytest.approx(sensitivity, rel=1e-6)
    assert scale.scores([lo, hi]).tolist() == pytest.approx([scale.score(lo), scale.score(hi)], rel=1e-12)


def test_extreme_scores_stay_finite_and_nan_stays_nan() -> None:
    scale = ScoreScale(0.0, 1e-30, 1.0)
    assert math.isfinite(scale.score(3.4e38)) and scale.score(3.4e38) > 1e38
    assert math.isnan(scale.score(float("nan")))


@pytest.mark.parametrize("bad", [0, -1, 1000, float("nan"), float("inf"), "x"])
def test_sensitivity_out_of_range_is_refused_saying_the_range(bad: object) -> None:
    with pytest.raises(BadOverride, match="between 0.01 and 100"):
        check_sensitivity(bad)  # type: ignore[arg-type]


# -- through the command ------------------------------------------------------------------------

THRESHOLD = 0.1
FAULT_SCORE = 0.08  # between the level of sensitivity 2 (0.055) and the threshold


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model and a replay whose fault scores 0.08: under the threshold 0.1, over sensitivity 2's level."""
    d = tmp_path_factory.mktemp("scale")
    write_model(d / "m.onnx", make_card(window=5, threshold=THRESHOLD, k=2, n=3))
    off = math.sqrt(4 * FAULT_SCORE)  # one of four features this far from 0.5: mean squared distance 0.08
    rows = ["timestamp,a,b,c,d"] + [f"{1000 + i},0.5,{0.5 + off if 30 <= i < 45 else 0.5},0.5,0.5"
                                    for i in range(90)]
    (d / "r.csv").write_text("\n".join(rows) + "\n")
    return d


def _run(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", "m.onnx",
                           "--source", "replay:r.csv", "-q", *flags], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_the_default_form_is_quiet_and_sensitivity_2_alerts_at_half_the_distance(replay: Path) -> None:
    default = _run(replay)
    assert default.returncode == 0, default.stderr
    assert default.stdout == "", "0.08 is under the threshold 0.1: no alert without --sensitivity"
    assert "anomaly_score 0 at score 0.01 (the median score on normal data), 1 at the threshold 0.1" in \
        default.stderr
    keen = _run(replay, "--sensitivity", "2")
    assert keen.returncode == 0, keen.stderr
    events = [json.loads(line) for line in keen.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "end"]
    level = NORMAL_MEDIAN + (THRESHOLD - NORMAL_MEDIAN) / 2
    for e in events:
        assert e["threshold"] == pytest.approx(level)  # the score it alerts above
        assert e["score"] == pytest.approx(FAULT_SCORE, rel=1e-5)
        assert e["anomaly_score"] == pytest.approx(2 * (FAULT_SCORE - NORMAL_MEDIAN) / (THRESHOLD - NORMAL_MEDIAN),
                                                   rel=1e-4)
        assert e["anomaly_score"] > 1 and e["score"] > e["threshold"]
        assert e["top_features"][0]["feature"] == "b"


def test_threshold_keeps_its_raw_meaning_beside_sensitivity(replay: Path) -> None:
    lowered = _run(replay, "--threshold", "0.07")
    events = [json.loads(line) for line in lowered.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "end"], lowered.stderr
    assert events[0]["threshold"] == 0.07
    assert events[0]["anomaly_score"] == pytest.approx((FAULT_SCORE - NORMAL_MEDIAN) / (0.07 - NORMAL_MEDIAN),
                                                       rel=1e-4)
    # a threshold of 0.07 at sensitivity 0.5 alerts at 0.01 + 0.06 / 0.5 = 0.13: quiet again
    assert _run(replay, "--threshold", "0.07", "--sensitivity", "0.5").stdout == ""


@pytest.mark.parametrize("value", ["0", "101", "nan"])
def test_a_sensitivity_out_of_range_is_a_usage_error(replay: Path, value: str) -> None:
    proc = _run(replay, "--sensitivity", value)
    assert proc.returncode == 2 and "--sensitivity" in proc.stderr
