"""Image data for S2: the idx reader, the corruptions, and the score command end to end."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.data.corrupt import Corruption, corrupt, corrupt_mix, parse_corruptions
from edgewatch.data.images import load_images, read_idx
from edgewatch.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]


def write_idx(path: Path, images: np.ndarray) -> Path:
    n, r, c = images.shape
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, n, r, c) + images.astype(np.uint8).tobytes())
    return path


def blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
    r = rng.uniform(3, 6, (n, 1, 1))
    return (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))).astype(np.float32)


def test_idx_round_trip_gzipped_and_labels(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    got = read_idx(write_idx(tmp_path / "i.gz", imgs))
    np.testing.assert_array_equal(got, imgs)
    (tmp_path / "l").write_bytes(struct.pack(">II", 2049, 3) + bytes([7, 0, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "l"), [7, 0, 9])
    np.testing.assert_array_equal(load_images(tmp_path / "i.gz"), imgs.astype(np.float32))


def test_idx_reader_refuses_foreign_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(struct.pack(">II", 1234, 1) + b"x" * 10)
    with pytest.raises(BadInput, match="not an idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(struct.pack(">IIII", 2051, 2, 28, 28) + b"\0" * 100)
    with pytest.raises(BadInput, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(BadInput, match="never downloads"):
        read_idx(tmp_path / "missing.gz")


@pytest.mark.parametrize("kind", list(Corruption))
def test_each_corruption_is_seeded_bounded_and_grows_with_severity(kind: Corruption) -> None:
    x = blobs(8, 0)
    a = corrupt(x, kind, 3, np.random.default_rng(1))
    b = corrupt(x, kind, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255
    change = [np.abs(corrupt(x, kind, s, np.random.default_rng(1)) - x).mean() for s in (1, 5)]
    assert 0 < change[0] < change[1]


@pytest.mark.parametrize("kind", [Corruption.BLUR, Corruption.DEFOCUS, Corruption.PIXELATE, Corruption.LOW_CONTRAST])
def test_detail_removing_corruptions_remove_detail(kind: Corruption) -> None:
    """Fine texture loses gradient energy at every severity, more at 5 than at 1."""
    rng = np.random.default_rng(3)
    x = np.clip(128 + 60 * rng.standard_normal((6, 28, 28)) + 40 * np.sign(np.sin(np.arange(28) / 1.3)), 0, 255)

    def energy(a: np.ndarray) -> float:
        return float((np.diff(a, axis=1) ** 2).mean() + (np.diff(a, axis=2) ** 2).mean())

    got = [energy(corrupt(x, kind, s, np.random.default_rng(0))) for s in (1, 3, 5)]
    assert got[0] < 0.8 * energy(x) and got[2] < got[0], got


def test_jpeg_rounds_away_detail_once() -> None:
    """JPEG's loss is in the rounding of DCT coefficients: a second pass at the same quality changes little."""
    rng = np.random.default_rng(4)
    x = np.clip(128 + 30 * rng.standard_normal((6, 32, 32)), 60, 200)  # whole 8x8 blocks, no clipping
    once = corrupt(x, Corruption.JPEG, 3, rng)
    twice = corrupt(once, Corruption.JPEG, 3, rng)
    assert np.abs(twice - once).mean() < 0.2 * np.abs(once - x).mean()


def test_mix_labels_say_which_images_were_corrupted() -> None:
    x = blobs(30, 0)
    kinds = parse_corruptions("gaussian_noise,occlusion,brightness")
    mixed, labels, kind_of = corrupt_mix(x, kinds, 4, 0.5, seed=2)
    assert labels.sum() == 15 and set(kind_of[labels == 1]) == {0, 1, 2}
    np.testing.assert_array_equal(mixed[labels == 0], x[labels == 0])
    assert all(not np.array_equal(mixed[i], x[i]) for i in np.flatnonzero(labels))


def test_unknown_corruption_lists_the_valid_names() -> None:
    with pytest.raises(BadInput, match="gaussian_noise, blur"):
        parse_corruptions("gaussian,blur")


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny conv-AE trained on blobs and exported by the CLI (static int8, its family default)."""
    from edgewatch.models.conv_ae import ConvAeConfig
    from edgewatch.train.checkpoint import save_checkpoint
    from edgewatch.train.conv_ae import default_train_config, train_conv_ae

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("conv")
    run = train_conv_ae(blobs(200, 0), blobs(64, 1), ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]),
                        default_train_config(epochs=6, lr=1e-2, batch_size=16, progress=False))
    save_checkpoint(d / "c.ckpt", "conv-ae", run.model_config.to_dict(), run.scorer.state_dict(),
                    run.card_fields, calibration=run.calibration)
    result = CliRunner().invoke(main, ["export", "onnx", str(d / "c.ckpt"), "-o", str(d / "c.onnx")])
    assert result.exit_code == 0, result.output
    return d / "c.onnx"


def test_corrupt_then_score_writes_one_label_per_image_without_torch(conv_model: Path, tmp_path: Path) -> None:
    write_idx(tmp_path / "clean.gz", blobs(60, 5))
    mix = tmp_path / "mix.npy"
    result = CliRunner().invoke(main, ["data", "corrupt", "--images", str(tmp_path / "clean.gz"), "--corruption",
                                       "gaussian_noise,stripes,low_contrast", "--severity", "5", "-o", str(mix)])
    assert result.exit_code == 0, result.output
    truth = tmp_path / "mix.labels.txt"
    assert np.load(mix).shape == (60, 28, 28) and len(truth.read_text().split()) == 60
    blocker = ("import sys\nclass B:\n def find_spec(self, n, p=None, t=None):\n"
               "  if n.split('.')[0] in ('torch', 'onnx'): raise ImportError(n)\n"
               "sys.meta_path.insert(0, B())\nfrom edgewatch.cli import main\nmain(sys.argv[1:])\n")
    labels, hist = tmp_path / "labels.txt", tmp_path / "hist.png"
    proc = subprocess.run([sys.executable, "-c", blocker, "score", "--model", str(conv_model), "--images", str(mix),
                           "--labels-out", str(labels), "--truth", str(truth), "--hist-out", str(hist)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    flags = [int(v) for v in labels.read_text().split()]
    assert len(flags) == 60 and set(flags) <= {0, 1}
    assert "labels file accuracy" in proc.stdout and "stripes" in proc.stdout
    auc = float(proc.stdout.split("AUROC all corruptions ")[1].split()[0])
    assert auc > 0.8, proc.stdout  # severity 5 on blobs: plain to see
    assert hist.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_refuses_images_of_the_wrong_size(conv_model: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.zeros((3, 10, 10), np.uint8))
    result = CliRunner().invoke(main, ["score", "--model", str(conv_model), "--images", str(tmp_path / "small.npy"),
                                       "--labels-out", str(tmp_path / "l.txt")])
    assert result.exit_code == 4, result.output
    assert "expects" in result.output
