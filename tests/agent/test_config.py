"""AgentConfig: the settings of ``agent run`` from flags and from TOML alike, and back to TOML.

The round trips run the real command (``--print-config``, ``--config``) and
a real agent on a replay file: a run from the printed file sends the same
alerts as the run from the flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from edgewatch.agent.config import (FIELDS, AgentConfig, ConfigError, flags_of_document, long_flag,
                                    read_config)
from edgewatch.commands.agent_run import command as run_command
from tests.modelkit import make_card, write_model

ROOT = Path(__file__).resolve().parents[2]
NOT_SETTINGS = {"config", "print-config", "help"}

# every kind of value a setting can hold, none at its default
RICH = {
    "model": "models/m.onnx", "model-sha256": "ab" * 32, "stride": 2, "threshold": 0.3, "k": 1, "n": 2,
    "close-after": 4, "sensitivity": 2.0, "quiet-start": 86400.0, "metrics-max-streams": 5,
    "trust-key": ["keys/a.pub", "keys/b.pub"], "allow-unsigned-models": False, "max-model-mb": 8.0,
    "watch-model": True, "watch-interval": 0.5,
    "source": ["ws://10.0.0.5:9000/", {"url": "opcua://10.0.0.7:4840", "stream": "pump-1",
                                       "nodes": {"cpu": "ns=2;s=Pump1.Cpu", "fan": "ns=2;i=1002"}}],
    "idle-timeout": 4.0, "sink": ["stdout", "mqtt://broker:1883/plant"], "spool-dir": "/var/spool/ew",
    "spool-max-mb": 1.5, "spool-memory-mb": 0.5, "max-streams": 500, "stream-ttl": 0.0, "mqtt-username": "press-7",
    "mqtt-password": "s3cret", "mqtt-ca-file": "/etc/ca.pem", "mqtt-cert-file": "/etc/c.pem",
    "mqtt-key-file": "/etc/c.key", "mqtt-tls-insecure": True, "mqtt-keepalive": 15, "agent-id": "press-7",
    "fleet-broker": "mqtt://broker:1883/fleet", "model-topic": False, "status-interval": 2.0, "shadow-report-interval": 5.0, "metrics": "127.0.0.1:9108",
    "ready-grace": 1.0, "ready-max-silence": 0.0, "log-json": True, "log-level": "warning", "learn": 50,
    "learn-state": "learned", "ui": "127.0.0.1:8080", "ui-max-clients": 2, "duration": 9.5,
    "max-messages": 1000, "summary-json": "s.json", "record-run": "run.jsonl", "quiet": True,
}


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture
def replay_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """A model, a replay file with one anomalous stretch, and the flags of a run over it."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    rows = ["timestamp,a,b,c,d"] + [f"{1000 + i},0.5,{2.0 if 30 <= i < 40 else 0.5},0.5,0.5" for i in range(100)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    return tmp_path, ["--model", str(model), "--source", "replay:r.csv"]


