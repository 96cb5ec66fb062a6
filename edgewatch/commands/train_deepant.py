"""``edgewatch train deepant``: the DeepAnt forecaster (S1) on one NAB-style CSV."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from edgewatch.errors import BadInput


def known_anomalies(data: Path, labels: Path | None) -> list[np.datetime64]:
    """The labelled anomaly timestamps of ``data`` in NAB's combined_labels.json, if any.

    NAB's layout is ``<nab>/data/<category>/<file>.csv`` with the labels in
    ``<nab>/labels``; the key is ``<category>/<file>.csv``.
    """
    data = data.resolve()
    key = f"{data.parent.name}/{data.name}"
    if labels is None:
        if len(data.parents) < 3 or data.parents[1].name != "data":
            return []
        labels = data.parents[2] / "labels" / "combined_labels.json"
    if not labels.is_file():
        return []
    try:
        table = json.loads(labels.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{labels} is not valid JSON: {exc}") from exc
    return [np.datetime64(t.replace(" ", "T")[:19]) for t in table.get(key, [])]


def calibration_rows(scores: np.ndarray, total: int = 2048, top: int = 64) -> np.ndarray:
    """Windows kept for quantization and parity: the highest-scored ones plus an even spread.

    The top-scored windows make export's parity check test decisions on
    both sides of the threshold, not only on normal windows.
    """
    n = len(scores)
    if n <= total:
        return np.arange(n)
    best = np.argsort(-scores, kind="stable")[:top]
    spread = np.linspace(0, n - 1, total - top).astype(int)
    return np.unique(np.concatenate([best, spread]))


@click.command("deepant")
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV with header timestamp,value (a NAB series, e.g. realTraffic/TravelTime_451.csv).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("deepant.ckpt"),
              show_default=True, help="Checkpoint to write; export it with 'edgewatch export onnx'.")
@click.option("--epochs", default=30, show_default=True, help="Training epochs (DeepAnt used 30).")
@click.option("--context", default=10, show_default=True, help="Past steps the forecaster sees.")
@click.option("--horizon", default=1, show_default=True, help="Steps forecast (p_w).")
@click.option("--sigmas", default=3.0, show_default=True,
              help="Threshold = mean + SIGMAS*std of the training-series scores.")
@click.option("--top", default=10, show_default=True, help="How many of the most anomalous timestamps to list.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="NAB combined_labels.json (found next to a NAB data folder by default).")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the weight initialisation and the batch shuffling (random, NumPy and torch).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(data: Path, out: Path, epochs: int, context: int, horizon: int, sigmas: float, top: int,
            labels: Path | None, seed: int, quiet: bool) -> None:
    """Train DeepAnt on one series, flag the points it forecasts worst, save a checkpoint.

    The model trains on the series it scores (unsupervised). The threshold
    is mean + k*std of those scores (k = --sigmas); the command prints the
    most anomalous timestamps and checks each labelled NAB anomaly.
    """
    from edgewatch.data.nab import read_series
    from edgewatch.models.deepant import DeepAntConfig
    from edgewatch.train.checkpoint import save_checkpoint
    from edgewatch.train.deepant import default_train_config, train_deepant

    timestamps, values = read_series(data)
    if len(values) < context + horizon + 1:
        raise BadInput(f"{data} has {len(values)} rows: too few for context {context} + horizon {horizon}")
    run = train_deepant(values, DeepAntConfig(context=context, horizon=horizon),
                        default_train_config(epochs=epochs, seed=seed, progress=not quiet),
                        sigmas=sigmas, trained_on={"data": data.name, "seed": seed})
    first = run.first_scored_row
    flagged = run.flagged_rows()
    click.echo(f"trained {run.train_result.epochs_run} epochs in {run.train_result.seconds:.1f} s, "
               f"final L1 loss {run.train_result.train_loss[-1]:.4f}")
    click.echo(f"threshold {run.threshold:.4f} ({run.threshold_method})")
    click.echo(f"flagged {len(flagged)} of {len(run.scores)} scored points")
    click.echo(f"\ntop {top} most anomalous timestamps:")
    click.echo(f"{'rank':>4}  {'timestamp':19}  {'value':>10}  {'score':>8}  flagged")
    for rank, i in enumerate(np.argsort(-run.scores, kind="stable")[:top], 1):
        row = i + first
        mark = "yes" if run.scores[i] > run.threshold else "no"
        click.echo(f"{rank:>4}  {str(timestamps[row]).replace('T', ' '):19}  {values[row]:>10g}  "
                   f"{run.scores[i]:>8.4f}  {mark}")
    anomalies = known_anomalies(data, labels)
    if anomalies:
        click.echo("\nlabelled anomalies (NAB combined_labels.json):")
    order = np.argsort(-run.scores, kind="stable")
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(1, len(order) + 1)
    for stamp in anomalies:
        rows = np.flatnonzero(timestamps == stamp)
        if not rows.size or rows[0] < first:
            click.echo(f"  {str(stamp).replace('T', ' ')}: not scored (outside the series or in the first "
                       f"{first} rows)")
            continue
        i = rows[0] - first
        verdict = "FLAGGED" if run.scores[i] > run.threshold else "not flagged"
        click.echo(f"  {str(stamp).replace('T', ' ')}: score {run.scores[i]:.4f}, rank {rank_of[i]} of "
                   f"{len(run.scores)}, {verdict} at threshold {run.threshold:.4f}")
    calibration = run.windows[calibration_rows(run.scores)]
    save_checkpoint(out, run.card_fields["family"], run.model_config.to_dict(), run.scorer.state_dict(),
                    run.card_fields, calibration=calibration)
    click.echo(f"\ncheckpoint written to {out}; export with: edgewatch export onnx {out}")
