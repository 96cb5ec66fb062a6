"""SKAB: the metric by hand, the predictions format, train pca with torch blocked, a 2-file mini eval."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.eval.skab_score import Binary, changepoints_of, nab_file, nab_scores
from tests.test_agent_without_torch import BLOCKER

SENSORS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
           "Voltage", "Volume Flow RateRMS"]


def write_skab_file(path: Path, seed: int, rows: int = 700, fault: tuple[int, int] = (500, 600)) -> Path:
    """A SKAB-format experiment: 8 correlated sensors, one fault period shifting three of them."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(rows, 1))
    x = 10 + common + 0.3 * rng.normal(size=(rows, 8))
    a, b = fault
    x[a:b, :3] += 3.0
    label = np.zeros(rows)
    label[a:b] = 1
    cp = np.zeros(rows)
    cp[[a, b]] = 1
    lines = ["datetime;" + ";".join(SENSORS) + ";anomaly;changepoint"]
    for i in range(rows):
        stamp = f"2020-03-09 10:{14 + (33 + i) // 60 % 46:02d}:{(33 + i) % 60:02d}"
        lines.append(stamp + ";" + ";".join(f"{v:.5f}" for v in x[i]) + f";{label[i]:.1f};{cp[i]:.1f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_binary_metric_by_hand() -> None:
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    true = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    b = Binary.of(pred, true)
    assert (b.tp, b.fp, b.fn, b.tn) == (2, 2, 2, 2)
    assert b.f1 == pytest.approx(2 / (2 + 2))  # TP / (TP + (FN + FP) / 2)
    assert b.far == pytest.approx(50.0) and b.mar == pytest.approx(50.0)
    total = b + Binary.of(np.array([1, 1]), np.array([1, 1]))
    assert total.f1 == pytest.approx(4 / (4 + 2)) and total.mar == pytest.approx(100 * 2 / 6)


def test_changepoint_nab_by_hand() -> None:
    times = np.arange(300, dtype=float)  # one row a second
    true_cp = np.zeros(300, dtype=int)
    true_cp[[100, 200]] = 1
    std = (1.0, -0.11, -1.0)
    # a hit at the window's start earns A_tp, a miss costs A_fn, each changepoint outside a window A_fp
    assert nab_file(times, true_cp, np.array([100.0, 180.0]), std) == pytest.approx((1.0 - 1.0 - 0.11, -2.0, 2.0))
    late = nab_file(times, true_cp, np.array([160.0]), std)[0]  # at the window's end: A_fp, then a miss
    assert late == pytest.approx(-0.11 - 1.0)
    mid = nab_file(times, true_cp, np.array([130.0]), std)[0] + 1.0  # halfway: between A_fp and A_tp
    assert -0.11 < mid < 1.0 and mid == pytest.approx((1.0 - 0.11) / 2, abs=0.01)
    pred = np.zeros(300, dtype=int)
    pred[100:200] = 1  # an episode exactly over the fault: its start and end are the changepoints
    assert list(changepoints_of(pred)) == [100, 200]
    assert nab_scores([(times, true_cp, pred)])["standard"] == pytest.approx(100.0)
    assert nab_scores([(times, true_cp, np.zeros(300, dtype=int))])["standard"] == pytest.approx(0.0)


def test_train_pca_with_torch_blocked(tmp_path: Path) -> None:
    data = write_skab_file(tmp_path / "0.csv", seed=1)
    out = tmp_path / "pca.onnx"
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "train", "pca", "--data", str(data), "--rows", "400",
                           "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr
    from edgewatch.agent.model import ScoringModel

    model = ScoringModel(out)
    assert model.card.family == "pca" and model.card.features == SENSORS
    assert model.card.trained_on["rows"] == 400
    x = np.loadtxt(data, delimiter=";", skiprows=1, usecols=range(1, 9), dtype=np.float32)
    normal = model.score_many(np.stack([x[i - 10:i] for i in range(10, 400, 10)])).scores
    fault = model.score_many(np.stack([x[i - 10:i] for i in range(520, 600, 10)])).scores
    assert (normal <= model.card.threshold).mean() > 0.95 and (fault > model.card.threshold).all()


def test_onnx_writer_output_is_valid_onnx(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    data = write_skab_file(tmp_path / "0.csv", seed=2)
    from edgewatch.train.csv_series import read_series_csv
    from edgewatch.train.pca import PcaConfig, train_pca

    series = read_series_csv(data, 400)
    train_pca(series.values, series.features, tmp_path / "m.onnx", PcaConfig(window=5, ignore=["Temperature"]))
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert {p.key for p in model.metadata_props} >= {"edgewatch.family", "edgewatch.threshold"}


def test_mini_eval_and_predictions_files(tmp_path: Path) -> None:
    root = tmp_path / "skab"
    files = [write_skab_file(root / "data" / "valve1" / "0.csv", seed=3),
             write_skab_file(root / "data" / "other" / "1.csv", seed=4, rows=650, fault=(450, 520))]
    write_skab_file(root / "data" / "anomaly-free" / "anomaly-free.csv", seed=5)  # not scored
    res = CliRunner().invoke(main, ["eval", "skab", "--data", str(root), "--family", "pca", "--quiet",
                                    "--predictions-out", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    from edgewatch.eval.skab_runner import read_predictions

    preds, truths = [], []
    for src, key in zip(files, ["valve1/0.csv", "other/1.csv"]):
        stamps, pred = read_predictions(tmp_path / "pred" / key)
        lines = src.read_text().splitlines()[1:]
        assert stamps == [ln.split(";")[0] for ln in lines[400:]]  # one row per test row, datetimes as given
        preds.append(pred)
        truths.append(np.array([float(ln.split(";")[-2]) for ln in lines[400:]]))
    b = Binary.of(np.concatenate(preds), np.concatenate(truths))
    total = next(ln for ln in res.output.splitlines() if ln.startswith("pca ") and " total " in ln)
    assert total.split()[2:5] == [f"{b.f1:.3f}", f"{b.far:.2f}", f"{b.mar:.2f}"]
    assert b.f1 > 0.8  # a 3-sigma shift of three sensors is easy; the file above scores it
    assert "flag every row" in res.output and "Conv-AE" in res.output
