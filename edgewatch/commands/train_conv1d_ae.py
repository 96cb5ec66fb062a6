"""``edgewatch train conv1d-ae``: the 1-D convolutional window autoencoder on a CSV of normal rows."""

from __future__ import annotations

from pathlib import Path

import click

from edgewatch.numpy_models.pca import PcaConfig


@click.command("conv1d-ae")
@click.option("--data", "data", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Normal rows: an edgewatch CSV or a SKAB file as it is (';', datetime and label columns ignored).")
@click.option("--rows", type=click.IntRange(min=1), default=None, help="Train on the first ROWS rows only.")
@click.option("--window", default=32, show_default=True, type=click.IntRange(min=4),
              help="Rows per window (a multiple of 4).")
@click.option("--epochs", default=100, show_default=True, help="Upper bound; early stopping usually ends sooner.")
@click.option("--patience", default=5, show_default=True, help="Epochs without validation improvement.")
@click.option("--factor", default=PcaConfig.factor, show_default=True,
              help="Threshold = FACTOR x the 0.99 quantile of the training windows' scores (the pca family's rule; "
                   "SKAB's own Conv-AE uses 1.5).")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the weight initialisation and the batch shuffling (random, NumPy and torch).")
@click.option("-o", "--output", default=Path("checkpoints/conv1d-ae.pt"), show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint to write.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(data: Path, rows: int | None, window: int, epochs: int, patience: int, factor: float, seed: int,
            output: Path, quiet: bool) -> None:
    """Train the conv1d autoencoder (standard scaler, MSE, Adam 1e-3) and save a checkpoint.

    Export it with 'edgewatch export onnx CHECKPOINT -o model.onnx'.
    """
    from edgewatch.errors import BadInput, require_torch

    require_torch()
    from edgewatch.models.conv1d_ae import FAMILY, Conv1dAutoencoder, model_config
    from edgewatch.train.checkpoint import save_checkpoint
    from edgewatch.train.csv_series import read_series_csv
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.window_ae import WindowAeConfig, train_window_ae

    if window % 4:
        raise BadInput(f"--window {window} is not a multiple of 4 (the encoder halves the length twice)")
    series = read_series_csv(data, rows)
    for note in series.notes:
        click.echo(f"note: {note}", err=True)
    cfg = WindowAeConfig(window=window, factor=factor, train=TrainConfig(
        epochs=epochs, batch_size=32, lr=1e-3, lr_gamma=1.0, patience=patience, seed=seed, progress=not quiet,
        desc=FAMILY))
    run = train_window_ae(Conv1dAutoencoder, FAMILY, series.values, series.features, cfg,
                          trained_on={"data": str(data)})
    h = run.history
    click.echo(f"trained {h.epochs_run} epochs in {h.seconds:.1f} s on {len(series.values)} rows; "
               f"threshold {run.threshold:.4g} ({run.card_fields['threshold_method']})")
    save_checkpoint(output, FAMILY, model_config(len(series.features), window), run.scorer.state_dict(),
                    run.card_fields, calibration=run.calibration)
    click.echo(f"checkpoint written to {output}; export with: edgewatch export onnx {output}")
