"""Bad model files are refused at start by `edgewatch agent run` with the reason and the documented exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgewatch.agent.model import file_sha256
from tests.modelkit import make_card, write_model

ROOT = Path(__file__).resolve().parents[3]


def _csv(path: Path, columns: list[str], rows: int = 30) -> Path:
    path.write_text(",".join(columns) + "\n" + "".join(",".join(["0.5"] * len(columns)) + "\n" for _ in range(rows)))
    return path


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--sink", "stdout", "-q", *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_model(tmp_path / "good.onnx", make_card(window=5, threshold=0.1))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return _csv(tmp_path / "ok.csv", ["a", "b", "c", "d"])


def test_not_an_edgewatch_model(tmp_path: Path, data: Path) -> None:
    plain = write_model(tmp_path / "plain.onnx", props={"producer.note": "someone else's"})
    proc = _run(tmp_path, "--model", str(plain), "--source", f"replay:{data}")
    assert proc.returncode == 3, proc.stderr
    assert "not an edgewatch model" in proc.stderr


def test_truncated_model(tmp_path: Path, good: Path, data: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(good.read_bytes()[:200])
    proc = _run(tmp_path, "--model", str(bad), "--source", f"replay:{data}")
    assert proc.returncode == 3 and "truncated or corrupt" in proc.stderr, proc.stderr


def test_random_bytes_as_model(tmp_path: Path, data: Path) -> None:
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(bytes(range(256)) * 40)
    proc = _run(tmp_path, "--model", str(bad), "--source", f"replay:{data}")
    assert proc.returncode == 3, proc.stderr


def test_feature_count_that_does_not_fit_the_replay(tmp_path: Path, good: Path) -> None:
    three = _csv(tmp_path / "three.csv", ["x", "y", "z"])
    proc = _run(tmp_path, "--model", str(good), "--source", f"replay:{three}")
    assert proc.returncode == 4 and "needs 4 features" in proc.stderr, proc.stderr


def test_sha256_pin(tmp_path: Path, good: Path, data: Path) -> None:
    wrong = _run(tmp_path, "--model", str(good), "--model-sha256", "ab" * 32, "--source", f"replay:{data}")
    assert wrong.returncode == 3 and "refusing to load it" in wrong.stderr, wrong.stderr
    right = _run(tmp_path, "--model", str(good), "--model-sha256", file_sha256(good), "--source", f"replay:{data}")
    assert right.returncode == 0, right.stderr


def test_live_stream_of_wrong_arity_is_bad_input_not_fatal(tmp_path: Path, good: Path) -> None:
    lines = "\n".join(["[0.5,0.5,0.5]"] * 20 + ["[0.5,0.5,0.5,0.5]"] * 10) + "\n"
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(good),
                           "--source", "stdin", "--summary-json", "s.json"], input=lines, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = (tmp_path / "s.json").read_text()
    assert '"wrong_arity": 20' in summary and '"windows": 6' in summary
