"""The agent's load-time isolation check (edgewatch/agent/isolation.py), on real int8 files.

A tiny LSTM autoencoder is trained for seconds and exported twice from the
same weights: in the sentinel int8 form (isolated) and in plain dynamic
int8 (ONNX Runtime takes its ranges from each call: batch-dependent). The
agent must run the first and refuse the second, at start (exit 3) and on a
swap (model_refused), on this machine's int8 kernels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgewatch.agent.engine import Agent, AgentOptions  # noqa: E402
from edgewatch.agent.isolation import MAX_REL_DIFF, check_isolation, int8_kernel_path  # noqa: E402
from edgewatch.agent.model import ScoringModel, file_sha256  # noqa: E402
from edgewatch.agent.sinks import MemorySink  # noqa: E402
from edgewatch.agent.sources import ReplaySource  # noqa: E402
from edgewatch.agent.lifecycle.accept import Gate  # noqa: E402
from edgewatch.agent.lifecycle.file_watch import ModelFileWatcher  # noqa: E402
from edgewatch.contract import Quantization  # noqa: E402
from edgewatch.errors import BadModelFile  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
FEATURES = ["cpu", "memory", "traffic", "fan"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgewatch.export.onnx import export_model
    from edgewatch.models import family_module
    from edgewatch.train.checkpoint import card_from_fields, load_checkpoint
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.lstm_ae import LstmAeConfig, train_lstm_ae

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("isolation")
    t = np.arange(1500)[:, None]
    values = (0.5 + 0.35 * np.sin(2 * np.pi * t / 40 + np.arange(4))
              + np.random.default_rng(0).normal(0, 0.01, (1500, 4))).clip(0, 1).astype(np.float32)
    cfg = LstmAeConfig(window=10, hidden=24, latent=8, n_export_samples=256,
                       train=TrainConfig(epochs=4, batch_size=32, patience=0, progress=False, seed=0))
    ckpt = load_checkpoint(train_lstm_ae(values, FEATURES, cfg, d / "m.pt", source="sines").checkpoint)
    scorer = family_module(ckpt.family).build_scorer(ckpt.config, ckpt.state_dict)
    out = {}
    for name, q in (("sentinel", Quantization.SENTINEL_INT8), ("dynamic", Quantization.DYNAMIC_INT8)):
        out[name] = export_model(scorer, card_from_fields(ckpt.card_fields, q), d / f"{name}.onnx", quantization=q,
                                 calibration=ckpt.calibration, min_agreement=0.0,
                                 check_invariance=q is not Quantization.DYNAMIC_INT8).path
    return out


def test_isolated_files_pass_in_a_few_calls_and_the_check_names_the_kernel_path(files: dict[str, Path]) -> None:
    for path in (files["sentinel"], ROOT / "models" / "equipment-lstm-ae.onnx", ROOT / "models" / "nab-best.onnx"):
        result = check_isolation(ScoringModel(path))
        assert result.max_rel_diff <= MAX_REL_DIFF, path
        assert result.calls == 7 and result.windows == 57 and result.cpu_ms > 0
        assert result.int8_path == int8_kernel_path() != "unknown"


def test_a_batch_dependent_file_is_refused_with_the_reason(files: dict[str, Path]) -> None:
    with pytest.raises(BadModelFile, match="changes with the other windows of its ONNX Runtime call on this machine"):
        check_isolation(ScoringModel(files["dynamic"]))


def test_the_agent_refuses_it_at_start_with_exit_3(files: dict[str, Path], tmp_path: Path) -> None:
    lines = "".join(json.dumps([0.5, 0.5, 0.5, 0.5]) + "\n" for _ in range(30))
    for name, code in (("dynamic", 3), ("sentinel", 0)):  # the default form: no flags but the model
        proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(files[name]),
                               "--source", "stdin", "--sink", "jsonl:a.jsonl"], input=lines, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == code, proc.stderr[-2000:]
        if code:
            assert "changes with the other windows" in proc.stderr and "int8 kernel path" in proc.stderr
            assert "Traceback" not in proc.stderr


def test_a_swap_to_it_is_refused_and_the_running_model_keeps_scoring(files: dict[str, Path], tmp_path: Path) -> None:
    live = tmp_path / "live.onnx"
    live.write_bytes(files["sentinel"].read_bytes())
    first = file_sha256(live)
    sink = MemorySink()
    agent = Agent(ScoringModel(live), [sink], AgentOptions(drift_every=0))
    csv = tmp_path / "loop.csv"
    csv.write_text(",".join(FEATURES) + "\n" + "0.5,0.4,0.6,0.5\n" * 200)
    agent.add_source(ReplaySource(csv, FEATURES, rate=3000, loop=True))
    watcher = ModelFileWatcher(agent, live, Gate.for_agent(agent), interval=0.05)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        staged = live.with_name("live.new")
        staged.write_bytes(files["dynamic"].read_bytes())
        staged.replace(live)
        watcher.check()
        assert watcher.refused == 1
        windows = agent.summary.windows
        assert wait_until(lambda: agent.summary.windows > windows + 50)  # still scoring
    finally:
        watcher.close()
        agent.request_stop()
        runner.join(20)
    refused = [e for e in sink.events if e["event"] == "model_refused"]
    assert len(refused) == 1 and "changes with the other windows" in refused[0]["reason"]
    assert agent.model.sha256 == first


AMX = "flags\t\t: fpu sse4_1 avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8\n"


@pytest.mark.parametrize(("cpuinfo", "path"), [
    (AMX, "AMX"),
    (AMX.replace(" amx_bf16 amx_tile amx_int8", ""), "VNNI"),
    ("flags\t: fpu sse4_1 avx2 avx_vnni\n", "VNNI"),
    ("flags\t: fpu sse4_1 avx avx2 fma\n", "AVX2"),
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\n", "NEON dot product"),
    ("Features\t: fp asimd\n", "NEON"),
    ("", "unknown"),
])
def test_the_int8_kernel_path_is_read_from_the_cpu_flags(cpuinfo: str, path: str) -> None:
    assert int8_kernel_path(cpuinfo) == path
