"""S0 training: tiny real trainings, calibration rule, checkpoints, the training loop and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.errors import BadInput, BadModelFile
from edgewatch.export.scoring import score_batches
from edgewatch.models import family_module
from edgewatch.models.lstm_ae import LstmAutoencoder
from edgewatch.train.calibrate import CalibrationConfig, choose_threshold, drift_reference
from edgewatch.train.checkpoint import card_from_fields, load_checkpoint, save_checkpoint
from edgewatch.train.csv_series import read_series_csv
from edgewatch.train.loop import TrainConfig, fit
from edgewatch.train.lstm_ae import LstmAeConfig, train_lstm_ae
from edgewatch.train.scaling import fit_minmax

FEATURES = ["cpu", "memory", "traffic", "fan"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def stand_in_series(n: int = 1500, seed: int = 0) -> np.ndarray:
    """Four smooth periodic signals plus noise in [0, 1], like nominal equipment data."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = np.stack([0.5 + 0.35 * np.sin(2 * np.pi * t / 40 + k) for k in range(4)], axis=1)
    v[:, 3] = np.round(v[:, 3] * 4) / 4  # one step-like metric
    return np.clip(v + rng.normal(0, 0.01, v.shape), 0, 1).astype(np.float32)


def tiny_config(**train: object) -> LstmAeConfig:
    opts = {"epochs": 4, "batch_size": 32, "lr": 1e-2, "patience": 0, "progress": False, "seed": 0}
    opts.update(train)
    return LstmAeConfig(window=10, hidden=12, latent=6, train=TrainConfig(**opts), n_export_samples=128)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "lstm-ae.pt"
    return train_lstm_ae(stand_in_series(), FEATURES, tiny_config(), out, source="stand-in.csv")


def test_training_reduces_the_loss(trained) -> None:  # noqa: ANN001
    h = trained.history
    assert h.epochs_run == 4
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert len(h.val_loss) == 4 and h.best_epoch >= 0


def test_calibration_orders_normal_noisy_random_and_threshold_between(trained) -> None:  # noqa: ANN001
    cal = trained.calibration
    stats = cal.score_stats
    assert set(stats) == {"normal", "noisy", "random"}
    assert stats["normal"].p50 < stats["noisy"].p50 < stats["random"].p50
    assert stats["normal"].p50 < cal.threshold < stats["random"].p50
    assert np.mean(cal.scores["random"] > cal.threshold) > 0.95
    assert np.mean(cal.scores["normal"] > cal.threshold) < 0.01
    assert "p99.9 of normal" in cal.threshold_method
    table = cal.table()
    assert "random" in table and "over" in table


def test_checkpoint_round_trip_rebuilds_the_same_scorer(trained) -> None:  # noqa: ANN001
    ckpt = load_checkpoint(trained.checkpoint)
    assert ckpt.family == "lstm-ae"
    assert ckpt.config["hidden"] == 12 and ckpt.config["latent"] == 6
    assert ckpt.calibration is not None and ckpt.calibration.shape[1:] == (10, 4)
    scorer = family_module(ckpt.family).build_scorer(ckpt.config, ckpt.state_dict)
    x = ckpt.calibration[:50]
    got, ferr = score_batches(scorer, x)
    want, _ = score_batches(trained.scorer, x)
    np.testing.assert_array_equal(got, want)
    assert ferr.shape == (50, 4)
    np.testing.assert_allclose(ferr.mean(axis=1), got, rtol=1e-5)  # mean over features of per-feature MSE
    card = card_from_fields(ckpt.card_fields, "none")
    assert card.threshold == trained.calibration.threshold
    assert card.sample_shape == [10, 4] and card.features == FEATURES
    assert card.drift_reference is not None and len(card.drift_reference.quantiles[0]) == 101


