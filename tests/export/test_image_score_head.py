"""The conv-AE score head's parts: nearest-neighbour banks, image statistics, flat windows, old checkpoints refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgewatch.data.corrupt import Corruption, corrupt
from edgewatch.errors import BadInput
from edgewatch.models.conv_ae import (ConvAeConfig, ConvAutoencoder, ImageScorer, ScoreHead, _nearest_sq,
                                      build_scorer, dct_matrix)


def _texture(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    f = rng.uniform(0.3, 1.2, (n, 1, 1))
    return (127 + 100 * np.sin(f * xx + rng.uniform(0, 6, (n, 1, 1))) * np.cos(f * 0.7 * yy)).astype(np.float32)


def test_nearest_distance_is_the_brute_force_minimum_and_zero_on_the_bank() -> None:
    rng = np.random.default_rng(0)
    bank = torch.from_numpy(rng.normal(size=(50, 6)))
    q = torch.cat([torch.from_numpy(rng.normal(size=(7, 6))), bank[[3, 41]]])
    got = _nearest_sq(q, bank.T.contiguous(), bank.pow(2).sum(dim=1))
    want = ((q[:, None, :] - bank[None]) ** 2).sum(-1).min(dim=1).values
    assert torch.allclose(got, want, atol=1e-12)
    assert float(got[-2:].abs().max()) < 1e-12


def test_dct_is_orthonormal_and_block_energy_sees_what_jpeg_and_blur_remove() -> None:
    c = dct_matrix()
    assert torch.allclose(c @ c.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    head = ScoreHead(n_stats=4, n_code=2, size=28, two_sided=[False] * 6 + [True])
    clean = torch.from_numpy(_texture(16, 1)[:, None] / 255.0).double()
    stats = head.image_statistics(clean)
    assert stats.shape == (16, 84) and torch.isfinite(stats).all()
    # energy is preserved by an orthonormal transform: the 64 mean energies sum to the mean square of the blocks
    padded = torch.nn.functional.pad(clean, (0, 4, 0, 4), mode="replicate")
    assert torch.allclose(stats[:, 20:].exp().sum(dim=1) - 64e-6, padded.pow(2).mean(dim=(1, 2, 3)) * 64, rtol=1e-6)
    high = [u * 8 + v for u in range(4, 8) for v in range(4, 8)]  # the 16 highest-frequency coefficients
    for kind in (Corruption.JPEG, Corruption.BLUR):
        bad = corrupt(_texture(16, 1), kind, 4, np.random.default_rng(2))
        lowered = head.image_statistics(torch.from_numpy(bad[:, None] / 255.0).double())
        assert float((lowered[:, 20:][:, high] - stats[:, 20:][:, high]).mean()) < -0.5, kind


def test_fitted_head_scores_clean_images_low_and_a_block_flattened_image_high() -> None:
    from edgewatch.train.conv_ae import fit_score_head

    torch.manual_seed(0)
    scorer = ImageScorer(ConvAutoencoder(ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]))).eval()
    info = fit_score_head(scorer, _texture(120, 3)[:, None], _texture(40, 4)[:, None])
    assert info["bank_images"] == 120 and info["bank_dims"] == [16, 49]
    assert scorer.score_head.code_bank_t.shape == (16, 120)
    with torch.no_grad():
        clean = scorer(torch.from_numpy(_texture(40, 5)[:, None]))[0]
        jpeg = scorer(torch.from_numpy(corrupt(_texture(40, 5), Corruption.JPEG, 5,
                                               np.random.default_rng(0))[:, None]))[0]
        low = scorer(torch.from_numpy(corrupt(_texture(40, 5), Corruption.LOW_CONTRAST, 5,
                                              np.random.default_rng(0))[:, None]))[0]
    assert clean.dtype == torch.float32
    assert float((jpeg > torch.quantile(clean, 0.9)).float().mean()) > 0.9
    assert float((low > torch.quantile(clean, 0.9)).float().mean()) > 0.9  # less detail scores high too
    # a flat light square where the texture was: detail removed in one place, which the image-wide tests dilute
    square = _texture(40, 5)
    square[:, 8:19, 10:21] = 230.0
    with torch.no_grad():
        patched = scorer(torch.from_numpy(square[:, None]))[0]
    assert float((patched > torch.quantile(clean, 0.95)).float().mean()) == 1.0
    # the bank's size travels in the state dict: a checkpoint rebuilds the same scorer
    rebuilt = build_scorer(scorer.model.cfg.to_dict(), scorer.state_dict())
    with torch.no_grad():
        probe = torch.from_numpy(_texture(4, 6)[:, None])
        assert torch.equal(rebuilt(probe)[0], scorer(probe)[0])


def test_a_checkpoint_of_the_older_head_is_refused_with_the_refit_command() -> None:
    state = ImageScorer(ConvAutoencoder(ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]))).state_dict()
    old = {k: v for k, v in state.items() if "bank" not in k}
    with pytest.raises(BadInput, match="--epochs 0 --init-from"):
        build_scorer(ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]).to_dict(), old)


def test_a_checkpoint_of_the_six_test_head_is_refused_with_the_refit_command() -> None:
    state = ImageScorer(ConvAutoencoder(ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]))).state_dict()
    for name in ("component_mean", "component_std", "two_sided"):
        state[f"score_head.{name}"] = state[f"score_head.{name}"][:6]
    with pytest.raises(BadInput, match="predates the 7-test image score .*--epochs 0 --init-from"):
        build_scorer(ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]).to_dict(), state)


def test_flat_windows_count_flat_bright_7x7_windows_and_nothing_in_texture_or_black() -> None:
    images = np.repeat(_texture(1, 7), 6, axis=0)
    images[1, 2:11, 3:12] = 255.0  # a white 9x9 square: 3 x 3 windows of 7x7 inside it
    images[2, 2:11, 3:12] = 0.0  # black is the background of these datasets, not a flat patch
    images[3, 0:7, 21:28] = 90.0  # grey, in a corner: exactly one window
    images[4, 2:11, 3:12] = 200.0 + (np.arange(81).reshape(9, 9) % 2)  # one grey level of noise: still flat
    images[5, 2:11, 3:12] = 200.0 + 3.0 * (np.arange(81).reshape(9, 9) % 2)  # three levels: texture
    got = ScoreHead.flat_windows(torch.from_numpy(images[:, None] / 255.0).float())
    assert got.tolist() == [0.0, 9.0, 0.0, 1.0, 9.0, 0.0]


def test_soft_maximum_is_the_firing_test_alone_and_adds_up_agreeing_ones() -> None:
    """T·log Σ exp(z/T): one large z passes through, six equal ones gain T·log 6, huge ones stay finite."""
    head = ScoreHead(n_stats=4, n_code=2, size=28, two_sided=[False] * 6 + [True])
    t = float(head.temperature)
    z = torch.tensor([[30.0, 0.0, 0.0, 0.0, 0.0, 0.0], [2.0] * 6, [1e6, -1e6, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    soft = head.combine(z)
    assert abs(float(soft[0]) - 30.0) < 1e-5
    assert abs(float(soft[1]) - (2.0 + t * np.log(6))) < 1e-9
    assert float(soft[2]) == 1e6
