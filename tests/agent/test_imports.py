"""An agent run imports only what its flags use (resident memory, docs/platform.md).

prometheus_client (with http.server), paho (with ssl and urllib.request),
asyncio and hashlib (OpenSSL's libcrypto) cost about 10 MiB of resident
memory together; a replay-to-file agent needs none of them, an agent with
--metrics needs prometheus_client.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.modelkit import make_card, write_model

OPTIONAL = ("prometheus_client", "paho", "asyncio", "http.server", "ssl", "websocket", "hashlib")
RUN = f"""
import sys
from edgewatch.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    print('LOADED=' + ','.join(m for m in {OPTIONAL!r} if m in sys.modules), file=sys.stderr)
    raise
"""


def _run(tmp_path: Path, *extra: str) -> set[str]:
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    rows = ["timestamp,a,b,c,d"] + [f"{1000 + i},0.5,0.5,0.5,0.5" for i in range(50)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    proc = subprocess.run([sys.executable, "-c", RUN, "agent", "run", "--model", str(model), "--source",
                           "replay:r.csv", "--sink", "jsonl:a.jsonl", *extra], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("LOADED="))
    return set(filter(None, line[len("LOADED="):].split(",")))


def test_a_replay_to_a_file_imports_no_network_library(tmp_path: Path) -> None:
    assert _run(tmp_path) == set()


def test_metrics_bring_prometheus_client(tmp_path: Path) -> None:
    assert "prometheus_client" in _run(tmp_path, "--metrics", "127.0.0.1:0")
