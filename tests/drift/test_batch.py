"""Batch drift reports: KS with Bonferroni, the classifier test, reductions, report files, the command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.drift.batch import DriftOptions, compare
from edgewatch.drift.classifier import ClassifierConfig, classifier_test, delong_ci
from edgewatch.drift.encoders import OnnxEncoder, Reduction, ReductionConfig, reduce_pair
from edgewatch.drift.evaluation import TABLE_SHIFT_COLUMN, breast_cancer
from edgewatch.drift.inputs import Batch, InputKind, read_table
from edgewatch.drift.ks import ks_test
from edgewatch.errors import BadInput


def datasets_dir() -> Path:
    env = os.environ.get("EDGEWATCH_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.fixture(scope="module")
def table() -> tuple[np.ndarray, list[str]]:
    return breast_cancer()


def halves(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(len(x))
    return x[idx[: len(x) // 2]], x[idx[len(x) // 2:]]


def test_ks_false_positive_rate_on_random_splits(table: tuple[np.ndarray, list[str]]) -> None:
    x, names = table
    fired = [ks_test(*halves(x, seed), names).drift for seed in range(50)]
    assert np.mean(fired) <= 0.10


def test_ks_finds_a_one_std_shift_and_names_the_column(table: tuple[np.ndarray, list[str]]) -> None:
    x, names = table
    j = names.index(TABLE_SHIFT_COLUMN)
    for seed in range(10):
        ref, cur = halves(x, seed)
        cur = cur.copy()
        cur[:, j] += x[:, j].std()
        res = ks_test(ref, cur, names)
        assert res.drift and res.drifted_features[0] == TABLE_SHIFT_COLUMN
        assert res.alpha_corrected == pytest.approx(0.05 / 30)


def test_delong_auc_equals_the_mann_whitney_auc() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400) + 0.7 * y, 1)  # with ties
    auc, lo, hi = delong_ci(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s))
    assert lo < auc < hi and 0.05 < hi - lo < 0.2


def test_classifier_auc_near_half_on_a_split_and_high_on_a_shift(table: tuple[np.ndarray, list[str]]) -> None:
    x, names = table
    ref, cur = halves(x, 1)
    same = classifier_test(ref, cur, names, ClassifierConfig(seed=1))
    assert abs(same.auc - 0.5) < 0.08 and not same.drift
    j = names.index(TABLE_SHIFT_COLUMN)
    shifted = cur.copy()
    shifted[:, j] += x[:, j].std()
    moved = classifier_test(ref, shifted, names, ClassifierConfig(seed=1))
    assert moved.auc > 0.9 and moved.ci_low > 0.8 and moved.drift
    assert moved.top_features(1) == [TABLE_SHIFT_COLUMN]


def test_classifier_sees_a_change_of_spread_that_leaves_the_mean() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(400, 5))
    cur = rng.normal(size=(400, 5))
    cur[:, 3] *= 1.6
    res = classifier_test(ref, cur, config=ClassifierConfig(seed=0))
    assert res.drift and res.top_features(1) == ["f3"]


def synthetic_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blurry blobs on black, 0-255: enough structure for PCA, no dataset needed."""
    yy, xx = np.mgrid[:28, :28]
    cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
    r = rng.uniform(3, 6, (n, 1, 1))
    return (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))).astype(np.float32)


@pytest.mark.parametrize("kind", [Reduction.PCA, Reduction.RANDOM_PROJECTION])
def test_reduced_images_no_drift_when_clean_drift_when_brighter(kind: Reduction) -> None:
    """Five seeded draws: at most one false alarm between clean sets (5 % expected), brightness always found."""
    cfg = ReductionConfig(kind, dims=16, seed=0)
    false_alarms = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ref, cur = synthetic_images(rng, 300), synthetic_images(rng, 300)
        red = reduce_pair(ref, cur, cfg)
        assert red.reference.shape == (300, 16) and len(red.features) == 16
        false_alarms += ks_test(red.reference, red.current, red.features).drift
        bright = reduce_pair(ref, np.clip(cur + 30, 0, 255), cfg)
        assert ks_test(bright.reference, bright.current, bright.features).drift
    assert false_alarms <= 1


