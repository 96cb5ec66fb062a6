"""The files a box is set up with (deploy/) are valid: the unit by systemd's own checker, the config by a run.

``systemd-analyze verify`` checks the unit as systemd would load it (keys,
values, the ExecStart binary). It needs the binary to exist, so the check runs
on a copy whose ExecStart points at this environment's ``edgewatch``; without
systemd-analyze the unit is read by a strict INI parser against the keys it
must hold. The example config is used as the README tells: ``edgewatch agent
run --config agent.toml``, with the box's paths overridden on the command line.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "edgewatch-agent.service"
CONFIG = ROOT / "deploy" / "agent.example.toml"
INSTALLED_EXEC = "/opt/edgewatch/venv/bin/edgewatch"


def _edgewatch_script() -> Path:
    script = Path(sys.executable).parent / "edgewatch"
    if not script.exists():
        pytest.skip(f"no edgewatch script beside {sys.executable} (install the package: make venv)")
    return script


def _unit_copy(tmp_path: Path, text: str) -> Path:
    assert INSTALLED_EXEC in text
    path = tmp_path / UNIT.name
    path.write_text(text.replace(INSTALLED_EXEC, str(_edgewatch_script())))
    return path


def _verify(unit: Path) -> list[str]:
    """systemd-analyze's complaints about this unit (lines naming it), [] when it is valid."""
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if unit.name in x]
    return lines if proc.returncode != 0 or lines else []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit_and_refuses_a_broken_one(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert _verify(_unit_copy(tmp_path, text)) == []
    broken = _verify(_unit_copy(tmp_path, text.replace("Restart=on-failure", "Restrat=on-failure")))
    assert any("Restrat" in x for x in broken), broken


def test_the_unit_holds_what_the_readme_says() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ExecStart"] == f"{INSTALLED_EXEC} agent run --config /etc/edgewatch/agent.toml"
    assert service["Type"] == "notify" and service["StateDirectory"] == "edgewatch"
    assert service["ReadWritePaths"] == "/var/lib/edgewatch" and service["DynamicUser"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_example_config_runs_the_agent(tmp_path: Path) -> None:
    rows = ["timestamp,cpu,memory,traffic,fan"]
    rows += [f"{1000 + i},0.5,0.5,{0.99 if 20 <= i < 30 else 0.5},0.5" for i in range(40)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    # the box's paths (model, source, sink, spool) are overridden; everything else comes from the file
    proc = subprocess.run([str(_edgewatch_script()), "agent", "run", "--config", str(CONFIG),
                           "--model", str(ROOT / "models" / "equipment-lstm-ae.onnx"),
                           "--source", "replay:r.csv", "--sink", "jsonl:alerts.jsonl",
                           "--spool-dir", str(tmp_path / "spool"), "--metrics", "127.0.0.1:0",
                           "--summary-json", "summary.json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "summary.json").read_text())["messages"] == 40
    logs = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert logs, "log-json = true in the example: the logs are JSON lines"
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alerts and {a["agent"] for a in alerts} == {"press-7"}  # agent-id from the file
