"""``edgewatch train rnn-ae``: the RNN autoencoder (S3) on the synthetic benchmark."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("rnn-ae")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder written by 'edgewatch data synth' (train.npy, test.npy, test_labels.npy).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("rnn-ae.ckpt"),
              show_default=True, help="Checkpoint to write; export it with 'edgewatch export onnx'.")
@click.option("--window", default=100, show_default=True, help="Steps per window.")
@click.option("--stride", default=10, show_default=True, help="Steps between windows (training and test).")
@click.option("--hidden", default=64, show_default=True, help="GRU hidden size (encoder and decoder).")
@click.option("--epochs", default=30, show_default=True, help="Passes over the training series.")
@click.option("--lr", default=3e-3, show_default=True, help="Adam learning rate.")
@click.option("--sigmas", default=3.0, show_default=True,
              help="Model-file threshold = mean + SIGMAS*std of held-out nominal scores.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the weight initialisation and the batch shuffling (random, NumPy and torch).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(data: Path, out: Path, window: int, stride: int, hidden: int, epochs: int, lr: float,
            sigmas: float, seed: int, quiet: bool) -> None:
    """Train the GRU autoencoder on nominal sine waves and evaluate it on the labelled test series.

    Prints best F1 and its threshold (searched between the 50th and 99th
    score percentiles), precision, recall, AUC-PR and the flagged regions
    (windows merged into start/end steps), all per window of WINDOW steps
    every STRIDE. The threshold stored in the checkpoint comes from nominal
    data only, never from the test labels.
    """
    from edgewatch.data.synth import load_synth
    from edgewatch.accuracy import f1_at
    from edgewatch.models.rnn_ae import RnnAeConfig
    from edgewatch.train.checkpoint import save_checkpoint
    from edgewatch.train.rnn_ae import default_train_config, evaluate_windows, train_rnn_ae

    synth = load_synth(data)
    cfg = RnnAeConfig(window=window, n_features=synth.train.shape[1], hidden=hidden)
    run = train_rnn_ae(synth.train, cfg, stride, default_train_config(epochs=epochs, lr=lr, seed=seed,
                                                                        progress=not quiet),
                       sigmas=sigmas, trained_on={"data": str(data), "seed": seed,
                                                  "synth_seed": synth.config.seed})
    res = run.train_result
    click.echo(f"trained {res.epochs_run} epochs in {res.seconds:.1f} s: train MSE {res.train_loss[-1]:.5f}, "
               f"best validation MSE {min(res.val_loss):.5f} (epoch {res.best_epoch + 1})")
    ev = evaluate_windows(run.scorer, synth.test, synth.labels, window, stride)
    n, pos = len(ev.labels), int(ev.labels.sum())
    click.echo(f"\ntest series: {len(synth.test)} steps, {n} windows of {window} every {stride}, "
               f"{pos} hold an anomalous step")
    click.echo(f"best F1     {ev.best.f1:.3f} at threshold {ev.best.threshold:.5f} "
               "(searched between the 50th and 99th score percentiles)")
    click.echo(f"precision   {ev.best.precision:.3f}")
    click.echo(f"recall      {ev.best.recall:.3f}")
    click.echo(f"AUC-PR      {ev.auc_pr:.3f}   (chance: {pos / n:.3f}; F1 of flagging every window: "
               f"{ev.chance_f1:.3f})")
    click.echo(f"model-file threshold {run.threshold:.5f} ({run.threshold_method})")
    f1, p, r = f1_at(ev.scores >= run.threshold, ev.labels)
    click.echo(f"at the model-file threshold: F1 {f1:.3f}, precision {p:.3f}, recall {r:.3f}")
    click.echo("\nanomalous regions at the best-F1 threshold (steps, inclusive):")
    for start, end in ev.regions:
        click.echo(f"  {start:>6} - {end:<6}")
    click.echo("true segments: " + ", ".join(f"{a}-{b}" for a, b in synth.segments()))
    save_checkpoint(out, run.card_fields["family"], run.model_config.to_dict(), run.scorer.state_dict(),
                    run.card_fields, calibration=run.calibration)
    click.echo(f"\ncheckpoint written to {out}; export with: edgewatch export onnx {out}")
