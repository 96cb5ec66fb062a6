"""Signed models: keygen/sign/verify, and an agent with --trust-key refusing what it should, on every path."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import onnx
import paho.mqtt.publish as publish
import pytest
from click.testing import CliRunner

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.lifecycle.accept import Gate, Verdict
from edgewatch.agent.lifecycle.store import ModelStore
from edgewatch.agent.model import ScoringModel, file_sha256
from edgewatch.agent.sinks.mqtt import MqttSink
from edgewatch.agent.lifecycle.signing import (TrustPolicy, generate_keypair, load_private_key, load_public_key,
                                     sign_bytes, verify_bytes)
from edgewatch.agent.sources import ReplaySource
from edgewatch.agent.lifecycle.file_watch import ModelFileWatcher
from edgewatch.agent.lifecycle.receiver import MqttModelReceiver
from edgewatch.cli import main
from edgewatch.errors import UntrustedModel
from edgewatch.mqtt.payloads import install_message
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until


def _edit(src: Path, dst: Path, threshold: str | None = None, graph: bool = False) -> Path:
    """What an attacker with the onnx package would do to a signed file."""
    m = onnx.load(src)
    if threshold is not None:
        for p in m.metadata_props:
            if p.key == "edgewatch.threshold":
                p.value = threshold
    if graph:
        scale = m.graph.initializer[1]
        scale.raw_data = bytes(len(scale.raw_data))  # every feature error becomes 0
    onnx.save(m, dst)
    return dst


@pytest.fixture
def keys(tmp_path: Path) -> dict:
    generate_keypair(tmp_path / "release")
    generate_keypair(tmp_path / "other")
    return {"key": tmp_path / "release", "pub": tmp_path / "release.pub", "other": tmp_path / "other",
            "other_pub": tmp_path / "other.pub"}


def _sign(path: Path, key: Path, out: Path) -> Path:
    out.write_bytes(sign_bytes(path.read_bytes(), load_private_key(key), signer="ci"))
    return out


def test_keygen_sign_verify_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "k" / "release"
    res = runner.invoke(main, ["model", "keygen", "-o", str(key)])
    assert res.exit_code == 0, res.output
    assert os.stat(key).st_mode & 0o777 == 0o600 and os.stat(f"{key}.pub").st_mode & 0o777 == 0o644
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in Path(f"{key}.pub").read_bytes()
    assert runner.invoke(main, ["model", "keygen", "-o", str(key)]).exit_code == 4  # no silent overwrite (BadKey)
    model = write_model(tmp_path / "m.onnx", make_card(window=5))
    (tmp_path / "junk.pub").write_text("not a key\n")
    for bad in (tmp_path / "missing.pub", tmp_path / "junk.pub"):  # a key that cannot be read is bad input
        res = runner.invoke(main, ["model", "verify", str(model), "--trust-key", str(bad)])
        assert res.exit_code == 4 and str(bad) in res.output, res.output
    signed = tmp_path / "signed.onnx"
    res = runner.invoke(main, ["model", "sign", str(model), "--key", str(key), "-o", str(signed),
                               "--signer", "release-ci"])
    assert res.exit_code == 0, res.output
    kid = load_public_key(f"{key}.pub").key_id
    res = runner.invoke(main, ["model", "verify", str(signed), "--trust-key", f"{key}.pub"])
    assert res.exit_code == 0, res.output
    assert "'release-ci'" in res.output and kid in res.output
    # the signed file is still a valid ONNX model that the agent loads with the same card
    onnx.checker.check_model(onnx.load(signed))
    assert ScoringModel(signed).card == ScoringModel(model).card
    other = tmp_path / "other"
    runner.invoke(main, ["model", "keygen", "-o", str(other)])
    cases = {
        "unsigned": (model, f"{key}.pub", "is not signed"),
        "wrong key": (signed, f"{other}.pub", f"key {kid}, which is not a trusted key"),
        "card": (_edit(signed, tmp_path / "t1.onnx", threshold="1e30"), f"{key}.pub",
                 "card (metadata) changed after it was signed"),
        "graph": (_edit(signed, tmp_path / "t2.onnx", graph=True), f"{key}.pub", "graph changed after"),
    }
    for name, (path, pub, reason) in cases.items():
        res = runner.invoke(main, ["model", "verify", str(path), "--trust-key", pub])
        assert res.exit_code == 3, (name, res.output)
        assert reason in res.output, (name, res.output)
    # two trust keys: either signer is accepted
    res = runner.invoke(main, ["model", "verify", str(signed), "--trust-key", f"{other}.pub",
                               "--trust-key", f"{key}.pub"])
    assert res.exit_code == 0, res.output


def test_signature_covers_every_entry_and_survives_an_onnx_round_trip(tmp_path: Path, keys: dict) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5))
    signed = _sign(model, keys["key"], tmp_path / "s.onnx")
    trusted = [load_public_key(keys["pub"])]
    # loading and saving with onnx, unchanged, keeps the signature valid (the graph bytes are canonical)
    m = onnx.load(signed)
    onnx.save(m, tmp_path / "resaved.onnx")
    verify_bytes((tmp_path / "resaved.onnx").read_bytes(), trusted)
    # an added entry (not even ours), a removed one, and a duplicated key are all refused
    added = onnx.load(signed)
    e = added.metadata_props.add()
    e.key, e.value = "onnxruntime.quant", "x"
    removed = onnx.load(signed)
    del removed.metadata_props[0]
    duplicated = onnx.load(signed)
    e = duplicated.metadata_props.add()
    e.key, e.value = "edgewatch.threshold", "0.25"
    for name, proto in (("added", added), ("removed", removed), ("duplicated", duplicated)):
        with pytest.raises(Exception, match="changed after it was signed|twice"):
            verify_bytes(proto.SerializeToString(), trusted, name)
    # a re-signed file carries one signature, by the new key
    resigned = sign_bytes(signed.read_bytes(), load_private_key(keys["other"]))
    assert resigned.count(b"edgewatch.signature") == 1
    verify_bytes(resigned, [load_public_key(keys["other_pub"])])
    with pytest.raises(UntrustedModel, match="not a trusted key"):
        verify_bytes(resigned, trusted)
    # a forged signature field
    forged = signed.read_bytes().replace(b'"signer": "ci"', b'"signer": "CI"')
    with pytest.raises(UntrustedModel, match="edited or forged"):
        verify_bytes(forged, trusted)


def test_agent_start_refuses_untrusted_models(tmp_path: Path, keys: dict) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    signed = _sign(model, keys["key"], tmp_path / "s.onnx")
    data = tmp_path / "r.csv"
    data.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 20)
    runner = CliRunner()

    def run(path: Path, *extra: str):  # noqa: ANN202
        return runner.invoke(main, ["agent", "run", "--model", str(path), "--source", f"replay:{data}",
                                    "--stride", "1", "-q", "--spool-dir", str(tmp_path / "sp"), *extra])

    ok = run(signed, "--trust-key", str(keys["pub"]))
    assert ok.exit_code == 0, ok.output
    for path, key, reason in ((model, keys["pub"], "is not signed"),
                              (signed, keys["other_pub"], "not a trusted key"),
                              (_edit(signed, tmp_path / "t.onnx", threshold="1e30"), keys["pub"], "card"),
                              (_edit(signed, tmp_path / "g.onnx", graph=True), keys["pub"], "graph changed")):
        res = run(path, "--trust-key", str(key))
        assert res.exit_code == 3, res.output
        assert reason in res.output
    assert run(signed, "--trust-key", str(keys["pub"]), "--allow-unsigned-models").exit_code == 2
    res = run(signed, "--model-sha256", file_sha256(signed), "--model-topic", "--sink", "stdout")
    assert res.exit_code == 2 and "pins the model" in res.output
    res = run(signed, "--model-sha256", "0" * 64)
    assert res.exit_code == 3 and "expected 000" in res.output


def _replay(tmp_path: Path) -> Path:
    p = tmp_path / "loop.csv"
    p.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.6\n" * 200)
    return p


def test_watched_file_must_stay_signed(tmp_path: Path, keys: dict) -> None:
    live = _sign(write_model(tmp_path / "v1.onnx", make_card(window=5, threshold=0.5)), keys["key"],
                 tmp_path / "live.onnx")
    v2 = _sign(write_model(tmp_path / "v2u.onnx", make_card(window=5, threshold=0.2)), keys["key"],
               tmp_path / "v2.onnx")
    agent = Agent(ScoringModel(live), [], AgentOptions(stride=1, drift_every=0))
    agent.add_source(ReplaySource(_replay(tmp_path), ["a", "b", "c", "d"], rate=2000, loop=True))
    watcher = ModelFileWatcher(agent, live, Gate.for_agent(agent, TrustPolicy.from_files([keys["pub"]])),
                               interval=0.05)
    refused: list[str] = []
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        bad = [tmp_path / "v2u.onnx", _edit(v2, tmp_path / "t.onnx", threshold="1e30"),
               _edit(v2, tmp_path / "g.onnx", graph=True)]
        for i, path in enumerate(bad):
            tmp = live.with_name("live.new")
            tmp.write_bytes(path.read_bytes())
            os.replace(tmp, live)
            outcome = watcher.check()
            if outcome is not None and outcome.verdict is Verdict.REFUSED:
                refused.append(outcome.reason)
            assert len(refused) == i + 1
            assert agent.threshold == 0.5
        assert "is not signed" in refused[0] and "card" in refused[1] and "graph" in refused[2]
        os.replace(tmp_path / "v2.onnx", live)
        watcher.check()
        assert wait_until(lambda: agent.threshold == 0.2), "the signed model was not swapped in"
    finally:
        watcher.close()
        agent.request_stop()
        runner.join(20)


def test_mqtt_models_verified_before_disk(tmp_path: Path, keys: dict, broker, collector) -> None:
    live = _sign(write_model(tmp_path / "v1.onnx", make_card(window=5, threshold=0.5)), keys["key"],
                 tmp_path / "live.onnx")
    v2u = write_model(tmp_path / "v2u.onnx", make_card(window=5, threshold=0.3))
    v2 = _sign(v2u, keys["key"], tmp_path / "v2.onnx")
    sink = MqttSink.from_url(f"mqtt://{broker.host}:{broker.port}/trust", agent_id="t1",
                             spool_dir=tmp_path / "sp")
    agent = Agent(ScoringModel(live), [sink], AgentOptions(stride=1, drift_every=0, agent_id="t1"))
    agent.add_source(ReplaySource(_replay(tmp_path), ["a", "b", "c", "d"], rate=1000, loop=True))
    events = collector(broker, "trust/t1/events", client_id="c-trust", persistent=False)
    models = tmp_path / "models"
    receiver = MqttModelReceiver(agent, sink.connection, sink.topics,
                                 Gate.for_agent(agent, TrustPolicy.from_files([keys["pub"]]), ModelStore(models)),
                                 max_bytes=20_000)
    runner = threading.Thread(target=agent.run)
    runner.start()
    topic = "trust/t1/model"

    def send(payload: bytes) -> None:
        publish.single(topic, payload, qos=1, retain=True, hostname=broker.host, port=broker.port)

    try:
        assert wait_until(lambda: sink.connected and agent.summary.messages > 50)
        other = _sign(v2u, keys["other"], tmp_path / "v2o.onnx")
        oversize = json.dumps({"sha256": "0" * 64, "name": "big.onnx",
                               "onnx_b64": base64.b64encode(os.urandom(60_000)).decode()}).encode()
        bad = [("unsigned", install_message(v2u).to_payload()), ("wrong key", install_message(other).to_payload()),
               ("card", install_message(_edit(v2, tmp_path / "t.onnx", threshold="1e30")).to_payload()),
               ("graph", install_message(_edit(v2, tmp_path / "g.onnx", graph=True)).to_payload()),
               ("oversize", oversize)]
        for i, (_name, payload) in enumerate(bad):
            send(payload)
            assert wait_until(lambda: receiver.refused == i + 1), _name
            assert agent.model.sha256 == file_sha256(live)
            assert list(models.glob("*.onnx")) == [], f"{_name} left a file behind"
        send(install_message(v2).to_payload())
        assert wait_until(lambda: agent.model.sha256 == file_sha256(v2))
        assert agent.threshold == 0.3
        # the new model, and the one it replaced (kept for a rollback)
        assert wait_until(lambda: sorted(p.name for p in models.glob("*.onnx")) == sorted(
            f"{file_sha256(m)}.onnx" for m in (v2, live)))
        assert events.wait_for(lambda c: [e["event"] for e in c.events("/events")].count("model_refused") == 5)
        reasons = [e["reason"] for e in events.events("/events") if e["event"] == "model_refused"]
        for expected, reason in zip(["is not signed", "not a trusted key", "card (metadata) changed",
                                     "graph changed", "over the limit"], reasons):
            assert expected in reason, reasons
    finally:
        receiver.close()
        agent.request_stop()
        runner.join(20)
        publish.single(topic, b"", qos=1, retain=True, hostname=broker.host, port=broker.port)


def test_mqtt_without_trust_key_needs_explicit_opt_in(tmp_path: Path, broker, collector) -> None:
    """End to end through the CLI: no --trust-key refuses an unsigned MQTT model; the opt-in takes it."""
    live = write_model(tmp_path / "live.onnx", make_card(window=5, threshold=0.5))
    v2 = write_model(tmp_path / "v2.onnx", make_card(window=5, threshold=0.3))
    topic = "optin/a1/model"
    publish.single(topic, install_message(v2).to_payload(), qos=1, retain=True, hostname=broker.host, port=broker.port)
    events = collector(broker, "optin/a1/events", client_id="c-optin", persistent=False)
    try:
        outcomes = {}
        for flag, expected in (([], "model_refused"), (["--allow-unsigned-models"], "model_swapped")):
            spool = tmp_path / f"spool{len(flag)}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(live), "--source",
                 f"replay:{_replay(tmp_path)}?rate=200&loop=1", "--stride", "1", "--agent-id", "a1",
                 "--sink", f"mqtt://{broker.host}:{broker.port}/optin", "--model-topic",
                 "--spool-dir", str(spool), "-q", *flag],
                stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
            try:
                assert events.wait_for(lambda c: expected in [e["event"] for e in c.events("/events")], 30), \
                    events.events("/events")
            finally:
                proc.terminate()
                _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            outcomes[bool(flag)] = (err, sorted(p.name for p in (spool / "models").iterdir() if p.suffix == ".onnx"))
        refused_log, refused_files = outcomes[False]
        assert "no --trust-key" in refused_log and refused_files == []
        accepted_log, accepted_files = outcomes[True]
        assert "model swapped" in accepted_log, accepted_log
        assert accepted_files == sorted(f"{hashlib.sha256(m.read_bytes()).hexdigest()}.onnx" for m in (v2, live))
    finally:
        publish.single(topic, b"", qos=1, retain=True, hostname=broker.host, port=broker.port)


def test_tensors_in_external_files_cannot_be_signed_or_verified(tmp_path: Path, keys: dict) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5))
    m = onnx.load(model)
    split = tmp_path / "split.onnx"
    onnx.save(m, split, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    with pytest.raises(Exception, match="external files"):
        sign_bytes(split.read_bytes(), load_private_key(keys["key"]))
    # signed whole, then split: the weights left the signed bytes
    signed = _sign(model, keys["key"], tmp_path / "s.onnx")
    m = onnx.load(signed)
    onnx.save(m, tmp_path / "s-split.onnx", save_as_external_data=True, location="w2.bin", size_threshold=0)
    with pytest.raises(UntrustedModel, match="changed after it was signed|external files"):
        verify_bytes((tmp_path / "s-split.onnx").read_bytes(), [load_public_key(keys["pub"])])