def test_checkpoint_is_loadable_with_weights_only(trained) -> None:  # noqa: ANN001
    payload = torch.load(trained.checkpoint, weights_only=True)
    assert isinstance(payload["state_dict"]["model.encoder.weight_ih_l0"], torch.Tensor)


def test_a_pickled_module_is_refused_as_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(LstmAutoencoder(4, 4, 2), path)  # a whole pickled module, not a state_dict
    with pytest.raises(BadModelFile, match="not a readable edgewatch checkpoint"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(BadModelFile, match="not an edgewatch checkpoint"):
        load_checkpoint(other)


def test_checkpoint_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "a" / "c.pt"
    save_checkpoint(out, "lstm-ae", {"n_features": 1}, {"w": torch.ones(1)}, {"x": 1})
    save_checkpoint(out, "lstm-ae", {"n_features": 2}, {"w": torch.ones(2)}, {"x": 2})
    assert [p.name for p in out.parent.iterdir()] == ["c.pt"]
    assert load_checkpoint(out).config == {"n_features": 2}


def test_the_decoder_reads_the_whole_encoded_sequence() -> None:
    torch.manual_seed(0)
    model = LstmAutoencoder(4, 16, 5).eval()
    seen: list[tuple[int, ...]] = []
    model.decoder.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    x = torch.rand(3, 7, 4)
    y = model(x)
    assert y.shape == (3, 7, 4)
    assert seen == [(3, 7, 5)]  # [batch, every time step, latent], not only the last hidden state


def test_training_is_reproducible_with_a_seed() -> None:
    x = torch.from_numpy(np.ascontiguousarray(
        np.lib.stride_tricks.sliding_window_view(stand_in_series(300), 8, axis=0).transpose(0, 2, 1)))
    losses = []
    for _ in range(2):
        torch.manual_seed(123)  # a different global state must not matter: fit seeds itself
        model = LstmAutoencoder(4, 8, 4)
        losses.append(fit(model, x, TrainConfig(epochs=2, batch_size=32, progress=False, seed=5)).train_loss)
    assert losses[0] == losses[1]


def test_early_stopping_restores_the_best_weights() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 5, 2)
    val = torch.rand(32, 5, 2)
    model = LstmAutoencoder(2, 8, 4)
    # a huge learning rate makes validation get worse quickly, so patience triggers
    res = fit(model, x, TrainConfig(epochs=30, batch_size=16, lr=0.5, lr_gamma=1.0, patience=2,
                                    progress=False), val_inputs=val)
    assert res.stopped_early and res.epochs_run < 30
    from edgewatch.train.loop import evaluate

    assert evaluate(model, val) == pytest.approx(min(res.val_loss), rel=1e-5)


def test_threshold_rule_branches() -> None:
    normal = np.linspace(0.0, 1.0, 1001)  # p99.9 = 0.999
    cfg = CalibrationConfig(margin=1.5)
    t, why, ok = choose_threshold(normal, np.full(100, 5.0), cfg)
    assert ok and t == pytest.approx(0.999 * 1.5) and "margin" in why
    t, why, ok = choose_threshold(normal, np.full(100, 1.2), cfg)
    assert ok and t == pytest.approx(np.sqrt(0.999 * 1.2)) and "geometric mean" in why
    t, why, ok = choose_threshold(normal, np.full(100, 0.5), cfg)
    assert not ok and "WARNING" in why and t == pytest.approx(0.999 * 1.5)


def test_drift_reference_summarises_each_feature() -> None:
    v = stand_in_series(500)
    ref = drift_reference(v)
    assert ref.n == 500 and len(ref.quantiles) == 4
    for f in range(4):
        assert ref.quantiles[f][0] == pytest.approx(v[:, f].min())
        assert ref.quantiles[f][-1] == pytest.approx(v[:, f].max())
        assert ref.quantiles[f] == sorted(ref.quantiles[f])
    np.testing.assert_allclose(ref.mean, v.mean(axis=0), rtol=1e-5)


