"""The source registry: one factory per URL scheme, uniform names, settings checked, extras optional."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.agent.sources import (ReplaySource, SourceConfigError, StdinSource, WebSocketSource, make_source,
                                     parse_spec, register, schemes)
from edgewatch.agent.sources.base import public_name
from edgewatch.agent.sources.registry import scheme_of

FEATURES = ["a", "b", "c", "d"]


def test_every_protocol_is_registered_by_scheme() -> None:
    assert {"ws", "wss", "replay", "stdin", "mqtt", "mqtts"} <= set(schemes())
    assert scheme_of("-") == scheme_of("stdin") == "stdin"
    assert scheme_of("replay:x.csv?rate=3") == "replay" and scheme_of("MQTT://h/t") == "mqtt"
    assert isinstance(make_source("ws://127.0.0.1:9/", FEATURES), WebSocketSource)
    assert isinstance(make_source("-", FEATURES), StdinSource)
    with pytest.raises(SourceConfigError, match="unknown source 'ftp://h/x'.*mqtt"):
        make_source("ftp://h/x", FEATURES)
    with pytest.raises(ValueError, match="registered twice"):
        register("ws")(lambda spec, ctx: None)


def test_toml_tables_and_settings_are_checked(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("a,b,c,d\n1,2,3,4\n")
    src = make_source({"url": f"replay:{csv}", "rate": 5, "stream": "line-3"}, FEATURES)
    assert isinstance(src, ReplaySource) and src.rate == 5.0 and src.name == "line-3"
    with pytest.raises(SourceConfigError, match="url ="):
        parse_spec({"rate": 5})
    with pytest.raises(SourceConfigError, match=r"unknown setting\(s\) \['colour'\]"):
        make_source({"url": "mqtt://127.0.0.1:1/t", "colour": "red"}, FEATURES)
    with pytest.raises(SourceConfigError, match="no settings besides url"):
        make_source({"url": "ws://127.0.0.1:1/", "rate": 1}, FEATURES)


def test_names_never_carry_a_login() -> None:
    assert public_name("mqtt://u:secret@h:1883/a/b?qos=1") == "mqtt://h:1883/a/b"
    src = make_source("mqtt://user:pw@127.0.0.1:1883/plant/%23", FEATURES)
    assert src.name == "mqtt://127.0.0.1:1883/plant/#" and "pw" not in src.name
    assert src.broker.username == "user" and src.broker.password == "pw"


def test_mqtt_topic_filters() -> None:
    assert make_source("mqtt://127.0.0.1/a/+/c", FEATURES).topic_filter == "a/+/c"
    assert make_source("mqtt://127.0.0.1/a/#", FEATURES).topic_filter == "a/#"  # typed as is
    assert make_source("mqtts://127.0.0.1/a", FEATURES, mqtt_options={"tls_insecure": True}).broker.port == 8883
    for bad in ("mqtt://127.0.0.1/", "mqtt://127.0.0.1/a/b%23", "mqtt://127.0.0.1/a/%23/b", "mqtt://127.0.0.1/x?qos=5"):
        with pytest.raises(Exception, match="topic|qos"):
            make_source(bad, FEATURES)


def test_config_file_source_tables(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgewatch.commands.agent_run import command
    from tests.modelkit import make_card, write_model

    model = write_model(tmp_path / "m.onnx", make_card(window=2))
    (tmp_path / "r.csv").write_text("a,b,c,d\n1,2,3,4\n1,2,3,4\n1,2,3,4\n")
    (tmp_path / "agent.toml").write_text(f'model = "{model}"\n[[source]]\nurl = "replay:{tmp_path / "r.csv"}"\n'
                                         'stream = "from-table"\n')
    result = CliRunner().invoke(command, ["--config", str(tmp_path / "agent.toml"), "-q", "--sink",
                                          f"jsonl:{tmp_path / 'a.jsonl'}", "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["messages"] == 3 and summary["streams"] == 1 and summary["windows"] == 2


def test_a_missing_extra_exits_6_with_the_install_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.modelkit import make_card, write_model

    model = write_model(tmp_path / "m.onnx", make_card(window=2))
    for url, extra in (("opcua://127.0.0.1:4840/Objects/2:Pump1", "opcua"),
                       ("modbus://127.0.0.1:502/1?registers=0:u16,1:u16,2:u16,3:u16", "modbus")):
        code = ("import sys; sys.modules['asyncua'] = sys.modules['pymodbus'] = None\n"
                "from edgewatch.cli import main\n"
                f"main(['agent', 'run', '--model', {str(model)!r}, '--source', {url!r}])")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert run.returncode == 6, run.stderr
        assert "pip install" in run.stderr and f"[{extra}]'" in run.stderr


@pytest.mark.parametrize("url", ["ws://u:secret@127.0.0.1:abc/", "mqtt://127.0.0.1:1883;/plant/%23",
                                 "opcua://127.0.0.1:99999/Objects/2:Pump1",
                                 "modbus://127.0.0.1:x/1?registers=0:u16,1:u16,2:u16,3:u16"])
def test_a_port_that_is_no_port_stops_the_start_with_the_fix_and_no_traceback(tmp_path: Path, url: str) -> None:
    """A typo in a port ended the agent with urllib's traceback (mqtt, opcua, modbus; exit 1), or a websocket
    retried it forever; now it is a refused --source (exit 4) that names the URL without its login."""
    import subprocess
    import sys

    from tests.modelkit import make_card, write_model

    with pytest.raises(SourceConfigError, match="must be a number from 0 to 65535"):
        make_source(url, FEATURES)
    model = write_model(tmp_path / "m.onnx", make_card(window=2))
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source",
                          url, "--duration", "5", "-q"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 4, run.stderr
    assert "must be a number from 0 to 65535" in run.stderr and "Traceback" not in run.stderr
    assert "secret" not in run.stderr


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=5), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FEATURES + ["ts", "stream", "x"]), _json, max_size=7))
def test_flat_objects_parse_to_a_measurement_or_a_reason(obj: dict) -> None:
    import json
    import math

    from edgewatch.agent.sources.parsing import BadReason, Measurement
    from edgewatch.agent.sources.rows import RowAssembler

    out = RowAssembler(FEATURES).keyed_message(json.dumps(obj), "s", 1000.0)
    assert isinstance(out, (Measurement, BadReason))
    if isinstance(out, Measurement):
        assert out.values == [float(obj[f]) for f in FEATURES] and all(math.isfinite(v) for v in out.values)
    if any(f not in obj for f in FEATURES):  # a first row: nothing to hold
        assert out in (BadReason.MISSING_FEATURE, BadReason.NO_VALUES, BadReason.NOT_NUMBER, BadReason.NON_FINITE,
                       BadReason.BAD_TIMESTAMP, BadReason.BAD_STREAM, BadReason.OVERFLOW)