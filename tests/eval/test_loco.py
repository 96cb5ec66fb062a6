"""Leave-one-category-out: the mechanics on a corpus small enough to work out by hand, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.data.nab import STANDARD_PROFILES, NabFile
from edgewatch.eval import loco


def _file(category: str) -> NabFile:
    n = 1000  # probation 150; one window at rows 400..499
    return NabFile(f"{category}/f.csv", np.arange(n).astype("datetime64[s]"), np.zeros(n), [(400, 499)])


def _fires_at_start(n: int = 1000) -> np.ndarray:
    s = np.zeros(n)
    s[400] = 1.0  # the window's first row: a full true positive, +1
    return s


def test_loco_chooses_on_the_other_categories_and_shows_the_gap() -> None:
    files = [_file(c) for c in ("a", "b", "c")]
    quiet = np.zeros(1000)
    # y catches only c's window, x catches a's and b's: x is the in-sample choice (+1 vs -1 raw),
    # but each fold that holds out a or b sees a tie (0 vs 0) and keeps the first candidate, y.
    scores = {"y": [quiet, quiet, _fires_at_start()], "x": [_fires_at_start(), _fires_at_start(), quiet]}
    std = STANDARD_PROFILES[0]
    res = loco.choose(files, scores, [std])
    (lp,) = res.profiles
    assert lp.in_sample_choice == "x" and lp.in_sample == pytest.approx(100 * (1 + 3) / 6)
    assert [(f.held_out, f.chosen) for f in lp.folds] == [("a", "y"), ("b", "y"), ("c", "x")]
    assert [f.raw for f in lp.folds] == pytest.approx([-1.0, -1.0, -1.0])
    assert [f.score for f in lp.folds] == pytest.approx([0.0, 0.0, 0.0])  # each missed its one window
    assert lp.loco == pytest.approx(0.0) and lp.fold_mean == pytest.approx(0.0)
    assert res.candidates["y"]["standard"] == pytest.approx(100 * (-1 + 3) / 6)
    text = loco.format_loco(res, default="x")
    assert "<- default" in text and "LOCO (pooled held-out parts)" in text and "LOCO worst held-out category" in text


def test_default_is_a_point_of_the_grid_and_bad_inputs_are_refused() -> None:
    assert loco.default_point() in loco.default_grid()
    from edgewatch.numpy_models.univariate import NoveltyLevelsConfig

    shipped, point = NoveltyLevelsConfig(), loco.config(loco.default_point())  # the grid scores the shipped file
    assert (point.novelty, point.levels) == (shipped.novelty, shipped.levels)
    assert len({p.name for p in loco.default_grid()}) == 8
    assert loco.GridPoint(384, 0, 256) in loco.default_grid()  # the fourth-round default is a candidate
    with pytest.raises(ValueError):
        loco.choose([_file("a")], {}, STANDARD_PROFILES)
    with pytest.raises(ValueError):
        loco.choose([_file("a")], {"x": []}, STANDARD_PROFILES)


def test_cli_loco_is_for_the_default_detector_only(tmp_path) -> None:  # noqa: ANN001
    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(tmp_path), "--loco", "--detector", "null"])
    assert res.exit_code == 4 and "--loco cross-validates" in res.output


def test_lofo_holds_out_one_file_and_reports_the_worst() -> None:
    files = [NabFile(f"a/{k}.csv", np.arange(1000).astype("datetime64[s]"), np.zeros(1000), [(400, 499)])
             for k in ("f1", "f2", "f3")]
    files.append(NabFile("b/quiet.csv", np.arange(1000).astype("datetime64[s]"), np.zeros(1000), []))
    late = np.zeros(1000)
    late[499] = 1.0  # the window's last row: a true positive worth almost nothing
    alarm = np.zeros(1000)
    alarm[800] = 1.0  # a false positive after the window
    scores = {"x": [_fires_at_start(), _fires_at_start(), late, alarm]}
    (lp,) = loco.choose(files, scores, [STANDARD_PROFILES[0]], loco.Grouping.FILE).profiles
    assert [f.held_out for f in lp.folds] == ["a/f1.csv", "a/f2.csv", "a/f3.csv", "b/quiet.csv"]
    assert lp.worst.held_out == "a/f3.csv" and lp.worst.score == pytest.approx(51.27, abs=0.01)
    assert lp.folds[0].score == pytest.approx(100.0)
    assert lp.folds[3].windows == 0 and np.isnan(lp.folds[3].score) and lp.folds[3].raw < 0
    text = loco.format_loco(loco.choose(files, scores, [STANDARD_PROFILES[0]], loco.Grouping.FILE),
                            grouping=loco.Grouping.FILE)
    assert "LOFO worst held-out file" in text and "worst held-out file: a/f3.csv" in text


def test_cli_lofo_is_for_the_default_detector_only(tmp_path) -> None:  # noqa: ANN001
    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(tmp_path), "--lofo", "--detector", "null"])
    assert res.exit_code == 4 and "--lofo cross-validates" in res.output
