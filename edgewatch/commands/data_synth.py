"""``edgewatch data synth``: write the S3 synthetic benchmark (seeded)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("synth")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (created if needed).")
@click.option("--seed", default=0, show_default=True, help="Everything follows from this seed.")
@click.option("--features", default=1, show_default=True, help="Sine waves (one per feature).")
@click.option("--train-length", default=10_000, show_default=True, help="Steps of nominal training data.")
@click.option("--test-length", default=10_000, show_default=True, help="Steps of the labelled test series.")
@click.option("--segments", default=10, show_default=True, help="Anomalous segments in the test series.")
@click.option("--segment-length", default=10, show_default=True, help="Steps per anomalous segment.")
@click.option("--factor", default=2.0, show_default=True, help="Anomalous segments are multiplied by this.")
@click.option("--noise", default=0.1, show_default=True, help="Half-width of the uniform noise (amplitude 1).")
def command(out: Path, seed: int, features: int, train_length: int, test_length: int, segments: int,
            segment_length: int, factor: float, noise: float) -> None:
    """Sine waves with uniform noise for training, and a test series with scaled segments and labels."""
    from edgewatch.data.synth import SynthConfig, make_synth, save_synth

    cfg = SynthConfig(seed=seed, n_features=features, train_length=train_length, test_length=test_length,
                      n_segments=segments, segment=segment_length, factor=factor, noise=noise)
    data = make_synth(cfg)
    files = save_synth(data, out)
    click.echo(f"synthetic benchmark (seed {seed}) written to {out}:")
    click.echo(f"  train.npy / train.csv    {train_length} steps x {features} feature(s): sine waves "
               f"(periods {cfg.period_min:g}-{cfg.period_max:g} steps) + uniform noise +-{noise:g}; nominal only")
    click.echo(f"  test.npy / test.csv      {test_length} steps, the same waves with {segments} segments of "
               f"{segment_length} steps multiplied by {factor:g} (test.csv has a label column)")
    click.echo(f"  test_labels.npy          0/1 per test step ({int(data.labels.sum())} anomalous steps)")
    click.echo("  synth.json               the configuration and the segments: "
               + ", ".join(f"{a}-{b}" for a, b in data.segments()))
    click.echo(f"{len(files)} files. Train with: edgewatch train rnn-ae --data {out}")
