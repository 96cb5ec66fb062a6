"""``edgewatch fit DATA... -o MODEL.onnx``: normal operation in, a checked (and signed) model file out."""

from __future__ import annotations

from pathlib import Path

import click

from edgewatch.fit.normal_data import Fill
from edgewatch.fit.pipeline import Family
from edgewatch.fit.screening import Drifting

EPILOG = """\b
Examples:
  edgewatch fit pump-normal.csv -o pump.onnx
  edgewatch fit exports/ -o pump.onnx --key release.key
  edgewatch fit line3.csv --time-column "Time Stamp" --ignore Setpoint -o line3.onnx
  edgewatch fit flows-lph.csv --decimal , -o flows.onnx     (1.205 is 1205 there)
  edgewatch agent run --model pump.onnx --source replay:pump-today.csv
"""


@click.command("fit", epilog=EPILOG)
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("model.onnx"),
              show_default=True, help="The model file to write (for 'edgewatch agent run --model').")
@click.option("--time-column", default=None, metavar="NAME",
              help="The time column, when it is not found by its name (timestamp, time, ts, datetime, date) or "
                   "its dates.")
@click.option("--decimal", type=click.Choice([".", ","]), default=None,
              help="The decimal mark of the files' numbers, for a file whose numbers cannot tell (only 1.234: a "
                   "decimal, or a thousand?); the other mark then groups thousands. Default: found from the file.")
@click.option("--columns", default=None, metavar="A,B,...",
              help="Only these columns are features (comma-separated). Default: every numeric column.")
@click.option("--ignore", multiple=True, metavar="COLUMN", help="A column that is not a feature (repeatable).")
@click.option("--fill", type=click.Choice([f.value for f in Fill]), default=Fill.LAST.value, show_default=True,
              help="A blank or NaN cell: take the last value of its column, or drop its row.")
@click.option("--drifting", type=click.Choice([d.value for d in Drifting]), default=Drifting.RATE.value,
              show_default=True, help="A feature whose level drifts through the normal data (a temperature "
                                      "warming up): score its rate, leave it out, or keep its level.")
@click.option("--window", type=click.IntRange(min=3), default=None,
              help="Rows per window (default: 10, fewer for short data).")
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Only the first ROWS rows of each file are normal operation (e.g. SKAB's 400).")
@click.option("--family", type=click.Choice([f.value for f in Family]), default=Family.AUTO.value, show_default=True,
              help="auto: pca, or conv1d-ae when torch is installed, the data has 5,000 rows or more and it is "
                   "measurably better on the held-out part; one feature gets the univariate detector.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign the file with this private key ('edgewatch model keygen'); agents started with "
                   "--trust-key run only signed files.")
@click.option("--signer", default=None, help="Who signs, as agents will show it (default user@host).")
@click.option("-q", "--quiet", is_flag=True,
              help="Only the line saying what was written (no report, no progress lines on stderr).")
def command(data: tuple[Path, ...], out: Path, time_column: str | None, decimal: str | None, columns: str | None,
            ignore: tuple[str, ...], fill: str, drifting: str, window: int | None, rows: int | None, family: str,
            key: Path | None, signer: str | None, quiet: bool) -> None:
    """Fit a model of normal operation from CSV files (or folders of them) and write a checked model file.

    DATA is what the machine does when nothing is wrong: one or more CSV
    files exported from a historian, a SCADA or a logger, in any order of
    columns. The separator, decimal mark and time column are found from the
    file (--decimal says the mark when its numbers cannot tell); text columns are left out; blank cells are filled from the last
    value. Features whose level drifts through the data are scored by their
    rate. The window, threshold and debounce follow from the data by fixed
    rules; the last quarter of the rows is held out and scored by a model of
    the rest, as the agent would, to estimate the false episodes a day. The
    report says what the model uses, what it learnt and what it cannot see.
    Runs on the base install (no torch).
    """
    from edgewatch.fit.pipeline import FitOptions, fit_model

    options = FitOptions(time_column=time_column,
                         columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
                         ignore=list(ignore), fill=Fill(fill), drifting=Drifting(drifting), window=window,
                         rows=rows, family=Family(family), key=key, signer=signer, decimal=decimal)
    report = fit_model(list(data), out, options, echo=None if quiet else click.echo,
                       progress=None if quiet else _progress)
    if quiet:
        click.echo(f"wrote {report.out} ({report.bytes:,} bytes) in {report.elapsed:.1f} s")
    for warning in report.warnings:
        if quiet:
            click.echo(f"WARNING {warning}", err=True)


def _progress(line: str) -> None:
    """A stage of a long fit, on stderr: stdout is the report, which a user may pipe or keep."""
    click.echo(line, err=True)
