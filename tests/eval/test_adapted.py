"""``novelty-levels-adapted``: the default with the levels' range and the shape length in the stream's time,
and counts stabilised."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.data.nab import NabFile
from edgewatch.eval.detectors import adapted
from edgewatch.eval.detectors.novelty_levels import NoveltyLevelsConfig, write_model
from edgewatch.eval.detectors.registry import resolve
from edgewatch.eval.runner import ModelDetector, check_online

DATASETS = Path(os.environ.get("EDGEWATCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
NAB = DATASETS / "nab"


def _series(n: int = 2400, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 1, n)
    x[1500:1530] += 30
    return x


def _times(n: int, step: float) -> np.ndarray:
    return 1.7e9 + np.arange(n) * step


def test_interval_is_the_median_of_the_first_intervals() -> None:
    assert adapted.interval_seconds(_times(100, 300)) == 300
    t = _times(100, 3600)
    t[5:] += 7 * 86400  # one gap among the first 16 intervals does not move the median
    assert adapted.interval_seconds(t) == 3600
    assert adapted.interval_seconds(np.r_[_times(30, 600)[:20], _times(80, 60) + 1e6]) == 600  # later rows unread
    assert adapted.interval_seconds(np.full(40, 1.7e9)) is None  # no positive interval: rows
    assert adapted.interval_seconds(None) is None
    assert adapted.interval_seconds(np.array([1.7e9])) is None


def test_range_rows_cover_the_reference_time_within_the_spans() -> None:
    assert adapted.range_rows(300.0) == 256
    assert adapted.range_rows(600.0) == 128
    assert adapted.range_rows(3600.0) == 48  # 21 rows would be fewer than the shortest span
    assert adapted.range_rows(75.0) == 1024
    assert adapted.range_rows(1.0) == 1536  # no more than the longest span
    assert adapted.range_rows(None) == 256
    assert adapted.range_rows(600.0, rows=384) == 192


def test_shape_length_in_time_only_when_coarser() -> None:
    assert adapted.shape_rows(300.0, 192) == 192
    assert adapted.shape_rows(75.0, 192) == 192  # finer: span / 8 rows, the most a span allows
    assert adapted.shape_rows(None, 192) == 192
    assert adapted.shape_rows(600.0, 192) == 96
    assert adapted.shape_rows(3600.0, 192) == 16  # 16 hours
    assert adapted.shape_rows(86400.0 * 30, 192) == 1
    det = adapted.AdaptedDetector()
    assert det.settings(_times(40, 1800)) == (48, 32)
    assert det.settings(None) == (256, 192)
    assert adapted.AdaptedDetector(in_time=False).settings(_times(40, 3600)) == (256, 192)


def test_counts_are_non_negative_integers_from_the_start() -> None:
    rng = np.random.default_rng(0)
    c = rng.poisson(10, 200).astype(np.float64)
    assert adapted.looks_like_counts(c)
    assert not adapted.looks_like_counts(c[:47])  # too few rows to tell
    assert not adapted.looks_like_counts(c + 0.5)
    assert not adapted.looks_like_counts(c - 20)
    bad = c.copy()
    bad[3] = np.nan
    assert not adapted.looks_like_counts(bad)
    late = c.copy()
    late[100] = 0.25  # only the first 48 rows decide
    assert adapted.looks_like_counts(late)
    y = adapted.anscombe(np.array([0.0, 1.0, 10.0, 100.0]))
    np.testing.assert_allclose(y, 2 * np.sqrt(np.array([0.0, 1.0, 10.0, 100.0]) + 0.375))
    assert adapted.anscombe(np.array([-4.375]))[0] == pytest.approx(-4.0)


def test_adapted_is_the_default_file_at_five_minutes_and_a_shorter_range_when_coarser(tmp_path: Path) -> None:
    x = _series()
    det = adapted.AdaptedDetector()
    default = ModelDetector(write_model(tmp_path / "d.onnx"))
    five = det.score_series(x, "s", _times(len(x), 300))
    np.testing.assert_array_equal(five, default.score_series(x))
    np.testing.assert_array_equal(det.score_series(x, "s"), five)  # no times: rows, as the agent today
    hourly = det.score_series(x, "s", _times(len(x), 3600))
    config = NoveltyLevelsConfig()
    hourly_config = replace(config, levels={**config.levels, "range_rows": 48}, novelty={**config.novelty, "m": 16})
    short = ModelDetector(write_model(tmp_path / "h.onnx", hourly_config))
    np.testing.assert_array_equal(hourly, short.score_series(x))
    assert not np.array_equal(hourly, five)
    assert check_online(det, x, "s", cut=700, times=_times(len(x), 3600))
    assert check_online(det, x, "s", cut=30, times=_times(len(x), 3600))  # a cut before the decision rows


def test_counts_go_through_anscombe_and_other_streams_do_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    lam = 10 + 5 * np.sin(np.arange(2400) * 2 * np.pi / 96)
    c = rng.poisson(lam).astype(np.float64)
    c[1800:1806] += 60
    det = adapted.AdaptedDetector()
    default = ModelDetector(write_model(tmp_path / "d.onnx"))
    t = _times(len(c), 300)
    got = det.score_series(c, "c", t)
    np.testing.assert_array_equal(got, default.score_series(adapted.anscombe(c)))
    assert got[1800:1830].max() >= 0.5  # the burst is still caught after the transform
    assert check_online(det, c, "c", cut=30, times=t)  # decided on 48 rows, before any part speaks
    plain = adapted.AdaptedDetector(counts=False).score_series(c, "c", t)
    np.testing.assert_array_equal(plain, default.score_series(c))


def test_runner_gives_each_file_its_times() -> None:
    from edgewatch.data.nab import STANDARD_PROFILES
    from edgewatch.eval.runner import run_files

    x = _series(1200)
    ts = np.datetime64("2024-01-01T00:00:00") + np.arange(len(x)) * np.timedelta64(3600, "s")
    f = NabFile("cat/h.csv", ts, x, [(1000, 1100)])
    np.testing.assert_array_equal(f.seconds()[:2], [1704067200.0, 1704070800.0])
    seen = {}

    class Spy:
        name = "spy"

        def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
            seen[key] = times
            return np.zeros(len(values))

    run_files([f], STANDARD_PROFILES, Spy(), progress=False)
    assert adapted.interval_seconds(seen["cat/h.csv"]) == 3600


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (NAB / "data").is_dir(), reason=f"NAB dataset not found at {NAB}")
def test_cli_scores_the_adapted_detector_on_the_nab_folder() -> None:
    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(NAB), "--detector", "novelty-levels-adapted"])
    assert res.exit_code == 0, res.output
    total = next(line for line in res.output.splitlines() if line.startswith("total"))
    assert total.split()[-3:] == ["78.68", "72.10", "83.22"]
    assert resolve("novelty-levels-adapted").name == "novelty-levels-adapted"