def linear_encoder(path: Path, d: int = 8) -> Path:
    """An ONNX encoder [B,1,28,28] -> [B,d]: flatten and a fixed random matrix."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(784, d)).astype(np.float32) / 28
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["z"])],
        "enc", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 1, 28, 28])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", d])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_encoder_reduces_images_and_refuses_wrong_sizes(tmp_path: Path) -> None:
    enc = OnnxEncoder(linear_encoder(tmp_path / "enc.onnx"))
    rng = np.random.default_rng(4)
    ref, cur = synthetic_images(rng, 300), synthetic_images(rng, 300)
    red = enc.reduce_pair(ref, np.clip(cur + 40, 0, 255))
    assert red.reference.shape == (300, 8) and "enc.onnx" in red.description
    assert ks_test(red.reference, red.current).drift
    with pytest.raises(BadInput):
        enc.encode(np.zeros((2, 20, 20), dtype=np.float32))


def test_compare_writes_json_and_png(tmp_path: Path, table: tuple[np.ndarray, list[str]]) -> None:
    x, names = table
    ref, cur = halves(x, 5)
    cur = cur.copy()
    cur[:, 0] += 1.0 * x[:, 0].std()
    report = compare(Batch(InputKind.TABLE, ref, names, "ref"), Batch(InputKind.TABLE, cur, names, "cur"),
                     DriftOptions(classifier=ClassifierConfig(seed=0)), tmp_path)
    assert report.drift and report.ks.drifted_features[0] == names[0]
    saved = json.loads((tmp_path / "drift.json").read_text())
    assert saved["drift"] is True and saved["classifier"]["auc"] > 0.9
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.to_text()
    assert "DRIFT" in text and names[0] in text and "AUC" in text


def test_read_table_keeps_numeric_columns(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("time,a,label,b\n2024-01-01,1.5,x,2\n2024-01-02,2.5,y,3\n")
    batch = read_table(p)
    assert batch.features == ["a", "b"] and batch.values.tolist() == [[1.5, 2.0], [2.5, 3.0]]
    (tmp_path / "u.csv").write_text("name\nx\n")
    with pytest.raises(BadInput, match="no numeric column"):
        read_table(tmp_path / "u.csv")


def write_csv(path: Path, x: np.ndarray, names: list[str]) -> Path:
    np.savetxt(path, x, delimiter=",", header=",".join(n.replace(" ", "_") for n in names), comments="")
    return path


def test_command_on_tables(tmp_path: Path, table: tuple[np.ndarray, list[str]]) -> None:
    x, names = table
    ref, cur = halves(x, 7)
    a = write_csv(tmp_path / "ref.csv", ref, names)
    same = write_csv(tmp_path / "same.csv", cur, names)
    cur = cur.copy()
    cur[:, names.index("mean smoothness")] += 1.0
    moved = write_csv(tmp_path / "moved.csv", cur, names)
    runner = CliRunner()
    out = runner.invoke(main, ["drift", "--reference", str(a), "--current", str(same), "--json",
                               "--classifier", "none"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["drift"] is False
    out = runner.invoke(main, ["drift", "--reference", str(a), "--current", str(moved), "--json",
                               "--report-dir", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert rep["drift"] is True and rep["ks"]["drifted_features"] == ["mean_smoothness"]
    assert rep["classifier"]["drift"] is True
    assert (tmp_path / "rep" / "drift.png").is_file()
    out = runner.invoke(main, ["drift", "--reference", str(a), "--current", str(tmp_path / "nope.csv")])
    assert out.exit_code == 4 and "does not exist" in out.output


def test_command_on_npy_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    np.save(tmp_path / "ref.npy", synthetic_images(rng, 300))
    np.save(tmp_path / "cur.npy", np.clip(synthetic_images(rng, 300)[:, None] + 30, 0, 255))  # [N,1,28,28]
    out = CliRunner().invoke(main, ["drift", "--reference", str(tmp_path / "ref.npy"), "--current",
                                    str(tmp_path / "cur.npy"), "--dims", "8", "--classifier", "none"])
    assert out.exit_code == 0, out.output
    assert "PCA of 784 values to 8 components" in out.output and "DRIFT" in out.output


def test_demo_prints_rates_for_the_table() -> None:
    out = CliRunner().invoke(main, ["drift", "demo", "--data", "table", "--seeds", "4", "--classifier-seeds", "1"])
    assert out.exit_code == 0, out.output
    lines = {line.split("  ")[0]: line for line in out.output.splitlines()}
    assert "random split" in lines and "0%" in lines["random split"]
    gross = next(line for line in out.output.splitlines() if line.startswith("gross"))
    assert "100%" in gross


@pytest.mark.needs_datasets
def test_mnist_clean_versus_corrupted() -> None:
    """Real digits: no drift between two clean draws, drift under noise and brightness (severity 1)."""
    from edgewatch.data.corrupt import Corruption, corrupt
    from edgewatch.data.images import load_images

    path = datasets_dir() / "mnist" / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"MNIST test images not found at {path} (set EDGEWATCH_DATASETS)")
    x = load_images(path)
    idx = np.random.default_rng(9).permutation(len(x))
    ref, cur = x[idx[:600]], x[idx[600:1200]]
    opts = DriftOptions(classifier=ClassifierConfig(seed=0, importance=False))
    clean = compare(Batch(InputKind.IMAGES, ref, [], "ref"), Batch(InputKind.IMAGES, cur, [], "cur"), opts)
    assert not clean.drift and abs(clean.classifier.auc - 0.5) < 0.08
    rng = np.random.default_rng(10)
    for kind in (Corruption.GAUSSIAN_NOISE, Corruption.BRIGHTNESS):
        bad = corrupt(cur, kind, 1, rng)
        rep = compare(Batch(InputKind.IMAGES, ref, [], "ref"), Batch(InputKind.IMAGES, bad, [], kind.value), opts)
        assert rep.drift, kind
        assert rep.classifier.auc > 0.75 and rep.classifier.drift, kind


def test_conv_ae_encoder_export_feeds_the_drift_report(tmp_path: Path) -> None:
    """A conv-ae checkpoint (random weights: the plumbing, not the quality) -> ONNX encoder -> report."""
    torch = pytest.importorskip("torch")
    from edgewatch.models.conv_ae import ConvAeConfig, ConvAutoencoder, ImageScorer
    from edgewatch.train.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ConvAeConfig(channels=[4, 8, 8], dense=[32, 16])
    ckpt = save_checkpoint(tmp_path / "ae.ckpt", "conv-ae", cfg.to_dict(),
                           ImageScorer(ConvAutoencoder(cfg)).eval().state_dict(), {})
    out = CliRunner().invoke(main, ["drift", "export-encoder", str(ckpt), "-o", str(tmp_path / "enc.onnx")])
    assert out.exit_code == 0, out.output
    enc = OnnxEncoder(tmp_path / "enc.onnx")
    rng = np.random.default_rng(11)
    imgs = synthetic_images(rng, 8)
    z = enc.encode(imgs)
    assert z.shape == (8, 16)
    with torch.no_grad():
        ref = ImageScorer(ConvAutoencoder(cfg))
        ref.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
        expected = ref.eval().model.encoder(torch.from_numpy(imgs[:, None] / 255.0).float()).numpy()
    assert np.allclose(z, expected, atol=1e-4)
    np.save(tmp_path / "ref.npy", synthetic_images(rng, 200))
    np.save(tmp_path / "cur.npy", np.clip(synthetic_images(rng, 200) + 60, 0, 255))
    out = CliRunner().invoke(main, ["drift", "--reference", str(tmp_path / "ref.npy"), "--current",
                                    str(tmp_path / "cur.npy"), "--encoder", str(tmp_path / "enc.onnx"),
                                    "--classifier", "none", "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert "ONNX encoder enc.onnx" in rep["reduction"] and len(rep["ks"]["features"]) == 16
