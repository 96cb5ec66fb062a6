"""``edgewatch fit`` tells the stages of a long fit on stderr and keeps stdout the report: a historian export of
a million values (rows x tags), in the default form as the README runs it (torch blocked, as on an edge box);
a short fit tells nothing but its report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgewatch.fit.pipeline import LONG_FIT_VALUES, LONG_READ_BYTES, FitOptions, Family, fit_model
from tests.fit.test_fit_drift import run as edgewatch  # edgewatch ARGS as on an edge box (torch blocked)
from tests.fit.test_plant_kinds import _pump_motor, _write
from tests.fit.test_wide_export import write_wide

TAGS, ROWS = 120, 10_000  # 121 features (the tags and a spare channel) x 10,000 rows: 1.2 million values, 11 MB

STAGES = ["reading 1 file (", "screening 121 features of 10,000 rows ...", "looking for operating points ...",
          "fitting pca (", "checking it on the held-out last quarter (2,500 rows) ...",
          "writing wide.onnx, its scores checked against ONNX Runtime ..."]


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = write_wide(tmp_path_factory.mktemp("progress") / "wide.csv", tags=TAGS, rows=ROWS)
    assert TAGS * ROWS >= LONG_FIT_VALUES and path.stat().st_size >= LONG_READ_BYTES  # the sizes that are told
    return path


def _progress(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line != "HEAVY="]  # the torch blocker's own line


def test_a_long_fit_tells_its_stages_on_stderr_in_order_and_stdout_holds_only_the_report(wide: Path) -> None:
    proc = edgewatch(wide.parent, "fit", "wide.csv", "-o", "wide.onnx")
    told = _progress(proc.stderr)
    at = [next((i for i, line in enumerate(told) if line.startswith(stage)), -1) for stage in STAGES]
    assert -1 not in at and at == sorted(at), told
    assert all(len(line) < 100 for line in told), told  # short lines, not a second report
    report = proc.stdout.splitlines()
    assert report[0].startswith("read      wide.csv: 10,000 rows") and report[-1].startswith("wrote     wide.onnx")
    assert not set(told) & set(report), proc.stdout


def test_the_report_on_stdout_is_the_report_the_fit_returns(wide: Path, tmp_path: Path) -> None:
    """Line for line, with the stages told on stderr beside it (``--family pca``: the same fit in this process,
    where torch is not blocked)."""
    proc = edgewatch(wide.parent, "fit", "wide.csv", "-o", "cli.onnx", "--family", "pca")
    assert len(_progress(proc.stderr)) >= len(STAGES), proc.stderr
    echoed: list[str] = []
    told: list[str] = []
    fit_model([wide], wide.parent / "api.onnx", FitOptions(family=Family.PCA), echo=echoed.append,
              progress=told.append)
    assert [line.replace("api.onnx", "cli.onnx") for line in told] == _progress(proc.stderr)
    same = [line.replace("api.onnx", "cli.onnx") for line in echoed]
    got = proc.stdout.splitlines()
    assert got[:-1] == same[:-1]  # all but the last line: 'wrote PATH (N bytes) in N s'
    assert got[-1].startswith("wrote     cli.onnx (") and got[-1].split(" (")[1].split(")")[0] == \
        same[-1].split(" (")[1].split(")")[0]
    assert (wide.parent / "cli.onnx").read_bytes() == (wide.parent / "api.onnx").read_bytes()


def test_a_short_fit_tells_nothing_but_its_report(tmp_path: Path) -> None:
    """Under a million values a fit ends within a second or two: no progress line pushes the report up."""
    _write(tmp_path / "m.csv", _pump_motor(np.random.default_rng(11), 4800), 1.0)
    proc = edgewatch(tmp_path, "fit", "m.csv", "-o", "m.onnx")
    assert _progress(proc.stderr) == [], proc.stderr
    assert proc.stdout.splitlines()[0].startswith("read      m.csv: 4,800 rows")


def test_quiet_tells_no_stage(wide: Path) -> None:
    proc = edgewatch(wide.parent, "fit", "wide.csv", "-o", "quiet.onnx", "-q")
    assert not [line for line in _progress(proc.stderr) if not line.startswith("WARNING ")], proc.stderr
    assert proc.stdout.startswith("wrote quiet.onnx"), proc.stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
