"""``edgewatch train lstm-ae``: the S0 LSTM autoencoder on nominal CSV data."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("lstm-ae")
@click.option("--data", "data", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV with a header of feature names (a timestamp/time/ts column is ignored), nominal "
                   "data only; e.g. from 'edgewatch simulate --record sample.csv --count 200000'.")
@click.option("--window", default=10, show_default=True, type=click.IntRange(2, 1000),
              help="Steps per window (5 to 50 suit this model).")
@click.option("--stride", default=1, show_default=True, type=click.IntRange(1),
              help="Rows between consecutive training windows.")
@click.option("--score-stride", default=3, show_default=True, type=click.IntRange(1),
              help="Default for the agent: score every n-th point (stored in the model card).")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1), help="Passes over the training windows.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1), help="Windows per optimizer step.")
@click.option("--lr", default=1e-2, show_default=True, type=float, help="Adam learning rate.")
@click.option("--lr-gamma", default=0.9995, show_default=True, type=float,
              help="ExponentialLR factor applied after every batch.")
@click.option("--patience", default=3, show_default=True, type=click.IntRange(0),
              help="Stop after this many epochs without validation improvement (0: never).")
@click.option("--hidden", default=160, show_default=True, type=click.IntRange(1), help="Outer LSTM size.")
@click.option("--latent", default=60, show_default=True, type=click.IntRange(1), help="Bottleneck LSTM size.")
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0.01, 0.9, min_open=False),
              help="Last share of rows held out: half for validation, half for calibration.")
@click.option("--noise-sigma", default=0.05, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Calibration noise, as a fraction of each feature's range.")
@click.option("--margin", default=1.5, show_default=True, type=click.FloatRange(1.0),
              help="Threshold = p99.9 of normal scores x margin (see the printed reason).")
@click.option("--denoise", default=0.05, show_default=True, type=click.FloatRange(0),
              help="Train as a denoising autoencoder: Gaussian noise of this std (scaled units) on the "
                   "inputs, clean targets. Keeps the model from learning the identity, which would "
                   "reproduce noise and leave too little error for int8; 0 = plain autoencoder.")
@click.option("--max-rows", default=None, type=click.IntRange(1), help="Read at most this many rows.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the weight initialisation and the batch shuffling (random, NumPy and torch).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="torch threads.")
@click.option("-o", "--output", default=Path("checkpoints/lstm-ae.pt"), show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint to write.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(data: Path, window: int, stride: int, score_stride: int, epochs: int, batch_size: int, lr: float,
            lr_gamma: float, patience: int, hidden: int, latent: int, holdout: float, noise_sigma: float,
            margin: float, denoise: float, max_rows: int | None, seed: int, threads: int, output: Path, quiet: bool) -> None:
    """Train the S0 LSTM autoencoder on nominal data, calibrate its threshold, save a checkpoint.

    The threshold comes from reconstruction-error statistics on held-out
    normal windows, the same windows with noise, and random data; the table
    and the reason for the threshold are printed. Export the checkpoint
    with 'edgewatch export onnx CHECKPOINT -o model.onnx'.
    """
    from edgewatch.errors import require_torch

    require_torch()
    from edgewatch.train.calibrate import CalibrationConfig
    from edgewatch.train.csv_series import read_series_csv
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.lstm_ae import LstmAeConfig, train_lstm_ae

    series = read_series_csv(data, max_rows)
    for note in series.notes:
        click.echo(f"note: {note}", err=True)
    if not 5 <= window <= 50:
        click.echo(f"note: window {window} is outside 5-50, the range this model was designed for", err=True)
    cfg = LstmAeConfig(
        window=window, stride=stride, hidden=hidden, latent=latent, holdout=holdout, score_stride=score_stride,
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_gamma=lr_gamma, patience=patience,
                          seed=seed, threads=threads, progress=not quiet, input_noise=denoise, desc="lstm-ae"),
        calibration=CalibrationConfig(noise_sigma=noise_sigma, margin=margin, seed=seed),
    )
    click.echo(f"{len(series.values)} rows x {len(series.features)} features ({', '.join(series.features)}) "
               f"from {data}")
    outcome = train_lstm_ae(series.values, series.features, cfg, output, source=str(data))
    h = outcome.history
    val = f", best validation loss {min(h.val_loss):.4g} (epoch {h.best_epoch + 1})" if h.val_loss else ""
    click.echo(f"trained {h.epochs_run} epochs in {h.seconds:.1f} s: train loss {h.train_loss[-1]:.4g}{val}"
               f"{' (stopped early)' if h.stopped_early else ''}")
    click.echo(outcome.calibration.table())
    click.echo(f"threshold {outcome.calibration.threshold:.4g}: {outcome.calibration.threshold_method}")
    click.echo(f"saved {outcome.checkpoint}")