def test_minmax_scaler_maps_the_training_range_to_unit_and_survives_constant_features() -> None:
    v = np.array([[0.0, 2.0, 5.0], [1.0, 4.0, 5.0]])
    s = fit_minmax(v)
    assert s.offset == [0.0, 2.0, 5.0] and s.scale == [1.0, 0.5, 1.0]


def test_csv_reader_ignores_the_time_column_leaves_text_out_and_fills_blanks(tmp_path: Path) -> None:
    good = tmp_path / "g.csv"
    good.write_text("Timestamp,a,b\n1,0.1,0.2\n2,0.3,0.4\n")
    s = read_series_csv(good)
    assert s.features == ["a", "b"] and s.notes == []
    np.testing.assert_allclose(s.values, [[0.1, 0.2], [0.3, 0.4]])
    plant = tmp_path / "p.csv"
    plant.write_text("Time Stamp;a;state;b\n1;;RUN;2,5\n2;0,5;RUN;\n3;0,7;STOP;3,0\n")
    s = read_series_csv(plant)
    assert s.features == ["a", "b"]
    np.testing.assert_allclose(s.values, [[0.5, 2.5], [0.7, 3.0]])
    assert s.notes == ["left out text column 'state' (e.g. 'RUN')", "filled 1 b blank cell(s) from the last value",
                       "dropped 1 row(s) before every column had a value"]
    bad = tmp_path / "b.csv"
    bad.write_text("a,b\nx,y\n")
    with pytest.raises(BadInput, match="no numeric feature column"):
        read_series_csv(bad)


def test_too_little_data_is_refused_with_the_needed_size(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="too few"):
        train_lstm_ae(stand_in_series(40), FEATURES, tiny_config(), tmp_path / "x.pt")


def test_cli_trains_prints_the_threshold_reason_and_saves(tmp_path: Path) -> None:
    data = tmp_path / "sample.csv"
    v = stand_in_series(800)
    np.savetxt(data, np.column_stack([np.arange(len(v)), v]), delimiter=",",
               header="timestamp," + ",".join(FEATURES), comments="", fmt="%.6f")
    out = tmp_path / "ck" / "m.pt"
    res = CliRunner().invoke(main, ["train", "lstm-ae", "--data", str(data), "--hidden", "8", "--latent", "4",
                                    "--epochs", "2", "--quiet", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "threshold" in res.output and "p99.9 of normal" in res.output
    assert "normal" in res.output and "random" in res.output
    assert load_checkpoint(out).card_fields["features"] == FEATURES


def test_cli_reports_a_missing_data_file_with_exit_code_4(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["train", "lstm-ae", "--data", str(tmp_path / "nope.csv"), "-o",
                                    str(tmp_path / "m.pt")])
    assert res.exit_code == 4 and "does not exist" in res.output


def test_denoising_noise_touches_inputs_only() -> None:
    """With input noise the model is trained to map noisy windows to clean ones: its loss
    on clean targets stays finite and training still converges."""
    x = torch.from_numpy(np.ascontiguousarray(
        np.lib.stride_tricks.sliding_window_view(stand_in_series(400), 8, axis=0).transpose(0, 2, 1)))
    before = x.clone()
    model = LstmAutoencoder(4, 8, 4)
    res = fit(model, x, TrainConfig(epochs=3, batch_size=32, progress=False, input_noise=0.05))
    assert torch.equal(x, before)  # the training data itself is not modified
    assert res.train_loss[-1] < res.train_loss[0]


def test_family_lookup_maps_dashes_and_names_the_known_families() -> None:
    module = family_module("lstm-ae")
    assert module.EXPORT.quantization.value == "sentinel-int8" and module.EXPORT.fallback.value == "none"
    assert not module.EXPORT.script and module.EXPORT.why
    with pytest.raises(BadInput, match="unknown model family 'no-such'.*lstm-ae"):
        family_module("no-such")
