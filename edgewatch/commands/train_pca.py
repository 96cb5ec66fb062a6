"""``edgewatch train pca``: the NumPy-only T²+Q family, straight to a model file (no torch, no checkpoint)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from edgewatch.numpy_models.pca import PcaConfig

_D = PcaConfig()


@click.command("pca")
@click.option("--data", "data", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Normal rows: a CSV with a header (separator, decimal mark and time column are found; text "
                   "columns are left out, blanks take the last value), e.g. a SKAB file as it is. 'edgewatch fit' "
                   "chooses every setting below from the data.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("pca.onnx"),
              show_default=True, help="The model file to write (ready for 'edgewatch agent run --model').")
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Train on the first ROWS rows only (SKAB's protocol: 400). Default: all rows.")
@click.option("--window", default=_D.window, show_default=True, type=click.IntRange(min=1),
              help="Rows averaged before T²+Q is taken.")
@click.option("--variance", default=_D.variance, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Share of the variance the T² components hold; the rest is Q.")
@click.option("--quantile", default=_D.quantile, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Quantile of the training windows' scores the threshold is built on.")
@click.option("--factor", default=_D.factor, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Threshold = FACTOR x that quantile.")
@click.option("--ignore", multiple=True, metavar="FEATURE",
              help="A feature left out of the score (repeatable), e.g. a temperature slower than the training span.")
@click.option("--k", "k", default=_D.k, show_default=True, type=click.IntRange(min=1),
              help="The card's decision: an episode starts when K of the last N windows are over.")
@click.option("--n", "n", default=_D.n, show_default=True, type=click.IntRange(min=1),
              help="See --k; without --close-after it closes when none of the last N are over.")
@click.option("--close-after", "close_after", default=None, type=click.IntRange(min=1), metavar="M",
              help="The card's decision: an episode ends after M scored windows in a row under the threshold "
                   "(edgewatch fit chooses a minute's worth).")
def command(data: Path, out: Path, rows: int | None, window: int, variance: float, quantile: float, factor: float,
            ignore: tuple[str, ...], k: int, n: int, close_after: int | None) -> None:
    """Fit PCA T²+Q on normal rows with NumPy and write the ONNX model file directly.

    Runs on the base install (no torch, no onnx package): the graph is
    written by edgewatch itself and checked with ONNX Runtime before it is
    kept.
    """
    from edgewatch.train.csv_series import read_series_csv
    from edgewatch.numpy_models.pca import train_pca

    started = time.perf_counter()
    series = read_series_csv(data, rows)
    for note in series.notes:
        click.echo(f"note: {note}", err=True)
    cfg = PcaConfig(window=window, variance=variance, quantile=quantile, factor=factor, ignore=list(ignore), k=k, n=n,
                    m=close_after)
    fit = train_pca(series.values, series.features, out, cfg, trained_on={"data": str(data)})
    click.echo(f"fitted pca on {fit.rows} rows x {len(fit.features)} features: {fit.components} T² components, "
               f"window {window}; threshold {fit.threshold:.4g} ({factor:g} x the {quantile:g} quantile)")
    click.echo(f"wrote {out} ({out.stat().st_size:,} bytes) in {time.perf_counter() - started:.2f} s")
