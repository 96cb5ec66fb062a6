"""``edgewatch plot``: a PNG of a recorded agent run, with the ground truth when given."""

from __future__ import annotations

from pathlib import Path

import click

from edgewatch.errors import BadInput

EPILOG = """\b
Examples:
  edgewatch agent run --model models/equipment-lstm-ae.onnx --source ws://127.0.0.1:8765/ \\
      --record-run run.jsonl --duration 120
  edgewatch plot run.jsonl -o run.png --truth truth.jsonl
  edgewatch plot pump-run.jsonl -o pump.png --truth pump-today.csv --truth-column anomaly
  edgewatch plot nab-run.jsonl -o nab.png --nab-windows ../shared/datasets/nab/labels/combined_windows.json \\
      --nab-key realTraffic/TravelTime_451.csv --log-score

\b
The top panel shows the stream's signals, the bottom one a bar per scored window
(green under the threshold, red over it) and the threshold as a dashed line.
Alert episodes are shaded red on both; ground truth is hatched orange, and the
title counts the truth intervals an alert overlapped and the alerts that overlapped none.
"""


@click.command("plot", epilog=EPILOG)
@click.argument("run_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write [default: RUN_FILE with .png].")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The simulator's fault file (edgewatch simulate --truth FILE), or with --truth-column a CSV "
                   "file with a 0/1 column (the file that was replayed).")
@click.option("--truth-column", default=None, metavar="NAME",
              help="Draw the rows of the --truth CSV where this column is 1 (e.g. anomaly).")
@click.option("--truth-time-column", default=None, metavar="NAME",
              help="The time column of the --truth CSV, when it is not found by its name or its dates.")
@click.option("--nab-windows", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="NAB labels/combined_windows.json; needs --nab-key.")
@click.option("--nab-key", default=None, help="The series in the NAB windows file, e.g. realTraffic/TravelTime_451.csv.")
@click.option("--stream", default=None, help="Which stream to draw [default: the first in the run].")
@click.option("--run", "run_number", type=int, default=None,
              help="The agent appends a run at every start: draw only this one (1 the first, -1 the last) "
                   "[default: all, as one timeline, restarts marked].")
@click.option("--last", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Only the last SECONDS of the run.")
@click.option("--log-score", is_flag=True, help="Score axis in log scale (when faults dwarf nominal scores).")
@click.option("--title", default=None, help="Title line above the counts.")
@click.option("--size", nargs=2, type=float, default=(12.0, 6.5), show_default=True, help="Figure size in inches.")
@click.option("--dpi", type=int, default=100, show_default=True)
def plot(run_file: Path, output: Path | None, truth: Path | None, truth_column: str | None,
         truth_time_column: str | None, nab_windows: Path | None, nab_key: str | None,
         stream: str | None, last: float | None, log_score: bool, title: str | None, size: tuple[float, float],
         dpi: int, run_number: int | None = None) -> None:
    """Plot a run recorded with `edgewatch agent run --record-run RUN_FILE`.

    Draws the signals, the score bars against the threshold and the alert
    episodes of one stream, so you can see at a glance whether alerts fell
    on the faults (--truth) or on NAB's labelled windows (--nab-windows).
    """
    from edgewatch.plot.plot_run import PlotOptions, plot_run
    from edgewatch.plot.run_file import read_fault_truth, read_nab_windows, read_run

    if truth and nab_windows:
        raise click.UsageError("give either --truth or --nab-windows, not both")
    if bool(nab_windows) != bool(nab_key):
        raise click.UsageError("--nab-windows and --nab-key go together")
    if (truth_column or truth_time_column) and not truth:
        raise click.UsageError("--truth-column names a column of the --truth CSV file: give --truth DATA.csv too")
    intervals = None
    if truth and truth_column:
        from edgewatch.plot.truth_column import read_truth_column

        intervals = read_truth_column(truth, truth_column, truth_time_column)
    elif truth:
        intervals = read_fault_truth(truth)
    elif nab_windows:
        intervals = read_nab_windows(nab_windows, nab_key or "")
    run = read_run(run_file, run_number)
    if run.skipped_lines:
        click.echo(f"note: skipped {run.skipped_lines} unreadable line(s) (a run cut short?)", err=True)
    out = output or run_file.with_suffix(".png")
    if out.suffix.lower() != ".png":
        raise BadInput(f"the output must be a .png file, got {out}")
    found = plot_run(run, out, intervals, PlotOptions(stream=stream, last=last, log_score=log_score,
                                                     width=size[0], height=size[1], dpi=dpi, title=title))
    msg = f"wrote {out}"
    if found is not None:
        msg += (f" (truth caught {found.caught}/{found.truth}, {found.episodes} alert episode(s), "
                f"{found.false_episodes} overlapping no truth)")
    click.echo(msg)