def test_every_flag_of_agent_run_is_one_setting_with_the_same_default(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {f for f in map(long_flag, run_command.params) if f and f not in NOT_SETTINGS}
    assert options == set(FIELDS), "each flag of agent run is a field of AgentConfig (agent/config.py)"
    for param in run_command.params:  # the options are made from the fields: defaults and ranges alike
        spec = FIELDS.get(long_flag(param) or "")
        if spec is not None:
            default = tuple(param.default) if param.multiple else param.default
            assert default == spec.default and bool(param.help), spec.flag
            if isinstance(param.type, (click.IntRange, click.FloatRange)):
                assert (param.type.min, param.type.max) == (spec.minimum, spec.maximum), spec.flag
    monkeypatch.delenv("EDGEWATCH_MQTT_USERNAME", raising=False)
    monkeypatch.delenv("EDGEWATCH_MQTT_PASSWORD", raising=False)
    ctx = run_command.make_context("run", ["--model", "m.onnx", "--source", "stdin"])
    assert AgentConfig.from_command(ctx) == AgentConfig.from_flags({"model": "m.onnx", "source": "stdin"})


def test_flags_to_config_to_toml_and_back_are_equal() -> None:
    config = AgentConfig.from_flags(RICH)
    assert config.to_flags() == AgentConfig.from_flags(config.to_flags()).to_flags()
    again = AgentConfig.from_flags(flags_of_document(tomllib.loads(config.to_toml(secrets=True))))
    assert again == config
    assert config.mqtt.password == "s3cret" and config.model.trust_keys == (Path("keys/a.pub"), Path("keys/b.pub"))
    assert config.sources.urls[1]["nodes"]["fan"] == "ns=2;i=1002"
    # without secrets the password is left out, and the file says so
    text = config.to_toml()
    assert "s3cret" not in text and "$EDGEWATCH_MQTT_PASSWORD" in text
    assert AgentConfig.from_flags(flags_of_document(tomllib.loads(text))) == AgentConfig.from_flags(
        {**RICH, "mqtt-password": None})
    # nor is a password written into a URL (the login name stays), and the file says so
    urls = AgentConfig.from_flags({**RICH, "sink": ["stdout", "mqtts://press-7:hunter2@broker:8883/plant"],
                                   "fleet-broker": "mqtt://ops:pw2@broker:1883/fleet"})
    text = urls.to_toml()
    assert "hunter2" not in text and "pw2" not in text, text
    assert "mqtts://press-7@broker:8883/plant" in text and "mqtt://ops@broker:1883/fleet" in text
    assert "the password in a --sink URL" in text and "the password in a --fleet-broker URL" in text
    assert "hunter2" in urls.to_toml(secrets=True)
    # the defaults alone round-trip too (None settings are left out of the file)
    assert AgentConfig.from_flags(flags_of_document(tomllib.loads(AgentConfig().to_toml()))) == AgentConfig()


def test_a_run_from_the_printed_config_sends_the_same_alerts(replay_run: tuple[Path, list[str]]) -> None:
    cwd, flags = replay_run
    flags = [*flags, "--stride", "2", "--k", "1", "--n", "2", "--agent-id", "cfg-test", "-q"]
    printed = _cli(*flags, "--print-config", cwd=cwd)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# edgewatch agent run --config") and "[model]" in printed.stdout
    assert not (cwd / "spool").exists(), "--print-config must not start anything"
    (cwd / "agent.toml").write_text(printed.stdout)
    reprinted = _cli("--config", "agent.toml", "--print-config", cwd=cwd)
    assert reprinted.returncode == 0 and reprinted.stdout == printed.stdout
    by_flags, by_file = _cli(*flags, cwd=cwd), _cli("--config", "agent.toml", cwd=cwd)
    assert by_flags.returncode == 0 and by_file.returncode == 0, by_file.stderr
    a = [json.loads(x) for x in by_flags.stdout.splitlines()]
    b = [json.loads(x) for x in by_file.stdout.splitlines()]
    assert a and [e["id"] for e in a] == [e["id"] for e in b] and b[0]["agent"] == "cfg-test"


def test_the_default_form_prints_its_defaults(replay_run: tuple[Path, list[str]]) -> None:
    cwd, flags = replay_run
    printed = _cli(*flags, "--print-config", cwd=cwd)
    assert printed.returncode == 0, printed.stderr
    doc = tomllib.loads(printed.stdout)
    assert doc["sinks"]["urls"] == ["stdout"] and doc["streams"] == {"ttl": 3600.0}
    assert "threshold" not in doc["model"] and "agent-id" not in doc["fleet"]  # the model's value, the host name
    assert AgentConfig.from_flags(flags_of_document(doc)) == AgentConfig.from_flags(
        {"model": flags[1], "source": [flags[3]]})


def test_a_flag_replaces_one_setting_of_the_file_not_its_table(replay_run: tuple[Path, list[str]]) -> None:
    cwd, flags = replay_run
    (cwd / "agent.toml").write_text(f"""
[model]
path = "{flags[1]}"
stride = 2
k = 1

[sources]
urls = ["{flags[3]}"]

[mqtt]
username = "from-file"
ca-file = "/etc/ca.pem"
""")
    out = _cli("--config", "agent.toml", "--mqtt-username", "from-flag", "--n", "3", "--print-config", cwd=cwd,
               env={"EDGEWATCH_MQTT_PASSWORD": "pw"})
    assert out.returncode == 0, out.stderr
    doc = tomllib.loads(out.stdout)
    assert doc["mqtt"]["username"] == "from-flag" and doc["mqtt"]["ca-file"] == "/etc/ca.pem"
    assert doc["model"]["stride"] == 2 and doc["model"]["k"] == 1 and doc["model"]["n"] == 3
    assert "password" not in doc["mqtt"] and "pw" not in out.stdout and "EDGEWATCH_MQTT_PASSWORD" in out.stdout


def test_first_form_files_still_read(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text("""
model = "/m.onnx"
sink = "stdout"
stride = 3
agent_id = "press-7"
ready-grace = 5
log-json = true

[mqtt]
username = "u"
ca_file = "/ca.pem"

[ui]
max-clients = 4

[[source]]
url = "opcua://10.0.0.7:4840"
interval = 0.5
""")
    new = tmp_path / "new.toml"
    new.write_text("""
[model]
path = "/m.onnx"
stride = 3
[sources]
urls = [{ url = "opcua://10.0.0.7:4840", interval = 0.5 }]
[sinks]
urls = ["stdout"]
[mqtt]
username = "u"
ca-file = "/ca.pem"
[fleet]
agent-id = "press-7"
[ops]
ready-grace = 5.0
log-json = true
[ui]
max-clients = 4
""")
    assert AgentConfig.from_toml(old) == AgentConfig.from_toml(new)
    example = AgentConfig.from_toml(ROOT / "deploy" / "agent.example.toml")
    assert example.fleet.agent_id == "press-7" and example.ops.log_json and example.sources.urls


def test_unknown_keys_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    for text, bad in (("[model]\npth = 'm.onnx'\n", "[model] pth"), ("modle = 'm.onnx'\n", "modle"),
                      ("[mqtt]\nusernme = 'u'\n", "[mqtt] usernme"), ("[sink]\nurls = []\n", "[sink] urls")):
        p.write_text(text)
        with pytest.raises(ConfigError, match="unknown setting") as exc:
            read_config(p)
        assert bad in str(exc.value) and "model.path" in str(exc.value) and "mqtt.username" in str(exc.value)
    proc = _cli("--config", str(p), cwd=tmp_path)
    assert proc.returncode == 2 and "[sink] urls" in proc.stderr and "sinks.urls" in proc.stderr


@pytest.mark.parametrize("text, message", [
    ("[model]\nstride = 0\n", r"\[model\] stride \(--stride\) is 0; it must be >= 1"),
    ("[model]\nstride = '3'\n", r"\[model\] stride \(--stride\): expected an integer, got '3'"),
    ("[ops]\nlog-level = 'loud'\n", r"\[ops\] log-level \(--log-level\) is 'loud'; one of"),
    ("[mqtt]\nkeepalive = 70000\n", r"it must be >= 1 and <= 65535"),
    ("[ui]\nmax-clients = true\n", r"expected an integer, got True"),
    ("stride = 2\n[model]\nstride = 3\n", r"--stride is set twice \(again by \[model\] stride\)"),
])
def test_wrong_values_say_which_setting(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        AgentConfig.from_toml(p)


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config(tmp_path / "bad.toml")
