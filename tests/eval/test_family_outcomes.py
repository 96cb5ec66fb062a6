"""What each family must show on its own benchmark, in reduced but meaningful runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgewatch.cli import main

DATASETS = Path(os.environ.get("EDGEWATCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
TRAVEL_TIME = DATASETS / "nab" / "data" / "realTraffic" / "TravelTime_451.csv"
MNIST_TEST = DATASETS / "mnist" / "t10k-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.needs_datasets
@pytest.mark.skipif(not TRAVEL_TIME.is_file(), reason=f"NAB dataset absent ({TRAVEL_TIME}); set EDGEWATCH_DATASETS")
def test_deepant_flags_the_confirmed_travel_time_anomaly(tmp_path: Path) -> None:
    """S1 in full (30 epochs, the published settings): 2015-08-11 12:07 is over the 3-sigma threshold."""
    out = tmp_path / "deepant.ckpt"
    result = CliRunner().invoke(main, ["train", "deepant", "--data", str(TRAVEL_TIME), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("2015-08-11 12:07:00:"))
    assert "FLAGGED" in line, result.output
    assert "top 10 most anomalous timestamps" in result.output
    flagged = int(result.output.split("flagged ")[1].split(" of ")[0])
    assert 0 < flagged < 0.05 * 2152  # a real selection, not everything
    assert out.is_file()


def test_rnn_ae_finds_scaled_segments_far_above_chance() -> None:
    """S3 reduced: shorter series and a few epochs; windows of 100 every 10 as in the system."""
    from edgewatch.data.synth import SynthConfig, make_synth
    from edgewatch.models.rnn_ae import RnnAeConfig
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.rnn_ae import evaluate_windows, train_rnn_ae

    data = make_synth(SynthConfig(seed=1, train_length=3000, test_length=4000, n_segments=5))
    run = train_rnn_ae(data.train, RnnAeConfig(window=100, hidden=16), stride=10,
                       train_config=TrainConfig(epochs=5, batch_size=32, lr=1e-2, lr_gamma=1.0,
                                                clip_grad_norm=1.0, progress=False, seed=0))
    ev = evaluate_windows(run.scorer, data.test, data.labels, 100, 10)
    base_rate = ev.labels.mean()
    assert ev.best.f1 > ev.chance_f1 + 0.3, (ev.best, ev.chance_f1)
    assert ev.auc_pr > 2 * base_rate
    # every true segment lies inside a reported region
    assert all(any(a <= s and e <= b for a, b in ev.regions) for s, e in data.segments())


@pytest.mark.needs_datasets
@pytest.mark.skipif(not MNIST_TEST.is_file(), reason=f"MNIST test images absent ({MNIST_TEST}); set EDGEWATCH_DATASETS")
def test_conv_ae_scores_noisy_digits_higher() -> None:
    """S2 reduced: a few hundred MNIST digits, a narrower net; noise, blur and low contrast must stand out."""
    from edgewatch.accuracy import auroc
    from edgewatch.data.corrupt import Corruption, corrupt
    from edgewatch.data.images import read_idx
    from edgewatch.export.scoring import score_batches
    from edgewatch.models.conv_ae import ConvAeConfig
    from edgewatch.train.conv_ae import default_train_config, train_conv_ae

    x = read_idx(MNIST_TEST).astype(np.float32)
    run = train_conv_ae(x[:400], x[400:500], ConvAeConfig(channels=[8, 16, 16], dense=[64, 32]),
                        default_train_config(epochs=12, lr=1e-2, batch_size=16, patience=0, progress=False))
    assert min(run.train_result.val_loss) < 0.6 * run.train_result.val_loss[0]
    clean, held = x[500:600], x[600:700]
    y = np.r_[np.zeros(100), np.ones(100)]
    # both directions: noise adds detail, blur and low contrast remove it (the reconstruction error alone
    # scores blurred digits lower than clean ones); occlusion removes it in one place
    for kind in (Corruption.GAUSSIAN_NOISE, Corruption.BLUR, Corruption.LOW_CONTRAST, Corruption.OCCLUSION):
        bad = corrupt(held, kind, 3, np.random.default_rng(0))
        scores, _ = score_batches(run.scorer, np.concatenate([clean, bad])[:, None])
        assert auroc(scores, y) > 0.8, kind
