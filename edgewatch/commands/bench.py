"""``edgewatch bench``: run the benchmarks and write the report."""

from __future__ import annotations

from pathlib import Path

import click

EPILOG = """\b
Examples:
  edgewatch bench --quick                      # about 3 minutes on 2 cores
  edgewatch bench --out docs/bench             # the full run (about 10 minutes)
  edgewatch bench -k "engine or agreement"     # some suites only
  edgewatch bench --report-only bench-results/raw.json

\b
Writes to --out: raw.json (pytest-benchmark), results.json (every figure),
report.md (targets, engines, agent throughput, streams per core, memory,
message-to-alert latency, int8/fp32 agreement, where the time goes) and
bench.png (per-window latency by engine). Needs a source checkout (the
suites live in benchmarks/) and the [train] and [test] extras.
"""


@click.command("bench", epilog=EPILOG)
@click.option("--quick", is_flag=True, help="Shorter runs of every suite (CI-sized, noisier).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Folder for raw.json, results.json, report.md and bench.png.")
@click.option("-k", "select", default=None, help="Only the benchmarks matching this pytest -k expression.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the exported and trained benchmark models here, to reuse them in the next run.")
@click.option("--report-only", "report_only", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Do not run anything: rewrite the report from this raw.json.")
def bench(quick: bool, out: Path, select: str | None, cache: Path | None, report_only: Path | None) -> None:
    """Benchmark the engines and the agent against real-time rates and write a report.

    PyTorch eager vs ONNX Runtime fp32 vs int8 for every family (batch 1 and
    64), messages per second through the agent for 1 and 100 streams, 20 Hz
    streams per core, the agent's resident memory, message-to-alert latency
    over loopback websocket, and int8/fp32 decision agreement. Every engine
    runs on one thread; figures that matter are ratios from the same run.
    """
    from edgewatch.bench.agent_load import machine
    from edgewatch.bench.report import write_report
    from edgewatch.bench.runner import BenchConfig, run_benchmarks

    if report_only is not None:
        paths = write_report(report_only, out, machine())
    else:
        paths = run_benchmarks(BenchConfig(out=out, quick=quick, select=select, cache=cache))
    for kind, path in paths.items():
        click.echo(f"{kind:>8}: {path}")
