"""The NAB runner, the novelty model file and the ``edgewatch eval`` commands on a few NAB files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.data.nab import load_corpus
from edgewatch.eval.detectors.baselines import RandomDetector, WindowedGaussianDetector
from edgewatch.eval.detectors.novelty import NoveltyConfig, novelty_scores, write_model
from edgewatch.eval.runner import ModelDetector, check_online, run_nab

DATASETS = Path(os.environ.get("EDGEWATCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
NAB = DATASETS / "nab"
FEW = ["realTraffic/speed_7578.csv", "realTraffic/TravelTime_451.csv", "artificialNoAnomaly/art_noisy.csv"]
SMALL = NoveltyConfig(window=128, scales=[(128, 16), (64, 8)])


@pytest.fixture(scope="module")
def small_nab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NAB folder holding three of the real files, with their labels and profiles."""
    if not (NAB / "data").is_dir():
        pytest.skip(f"NAB dataset not found at {NAB}")
    root = tmp_path_factory.mktemp("nab")
    for key in FEW:
        (root / "data" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / key, root / "data" / key)
    (root / "labels").mkdir()
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    (root / "labels" / "combined_windows.json").write_text(json.dumps({k: windows[k] for k in FEW}))
    shutil.copytree(NAB / "config", root / "config")
    return root


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "novelty.onnx", SMALL)


def test_model_file_matches_numpy_reference_and_carries_its_card(small_model: Path) -> None:
    from edgewatch.agent.model import ScoringModel

    m = ScoringModel(small_model)
    assert m.card.family == "novelty" and m.card.postprocess.kind == "likelihood"
    assert m.card.sample_shape == [128, 1]
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(16, 128)), axis=1).astype(np.float32)
    batch = m.score_many(x[:, :, None])
    np.testing.assert_allclose(batch.scores, novelty_scores(x, SMALL), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batch.feature_error[:, 0], batch.scores)
    repeat = x.copy()
    repeat[:, -16:] = repeat[:, 10:26]  # the last shape was seen before: distance 0 at that scale
    assert m.score_many(repeat[:, :, None]).scores.min() < batch.scores.min() + 1e-6


def test_detectors_are_online(small_model: Path) -> None:
    x = np.sin(np.arange(900) / 7.0) + np.random.default_rng(1).normal(0, 0.1, 900)
    x[600:610] += 4
    for det in (ModelDetector(small_model), WindowedGaussianDetector(window=200, step=20), RandomDetector(3)):
        assert check_online(det, x, "k", cut=650), det.name
    scores = ModelDetector(small_model).score_series(x)
    assert np.all(scores[:127] == 0.0)  # no full window yet
    assert int(np.argmax(scores)) in range(600, 612)


@pytest.mark.needs_datasets
def test_runner_scores_a_few_nab_files(small_nab: Path, small_model: Path) -> None:
    result, scores = run_nab(small_nab, ModelDetector(small_model), progress=False)
    assert result.files == 3 and result.windows == 5
    assert set(scores) == set(FEW)
    std = result.profiles[0]
    assert std.profile == "standard" and -100 < std.score <= 100
    assert set(std.per_category) == {"realTraffic", "artificialNoAnomaly"}
    wg, _ = run_nab(small_nab, WindowedGaussianDetector(), progress=False)
    assert wg.points is not None and 0 <= wg.points.auc_pr <= 1
    assert wg.points.pa_f1 >= wg.points.f1


@pytest.mark.needs_datasets
def test_cli_nab_then_scores_reproduce_each_other(small_nab: Path, small_model: Path, tmp_path: Path) -> None:
    from edgewatch.commands.eval import eval_group

    runner = CliRunner()
    out, saved = tmp_path / "r.json", tmp_path / "s.npz"
    res = runner.invoke(eval_group, ["nab", "--data", str(small_nab), "--detector", f"model:{small_model}",
                                     "--out", str(out), "--scores-out", str(saved)])
    assert res.exit_code == 0, res.output
    assert "realTraffic" in res.output and "total" in res.output and "point-adjusted F1" in res.output
    first = json.loads(out.read_text())
    assert [p["profile"] for p in first["profiles"]] == ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    res2 = runner.invoke(eval_group, ["scores", "--data", str(small_nab), str(saved), "--out", str(out)])
    assert res2.exit_code == 0, res2.output
    again = json.loads(out.read_text())
    assert [p["score"] for p in again["profiles"]] == pytest.approx([p["score"] for p in first["profiles"]])


def test_cli_refuses_unknown_detector_with_the_choices(tmp_path: Path) -> None:
    from edgewatch.cli import main

    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(tmp_path), "--detector", "htm"])
    assert res.exit_code == 4
    assert "windowed-gaussian" in res.output and "model:PATH" in res.output


def test_make_detector_writes_a_loadable_file(tmp_path: Path) -> None:
    from edgewatch.agent.model import ScoringModel
    from edgewatch.commands.eval import eval_group

    res = CliRunner().invoke(eval_group, ["make-detector", "-o", str(tmp_path / "d.onnx")])
    assert res.exit_code == 0, res.output
    card = ScoringModel(tmp_path / "d.onnx").card
    assert card.family == "novelty-levels" and card.window == 1


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (NAB / "data").is_dir(), reason=f"NAB dataset not found at {NAB}")
def test_loaded_corpus_has_the_documented_shape() -> None:
    files = load_corpus(NAB)
    assert len(files) == 25
    assert sum(len(f.values) for f in files) == 129_577
    by_cat: dict[str, int] = {}
    for f in files:
        by_cat[f.category] = by_cat.get(f.category, 0) + len(f.windows)
    assert by_cat == {"artificialNoAnomaly": 0, "artificialWithAnomaly": 6, "realKnownCause": 19, "realTraffic": 14}


def test_stride_scores_every_nth_row_and_holds_it(small_model: Path) -> None:
    x = np.sin(np.arange(600) / 5.0) + np.random.default_rng(2).normal(0, 0.1, 600)
    every = ModelDetector(small_model, stride=1)
    third = ModelDetector(small_model, stride=3)
    s3 = third.score_series(x)
    assert np.all(s3[:127] == 0.0)
    scored = np.arange(127, 597, 3)
    assert np.all(s3[scored + 1] == s3[scored]) and np.all(s3[scored + 2] == s3[scored])
    assert not np.allclose(s3, every.score_series(x))  # the post-process saw a third of the scores


def test_default_detector_alerts_on_a_shift_soon_after_its_warm_up(tmp_path: Path) -> None:
    """NAB windows can start ~170 rows after probation: the default file must be able to speak by row 500."""
    config = NoveltyConfig()
    warm_up = config.window - 1 + int(config.likelihood["learning"])
    assert warm_up < 500
    rng = np.random.default_rng(3)
    n, shift = 800, 520
    x = np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 0.1, n)
    x[shift:] += 3.0
    det = ModelDetector(write_model(tmp_path / "best.onnx"))
    s = det.score_series(x)
    alerts = np.flatnonzero(s >= det.model.card.threshold)
    assert not np.any(s[:warm_up]), "nothing is said before the window is full and the likelihood has learnt"
    assert alerts.size and shift <= alerts[0] <= shift + 10, f"first alert at {alerts[:5]}, shift at {shift}"
