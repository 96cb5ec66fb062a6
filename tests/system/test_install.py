"""What `pip install edgewatch` gives a new user, tested from the built wheel, not the checkout.

One wheel is built (`pip wheel .`) and installed with its base dependencies
only into a fresh virtualenv; every check then runs that venv's `edgewatch`
from a folder outside the checkout: the demo with the model the wheel
carries, `agent check`, an agent run with no torch, and the commands whose
extra is missing, which must say which extra (exit 6). The size of the
install is measured and written to the test report (`-rA` shows it) and to
``$EDGEWATCH_INSTALL_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
# The budget for the base install (edgewatch and the agent's dependencies).
BASE_INSTALL_MAX_MIB = 160
PIP_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ""}

pytestmark = pytest.mark.slow


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under ``path`` (symlinks not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages(env_dir: Path) -> Path:
    return next((env_dir / "lib").glob("python3*/site-packages"))


class Installed:
    """A fresh venv with the wheel's base install, and what it measured."""

    def __init__(self, env_dir: Path, empty_bytes: int, wheel: Path) -> None:
        self.env_dir = env_dir
        self.wheel = wheel
        self.site = site_packages(env_dir)
        self.empty_bytes = empty_bytes
        self.total_bytes = tree_bytes(self.site)
        self.by_top = sorted(((tree_bytes(p) if p.is_dir() else p.stat().st_size, p.name)
                              for p in self.site.iterdir()), reverse=True)

    @property
    def install_bytes(self) -> int:
        return self.total_bytes - self.empty_bytes

    def run(self, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.env_dir / "bin" / "edgewatch"), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=PIP_ENV)

    def python(self, code: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.env_dir / "bin" / "python"), "-c", code], capture_output=True, text=True,
                              timeout=120, cwd=cwd, env=PIP_ENV)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    # built from a copy: setuptools' in-tree build/ could carry files deleted since into the wheel
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".benchmarks", ".hypothesis",
        "bench-results", "runs", "out", "spool", "checkpoints"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"),
                            str(src)], capture_output=True, text=True, timeout=600, env=PIP_ENV)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((base / "dist").glob("edgewatch-*.whl"))
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    empty = tree_bytes(site_packages(env_dir))
    install = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600, env=PIP_ENV)
    assert install.returncode == 0, install.stderr[-3000:]
    return Installed(env_dir, empty, wheel)


@pytest.fixture()
def elsewhere(tmp_path: Path) -> Path:
    """A working folder with no models/ in it, outside the checkout."""
    assert not (tmp_path / "models").exists() and ROOT not in tmp_path.parents
    return tmp_path


def test_the_base_install_is_agent_sized(installed: Installed, elsewhere: Path,
                                         record_property: pytest.RecordProperty) -> None:
    absent = installed.python("import importlib.util as u; "
                              "print([m for m in ('torch', 'onnx', 'scipy', 'sklearn', 'matplotlib') "
                              "if u.find_spec(m)])", elsewhere)
    assert absent.stdout.strip() == "[]", "the base install pulled in a heavy library: " + absent.stdout
    figures = {
        "site_packages_mib": round(installed.total_bytes / MIB, 1),
        "venv_bootstrap_mib": round(installed.empty_bytes / MIB, 1),
        "base_install_mib": round(installed.install_bytes / MIB, 1),
        "largest": {name: round(size / MIB, 1) for size, name in installed.by_top[:8]},
    }
    record_property("install_size", json.dumps(figures))
    if os.environ.get("EDGEWATCH_INSTALL_REPORT"):
        Path(os.environ["EDGEWATCH_INSTALL_REPORT"]).write_text(json.dumps(figures, indent=2) + "\n")
    sys.stderr.write(f"install size: {json.dumps(figures)}\n")
    # pip and setuptools come with every venv before anything is installed: the budget is
    # for what installing edgewatch adds
    assert installed.install_bytes <= BASE_INSTALL_MAX_MIB * MIB, figures


def test_demo_runs_from_any_folder_with_the_model_the_wheel_carries(installed: Installed, elsewhere: Path) -> None:
    shipped = installed.site / "edgewatch" / "shipped_models" / "equipment-lstm-ae.onnx"
    assert shipped.is_file() and not shipped.is_symlink()
    assert shipped.read_bytes() == (ROOT / "models" / "equipment-lstm-ae.onnx").read_bytes()
    demo = installed.run("demo", "--rate", "300", "--out", str(elsewhere / "out"), cwd=elsewhere)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert f"model {shipped}" in demo.stdout
    assert "faults injected 6" in demo.stdout
    card = json.loads((elsewhere / "out" / "scorecard.json").read_text())
    assert card["caught"] == 6, card["missed"]


def test_agent_check_and_an_agent_run_need_no_extra(installed: Installed, elsewhere: Path) -> None:
    shipped = installed.site / "edgewatch" / "shipped_models" / "equipment-lstm-ae.onnx"
    check = installed.run("agent", "check", str(shipped), cwd=elsewhere)
    assert check.returncode == 0, check.stderr
    assert "lstm" in check.stdout.lower()
    rows = ["timestamp,cpu,memory,traffic,fan"]
    rows += [f"{1000 + i},0.5,0.5,{0.99 if 300 <= i < 340 else 0.5},0.5" for i in range(600)]
    (elsewhere / "r.csv").write_text("\n".join(rows) + "\n")
    run = installed.run("agent", "run", "--model", str(shipped), "--source", "replay:r.csv", cwd=elsewhere)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(x) for x in run.stdout.splitlines()]
    assert events and events[0]["event"] == "start"


def test_commands_that_need_an_extra_say_which(installed: Installed, elsewhere: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("ref.csv", "cur.csv"):
        rows = ["a,b"] + [f"{x:.4f},{y:.4f}" for x, y in rng.random((50, 2))]
        (elsewhere / name).write_text("\n".join(rows) + "\n")
    drift = installed.run("drift", "--reference", "ref.csv", "--current", "cur.csv", "--classifier", "none",
                          cwd=elsewhere)
    assert drift.returncode == 6, drift.stderr[-2000:]
    assert "pip install" in drift.stderr and "[drift]'" in drift.stderr
    np.save(elsewhere / "img.npy", rng.integers(0, 255, size=(4, 28, 28)).astype(np.uint8))
    corrupt = installed.run("data", "corrupt", "--images", "img.npy", "--corruption", "blur", "-o",
                            str(elsewhere / "mix.npy"), cwd=elsewhere)
    assert corrupt.returncode == 6, corrupt.stderr[-2000:]
    assert "pip install '" in corrupt.stderr and "[images]'" in corrupt.stderr
    metric = installed.python("from edgewatch.errors import MissingExtra\n"
                              "from edgewatch.accuracy import auroc\n"
                              "try:\n    auroc([0.1, 0.9], [0, 1])\n"
                              "except MissingExtra as e:\n    print(e.extra, e)\n", elsewhere)
    assert metric.stdout.startswith("eval "), metric.stderr
    assert "pip install '" in metric.stdout and "[eval]'" in metric.stdout
