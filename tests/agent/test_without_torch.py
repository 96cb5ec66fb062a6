"""The agent runs where torch is not installed.

Here a subprocess in which ``import torch`` (and ``import onnx``) fails runs
``edgewatch agent run`` end to end; tests/system/test_install.py installs the built
wheel with only the base dependencies into a fresh virtualenv and runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.modelkit import make_card, write_model

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'onnxscript', 'sklearn', 'matplotlib'):
            raise ImportError(f'{name} is blocked in this test')
        return None
sys.meta_path.insert(0, _Block())
from edgewatch.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'sklearn', 'matplotlib'))
    sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')
    raise
"""


def _replay_csv(path: Path) -> Path:
    rows = ["timestamp,a,b,c,d"] + [f"{1000 + i},0.5,0.5,{2.0 if 40 <= i < 50 else 0.5},0.5" for i in range(100)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_agent_runs_with_torch_blocked(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    data = _replay_csv(tmp_path / "r.csv")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, "agent", "run", "--model", str(model),
         "--source", f"replay:{data}", "--stride", "1", "--sink", "stdout", "--sink", f"jsonl:{tmp_path / 'a.jsonl'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr  # no heavy module got imported
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[0]["top_features"][0]["feature"] == "c"
    assert (tmp_path / "a.jsonl").read_text().count("\n") == 2


def test_signed_models_verify_with_torch_and_onnx_blocked(tmp_path: Path) -> None:
    from edgewatch.agent.lifecycle.signing import generate_keypair, load_private_key, sign_bytes

    generate_keypair(tmp_path / "k")
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    signed = tmp_path / "s.onnx"
    signed.write_bytes(sign_bytes(model.read_bytes(), load_private_key(tmp_path / "k"), signer="ci"))
    data = _replay_csv(tmp_path / "r.csv")
    for path, code in ((signed, 0), (model, 3)):
        for args in (["model", "verify", str(path)], ["agent", "run", "--model", str(path), "--source",
                                                       f"replay:{data}", "--stride", "1", "-q"]):
            proc = subprocess.run([sys.executable, "-c", BLOCKER, *args, "--trust-key", str(tmp_path / "k.pub")],
                                  capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert proc.returncode == code, (args, proc.stderr)
            assert "HEAVY=\n" in proc.stderr, proc.stderr
            if code:
                assert "is not signed" in proc.stderr


def test_cryptography_is_needed_only_with_trust_keys(tmp_path: Path) -> None:
    blocker = BLOCKER.replace("'matplotlib')", "'matplotlib', 'cryptography')", 1)
    assert blocker != BLOCKER
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    (tmp_path / "k.pub").write_text("not needed: the import fails first\n")
    run = [sys.executable, "-c", blocker, "agent", "run", "--model", str(model), "--source",
           f"replay:{_replay_csv(tmp_path / 'r.csv')}", "--stride", "1", "-q"]
    plain = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    trusting = subprocess.run(run + ["--trust-key", str(tmp_path / "k.pub")], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
    assert trusting.returncode == 6, trusting.stderr
    assert "pip install -e '" in trusting.stderr and "[trust]'" in trusting.stderr  # the checkout, not PyPI
