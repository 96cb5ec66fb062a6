"""The agent on arm64 (qemu user-mode emulation) gives the events it gives on x86.

The same command, `edgewatch agent run` with the shipped S0 model on a
replay with four injected faults, runs once on the host and once in an
arm64 Python from Debian's packages with PyPI's aarch64 wheels (see
tests/arm64_root.py; set up once, then cached). Events must be identical
(ids, seqs, episodes) and every window's score equal to float rounding.
`make test-arm64` runs this file alone; its timings go to the test report
(`-rA`).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.isolation import MAX_REL_DIFF
from edgewatch.agent.model import ScoringModel
from tests.arm64_root import QEMU, Arm64Python, SetupFailed, ensure_arm64_python

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "equipment-lstm-ae.onnx"
FAULTS = ("spike@10", "level_shift@20:4", "frozen@35:6:cpu", "overload@50:3")
ROWS = 1200  # 60 s at 20 Hz: emulation runs about 25x slower than the host
# The same ONNX graph on two CPUs: fp32 and static (fixed-scale) int8 kernels differ in summation
# order and FMA use only (the fp32 S0 model: 1e-5 measured). Dynamic int8 is not batch-invariant:
# its activation scale is picked per call from whichever windows share it, so its scores move from
# run to run on one CPU already (0.1 % on x86 alone, up to 12 % x86 vs arm64 on a normal window):
# for it only the events are compared, and the test reports the score check as an expected failure.
SCORE_RTOL = 1e-4
BATCH_INVARIANT = {"none", "static-qdq-int8", "sentinel-int8"}
SCORE_ATOL = 1e-7
# An int8 LSTM's integer sums are the same on both CPUs (7-bit weights: no pair overflows x86's 16-bit
# lanes), but its activations are quantized again at every step from fp32 values the two CPUs round
# differently, so a step lands one int8 step apart now and then: 0.12 % at most on this test's windows
# (6.1 % with 8-bit weights). The events must still be identical.
INT8_SCORE_RTOL = {"sentinel-int8": 1e-2}
# the agent runs the load-time isolation check when it builds its runtime (a failure would exit 3); the
# script also runs it once on its own first, to report what it measured on arm64's kernels
ON_ARM64 = ("import dataclasses, json, platform, sys\n"
            "assert platform.machine() == 'aarch64', platform.machine()\n"
            "sys.stderr.write('machine ' + platform.machine() + '\\n')\n"
            "from edgewatch.agent.isolation import check_isolation\n"
            "from edgewatch.agent.model import ScoringModel\n"
            "check = check_isolation(ScoringModel(sys.argv[sys.argv.index('--model') + 1]))\n"
            "sys.stderr.write('isolation ' + json.dumps(dataclasses.asdict(check)) + '\\n')\n"
            "from edgewatch.cli import main\n"
            "main(sys.argv[1:], prog_name='edgewatch')\n")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arm64() -> Arm64Python:
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (make system-deps installs qemu-user-static)")
    try:
        return ensure_arm64_python()
    except SetupFailed as exc:
        pytest.fail(f"arm64 set-up failed: {exc}")


def _agent_args(run_file: str) -> list[str]:
    return ["agent", "run", "--model", str(MODEL), "--source", "replay:replay.csv", "--agent-id", "arm64-check",
            "--record-run", run_file]


def _scores(run_file: Path) -> tuple[list[int], np.ndarray]:
    rows = [json.loads(line) for line in run_file.read_text().splitlines()]
    windows = [r for r in rows if "w" in r]
    return [r["q"] for r in windows], np.array([r["s"] for r in windows])


def _split(event: dict, feature_errors: bool) -> tuple[dict, list[float]]:
    """The event without its scores (compared exactly) and its scores (compared to rounding).

    Top features are keyed by name: two features whose shares agree to rounding may swap ranks.
    """
    rest = {k: v for k, v in event.items() if k not in ("score", "anomaly_score", "top_features")}
    rest["episode"] = {k: v for k, v in event["episode"].items() if k != "peak_score"}
    top = sorted(event.get("top_features", []), key=lambda f: f["feature"])
    scores = [event["score"], event["anomaly_score"], event["episode"]["peak_score"]]
    if feature_errors:  # near-equal per-feature errors under dynamic int8 swap places between CPUs
        rest["top_features"] = [f["feature"] for f in top]
        scores += [x for f in top for x in (f["error"], f["share"])]
    return rest, scores


def test_agent_on_arm64_gives_the_x86_events(arm64: Arm64Python, tmp_path: Path,
                                             record_property: pytest.RecordProperty) -> None:
    sim = subprocess.run([sys.executable, "-m", "edgewatch.cli", "simulate", "--record", "replay.csv", "--count",
                          str(ROWS), "--seed", "7", "--start-time", "1700000000", "-q",
                          *[a for f in FAULTS for a in ("--fault", f)]],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    x86 = subprocess.run([sys.executable, "-m", "edgewatch.cli", *_agent_args("x86.run.jsonl")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert x86.returncode == 0, x86.stderr
    quantization = ScoringModel(MODEL).card.quantization.value
    exact = quantization in BATCH_INVARIANT
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    arm = subprocess.run(arm64.command("-c", ON_ARM64, *_agent_args("arm64.run.jsonl")), capture_output=True,
                         text=True, timeout=600, cwd=tmp_path, env=arm64.env())
    arm_seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    arm_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    assert arm.returncode == 0, arm.stderr[-3000:]
    assert "machine aarch64" in arm.stderr
    isolation = json.loads(next(x for x in arm.stderr.splitlines() if x.startswith("isolation "))[len("isolation "):])
    assert isolation["max_rel_diff"] <= MAX_REL_DIFF and isolation["windows"] > 0

    x86_events = [json.loads(line) for line in x86.stdout.splitlines()]
    arm_events = [json.loads(line) for line in arm.stdout.splitlines()]
    assert len(x86_events) >= 8 and [e["event"] for e in x86_events].count("start") >= 4
    x86_parts = [_split(e, exact) for e in x86_events]
    arm_parts = [_split(e, exact) for e in arm_events]
    assert [p[0] for p in arm_parts] == [p[0] for p in x86_parts]  # ids, seqs, episodes (and top features when exact)

    x86_q, x86_s = _scores(tmp_path / "x86.run.jsonl")
    arm_q, arm_s = _scores(tmp_path / "arm64.run.jsonl")
    assert arm_q == x86_q and len(x86_q) > ROWS // 4
    rel = np.abs(arm_s - x86_s) / np.maximum(np.abs(x86_s), 1e-12)
    figures = {"setup_s": round(arm64.setup_seconds, 1), "arm64_run_s": round(arm_seconds, 1),
               "arm64_run_cpu_s": round(arm_cpu, 1),
               "rows": ROWS, "windows": len(x86_q), "events": len(x86_events),
               "max_rel_score_diff": float(f"{rel.max():.3g}"), "quantization": quantization,
               "isolation_check": isolation}
    record_property("arm64", json.dumps(figures))
    sys.stderr.write(f"arm64: {json.dumps(figures)}\n")
    if not exact:
        pytest.xfail(f"{quantization} is not batch-invariant: events identical, scores differ by up to "
                     f"{rel.max():.1%}")
    rtol = INT8_SCORE_RTOL.get(quantization, SCORE_RTOL)
    np.testing.assert_allclose(np.concatenate([p[1] for p in arm_parts]),
                               np.concatenate([p[1] for p in x86_parts]), rtol=rtol, atol=SCORE_ATOL)
    np.testing.assert_allclose(arm_s, x86_s, rtol=rtol, atol=SCORE_ATOL)
