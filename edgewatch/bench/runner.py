"""Running the benchmark suites and writing the report (what ``edgewatch bench`` does).

The suites are pytest-benchmark files in the repository's ``benchmarks/``
folder; they run in a child pytest process (so the engines and the agent
are timed in a clean interpreter, not inside the CLI's), write
pytest-benchmark's JSON, and :func:`edgewatch.bench.report.write_report`
turns it into the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgewatch.errors import EdgewatchError


@dataclass
class BenchConfig:
    """What to run: ``quick`` shortens every suite (about 3 minutes instead of 10 on 2 cores)."""

    out: Path = Path("bench-results")
    quick: bool = False
    select: str | None = None  # a pytest -k expression
    cache: Path | None = None  # keep exported/trained models here between runs
    suites: Path | None = None  # the benchmarks/ folder; found from the checkout by default


def find_suites(start: Path | None = None) -> Path:
    """The ``benchmarks/`` folder of the edgewatch checkout (next to the package, or under cwd)."""
    candidates = [Path(__file__).resolve().parents[2] / "benchmarks"]
    if start is not None:
        candidates.insert(0, Path(start) / "benchmarks")
    candidates.append(Path.cwd() / "benchmarks")
    for c in candidates:
        if (c / "conftest.py").is_file():
            return c
    raise EdgewatchError("the benchmark suites (benchmarks/) are not here: run 'edgewatch bench' from an "
                         "edgewatch source checkout (they are not part of the installed package)")


def pytest_command(config: BenchConfig, raw_json: Path, suites: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(suites), "-p", "no:cacheprovider", "-q",
           "--benchmark-json", str(raw_json), "--benchmark-timer", "time.process_time", "--benchmark-sort=name", "--benchmark-columns=median,rounds",
           "--benchmark-max-time", "0.2" if config.quick else "1.0",
           "--benchmark-min-rounds", "3" if config.quick else "5", "-o", "timeout=1800"]
    if config.select:
        cmd += ["-k", config.select]
    return cmd


def run_benchmarks(config: BenchConfig) -> dict[str, Path]:
    """Run the suites, then write ``raw.json``, ``results.json``, ``report.md`` and ``bench.png`` to ``out``."""
    from edgewatch.bench.agent_load import machine
    from edgewatch.bench.report import write_report

    suites = config.suites or find_suites()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out.resolve() / "raw.json"
    env = dict(os.environ)
    env["EDGEWATCH_BENCH_QUICK"] = "1" if config.quick else "0"
    if config.cache is not None:
        env["EDGEWATCH_BENCH_CACHE"] = str(Path(config.cache).resolve())
    env.setdefault("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(suites.parent), env["PYTHONPATH"]) if p)
    load_at_start = list(os.getloadavg())
    proc = subprocess.run(pytest_command(config, raw, suites), cwd=suites.parent, env=env)
    if not raw.is_file():
        raise EdgewatchError(f"the benchmark suites failed before writing results (pytest exit {proc.returncode})")
    paths = write_report(raw, out, {**machine(), "load_average_start": load_at_start})
    paths["raw"] = raw
    if proc.returncode != 0:
        raise EdgewatchError(f"some benchmarks failed (pytest exit {proc.returncode}); the report in {out} "
                             "covers the ones that ran")
    return paths
