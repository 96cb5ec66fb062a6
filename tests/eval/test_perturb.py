"""Perturbed copies of a NAB corpus (labels mapped by timestamp) and the robustness table (``--perturb``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.data.nab import STANDARD_PROFILES, NabFile, load_corpus
from edgewatch.errors import BadInput
from edgewatch.eval.detectors.baselines import NullDetector
from edgewatch.eval.perturb import NAMES, Perturbation, perturb
from edgewatch.eval.robustness import format_robustness, robustness, summary

DATASETS = Path(os.environ.get("EDGEWATCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
NAB = DATASETS / "nab"


def _file(n: int = 4032, windows: tuple[tuple[int, int], ...] = ((2000, 2199),)) -> NabFile:
    """Five-minute rows from midnight, a daily sine with noise, one window."""
    rng = np.random.default_rng(1)
    ts = np.datetime64("2024-01-01T00:00:00") + np.arange(n) * np.timedelta64(300, "s")
    x = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 1, n)
    return NabFile("cat/f.csv", ts, x, list(windows))


def _window_times(f: NabFile) -> list[tuple[np.datetime64, np.datetime64]]:
    return [(f.timestamps[a], f.timestamps[b]) for a, b in f.windows]


def test_hourly_and_x3_average_rows_and_keep_the_windows_in_time() -> None:
    f = _file()
    (h,) = perturb([f], "hourly")
    assert h.key == "cat/f.csv#hourly" and h.category == "cat" and len(h.values) == 4032 // 12
    assert h.values[0] == pytest.approx(f.values[:12].mean())
    (a, b), = h.windows  # the window is 22:40 on day 7 .. 15:15 on day 8: the hours that overlap it
    assert h.timestamps[a] == np.datetime64("2024-01-07T22:00") and h.timestamps[b] == np.datetime64("2024-01-08T15:00")
    (t,) = perturb([f], Perturbation.INTERVAL_X3)
    assert len(t.values) == 1344 and t.windows == [(666, 733)]  # rows 1998-2000 .. 2199-2201 overlap the window


def test_denser_and_quarters_map_windows_by_timestamp() -> None:
    f = _file(n=1000, windows=((100, 119), (600, 699)))
    (d,) = perturb([f], "denser-x4")
    assert len(d.values) == 4 * 999 + 1 and d.windows == [(400, 476), (2400, 2796)]
    for (a, b), (ta, tb) in zip(d.windows, _window_times(f)):
        assert d.timestamps[a] == ta and d.timestamps[b] == tb
    qs = perturb([f], "quarters")
    assert [q.key for q in qs] == [f"cat/f.csv#q{i}" for i in (1, 2, 3, 4)]
    assert sum(len(q.values) for q in qs) == 1000
    assert [q.windows for q in qs] == [[(100, 119)], [], [(100, 199)], []]


def test_value_perturbations_keep_rows_and_labels_and_are_seeded() -> None:
    f = _file()
    for kind in ("daily-cycle", "counts", "level-shifts", "spikes"):
        (g,) = perturb([f], kind)
        (again,) = perturb([f], kind)
        assert np.array_equal(g.timestamps, f.timestamps) and g.windows == f.windows
        assert np.array_equal(g.values, again.values) and not np.array_equal(g.values, f.values), kind
    (c,) = perturb([f], "counts")
    assert np.all(c.values >= 0) and np.all(c.values == np.round(c.values))
    (s,) = perturb([f], "level-shifts")
    steps = np.flatnonzero(np.abs(np.diff(s.values - f.values)) > 1e-9)
    assert len(steps) == 2 and all(not (1800 <= i <= 2800) for i in steps) and steps.min() >= f.probation
    (p,) = perturb([f], "none")
    assert p is f
    with pytest.raises(BadInput, match="unknown perturbation"):
        perturb([f], "upside-down")
    with pytest.raises(BadInput, match="unknown perturbation"):  # refused before the detector runs at all
        robustness([f], STANDARD_PROFILES, NullDetector(), ["none", "upside-down"], progress=False)


def test_robustness_rows_and_summary() -> None:
    rows = robustness([_file()], STANDARD_PROFILES, NullDetector(), ["none", "hourly", "quarters"], progress=False)
    assert [r.perturbation for r in rows] == ["none", "hourly", "quarters"]
    assert [r.files for r in rows] == [1, 1, 4]
    assert all(v == pytest.approx(0.0) for r in rows for v in r.scores.values())  # the null detector: 0
    mean, worst, name = summary(rows)
    assert mean == pytest.approx(0.0) and worst == pytest.approx(0.0) and name in ("hourly", "quarters")
    text = format_robustness(rows, "null")
    assert "mean (perturbed)" in text and "worst (perturbed)" in text and "quarters" in text


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NAB folder holding two short real files with their labels and profiles."""
    if not (NAB / "data").is_dir():
        pytest.skip(f"NAB dataset not found at {NAB}")
    few = ["realTraffic/speed_7578.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]
    root = tmp_path_factory.mktemp("nab")
    for key in few:
        (root / "data" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / key, root / "data" / key)
    (root / "labels").mkdir()
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    (root / "labels" / "combined_windows.json").write_text(json.dumps({k: windows[k] for k in few}))
    shutil.copytree(NAB / "config", root / "config")
    return root


@pytest.mark.needs_datasets
def test_cli_perturb_all_with_the_default_detector(two_files: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(two_files), "--perturb", "all"])
    assert res.exit_code == 0, res.output
    table = res.output.split("NAB score of")[0]
    assert "NAB scores of novelty-levels on perturbed copies" in table
    for name in NAMES:
        assert f"\n{name} " in table
    rows = {ln.split()[0]: [float(v) for v in ln.split()[3:]] for ln in table.splitlines()
            if ln.split() and ln.split()[0] in NAMES}
    assert len(rows) == len(NAMES) and all(len(v) == 3 for v in rows.values())
    assert rows["none"][0] > 50  # the detector catches these files' windows
    assert "total" in res.output  # then the usual table of the unperturbed folder


@pytest.mark.needs_datasets
def test_cli_perturb_one_and_refuses_unknown(two_files: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(two_files), "--detector", "fourth-round",
                                    "--perturb", "counts"])
    assert res.exit_code == 0, res.output
    assert "fourth-round on perturbed copies" in res.output and "\ncounts " in res.output
    assert "\nhourly " not in res.output.split("NAB score of")[0]
    res = CliRunner().invoke(main, ["eval", "nab", "--data", str(two_files), "--perturb", "sideways"])
    assert res.exit_code == 2 and "sideways" in res.output and "level-shifts" in res.output


@pytest.mark.needs_datasets
@pytest.mark.skipif(not (NAB / "data").is_dir(), reason=f"NAB dataset not found at {NAB}")
def test_every_perturbation_keeps_the_windows_of_the_folder() -> None:
    files = load_corpus(NAB)
    for name in NAMES:
        copy = perturb(files, name)
        assert sum(len(f.windows) for f in copy) >= 39, name  # quarters split a few windows in two
        for f in copy:
            assert all(0 <= a <= b < len(f.values) for a, b in f.windows)
