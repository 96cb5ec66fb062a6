"""False episodes a stream-day on normal rows, first day apart (edgewatch.eval.false_episodes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.data.nab import STANDARD_PROFILES, NabFile
from edgewatch.errors import BadInput
from edgewatch.eval.false_episodes import episode_starts, false_episodes, normal_rows
from edgewatch.eval.robustness import format_robustness, robustness
from edgewatch.eval.runner import QuietStart, format_table, run_files
from tests.eval.test_runner import small_nab  # noqa: F401  (fixture)

STEP = 300  # 5-minute rows: 288 a day
WINDOW = (400, 409)


def _file(key: str = "realX/two_days.csv", n: int = 576) -> NabFile:
    ts = np.datetime64("2026-01-01T00:00:00") + np.arange(n) * np.timedelta64(STEP, "s")
    return NabFile(key, ts, np.zeros(n), [WINDOW])


def _known_scores(n: int = 576) -> np.ndarray:
    s = np.zeros(n)
    s[0] = 0.7  # the first row over: an episode
    s[50:53] = 0.5  # at the threshold: one episode of three rows
    s[100] = s[200] = 0.9
    s[395] = 1.0  # in the window-length before the window: an early warning, not false
    s[405] = 1.0  # in the window
    s[415] = 1.0  # in the window-length after it
    s[300] = s[500] = 0.6  # after the first day
    s[540:560] = 0.8  # one long episode
    return s


class KnownDetector:
    """Scores that do not depend on the values: their crossings are known exactly."""

    name = "known"

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        return np.r_[_known_scores(), np.zeros(len(values))][:len(values)]


def test_normal_rows_keep_one_window_length_away_on_both_sides() -> None:
    normal = normal_rows(576, [WINDOW])
    assert not normal[390:420].any()
    assert normal[389] and normal[420] and normal.sum() == 576 - 30


def test_an_episode_starts_where_a_score_reaches_the_threshold_from_under_it() -> None:
    s = np.array([0.5, 0.6, 0.1, 0.49, 0.5, 0.5, 0.0, 1.0])
    assert np.flatnonzero(episode_starts(s, 0.5)).tolist() == [0, 4, 7]


def test_known_crossings_give_the_exact_counts_and_rates() -> None:
    fe = false_episodes([_file()], [_known_scores()], 0.5)
    (s,) = fe.streams
    assert (s.first_day, s.after) == (4, 3)
    assert s.first_day_days == pytest.approx(1.0)
    assert s.after_days == pytest.approx((288 - 30) * STEP / 86_400)
    assert fe.first_day == pytest.approx(4.0)
    assert fe.after == pytest.approx(3 / ((288 - 30) * STEP / 86_400))
    assert (fe.worst_key, fe.worst_first_day) == ("realX/two_days.csv", 4)
    assert false_episodes([_file()], [_known_scores()], 0.75).streams[0].first_day == 2  # rows 100, 200


def test_rates_pool_streams_by_their_exposure_and_name_the_worst() -> None:
    quiet = _file("realX/quiet.csv")
    fe = false_episodes([_file(), quiet], [_known_scores(), np.zeros(576)], 0.5)
    assert fe.first_day == pytest.approx(4 / 2.0)
    assert fe.worst_key == "realX/two_days.csv"
    never = false_episodes([quiet], [np.ones(576)], float("inf"))
    assert never.first_day == 0.0 and never.worst_key == ""
    assert "no file had one on its first day" in never.line()


def test_the_corpus_result_carries_the_figure_at_the_standard_threshold() -> None:
    result, _ = run_files([_file()], STANDARD_PROFILES, KnownDetector(), progress=False)
    fe = result.false_episodes
    assert fe is not None and fe.threshold == result.profiles[0].threshold
    expected = false_episodes([_file()], [_known_scores()], result.profiles[0].threshold)
    assert (fe.first_day, fe.after) == (expected.first_day, expected.after)
    table = format_table(result)
    assert f"first day {fe.first_day:.2f}, after {fe.after:.2f}" in table
    assert json.loads(result.to_json())["false_episodes"]["streams"][0]["first_day"] == expected.streams[0].first_day


def test_a_quiet_start_silences_each_streams_first_day_and_nothing_after() -> None:
    f = _file()
    quiet = QuietStart(KnownDetector(), 86_400)
    got = quiet.score_series(f.values, f.key, f.seconds())
    want = _known_scores()
    assert not got[:288].any() and np.array_equal(got[288:], want[288:])
    s, = false_episodes([f], [got], 0.5).streams
    assert (s.first_day, s.after) == (0, 3)
    assert quiet.name == "known, quiet start 86400 s"
    # each quarter of the quarters copy is a new stream: its own first day is silenced
    rows = robustness([f], STANDARD_PROFILES, quiet, ["quarters"], progress=False)
    fe = rows[0].false_episodes
    assert fe is not None and len(fe.streams) == 4 and fe.first_day == 0.0
    assert format_robustness(rows, quiet.name).splitlines()[-1].endswith("no copy had one on a first day")
    with pytest.raises(BadInput, match="times"):
        quiet.score_series(f.values, f.key, None)


def test_the_robustness_table_gives_a_line_per_copy() -> None:
    rows = robustness([_file()], STANDARD_PROFILES, KnownDetector(), ["none", "quarters"], progress=False)
    text = format_robustness(rows, "known")
    assert "false episodes a stream-day on normal rows" in text
    lines = text.splitlines()
    quarters = next(ln for ln in lines if ln.startswith("false episodes") and "quarters copy" in ln)
    fe = rows[1].false_episodes
    assert fe is not None and len(fe.streams) == 4  # each quarter is a new stream with its own first day
    assert f"first day {fe.first_day:.2f}, after {fe.after:.2f}" in quarters
    # the worst copy is named only when some copy had a false episode on a first day
    want = f"worst first day {fe.first_day:.2f} (quarters)" if fe.first_day else "no copy had one on a first day"
    assert lines[-1].endswith(want)


@pytest.mark.needs_datasets
def test_the_default_command_prints_the_figure(small_nab: Path) -> None:  # noqa: F811
    from edgewatch.commands.eval import eval_group

    res = CliRunner().invoke(eval_group, ["nab", "--data", str(small_nab)])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("false episodes a stream-day on normal rows"))
    assert "standard threshold" in line and "first day" in line and "after" in line
    assert "point-adjusted F1" in res.output  # the lines before it are kept

    res = CliRunner().invoke(eval_group, ["nab", "--data", str(small_nab), "--perturb", "hourly"])
    assert res.exit_code == 0, res.output
    assert any(ln.startswith("false episodes") and "hourly copy (its standard threshold" in ln
               for ln in res.output.splitlines())

    res = CliRunner().invoke(eval_group, ["nab", "--data", str(small_nab), "--quiet-start", "86400"])
    assert res.exit_code == 0, res.output
    assert "quiet start 86400 s" in res.output and "first day 0.00" in res.output
    res = CliRunner().invoke(eval_group, ["nab", "--data", str(small_nab), "--quiet-start", "86400", "--loco"])
    assert res.exit_code == 2 and "--loco/--lofo" in res.output
