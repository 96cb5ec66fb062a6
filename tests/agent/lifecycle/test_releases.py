"""No rollback by replay: a signed model carries its release, an agent with --trust-key never goes back to an
older one by itself, and going back is a signed act (a re-signed file, or a signed rollback)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.lifecycle.accept import Gate
from edgewatch.agent.model import ScoringModel, file_sha256
from edgewatch.agent.lifecycle.store import ModelStore
from edgewatch.agent.sinks.mqtt import MqttSink
from edgewatch.wire.onnx_read import ModelBytes, metadata_record
from edgewatch.agent.lifecycle.releases import RollbackGrant, admit_at_start
from edgewatch.agent.lifecycle.signing import (FORMAT_V1, Signature, TrustPolicy, digests, generate_keypair, key_id,
                                     load_private_key, load_public_key, read_signature, sign_bytes, verify_bytes)
from edgewatch.agent.sources import ReplaySource
from edgewatch.agent.lifecycle.file_watch import ModelFileWatcher
from edgewatch.agent.lifecycle.receiver import MqttModelReceiver
from edgewatch.cli import main
from edgewatch.contract import SIGNATURE_KEY
from edgewatch.errors import UntrustedModel
from edgewatch.mqtt import payloads
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
FEATURES = ["a", "b", "c", "d"]


@pytest.fixture
def keys(tmp_path: Path) -> dict:
    generate_keypair(tmp_path / "release")
    generate_keypair(tmp_path / "other")
    return {"key": tmp_path / "release", "pub": tmp_path / "release.pub", "other": tmp_path / "other"}


def _signed(tmp: Path, name: str, key: Path, release: int | None = None, **card) -> Path:  # noqa: ANN003
    raw = write_model(tmp / f"{name}.raw.onnx", make_card(**{"window": 5, **card}))
    out = tmp / f"{name}.onnx"
    out.write_bytes(sign_bytes(raw.read_bytes(), load_private_key(key), signer="ci", release=release))
    return out


def _signed_v1(tmp: Path, name: str, key: Path, **card) -> Path:  # noqa: ANN003
    """A file as edgewatch signed it before releases: signature format 1, no release inside."""
    data = write_model(tmp / f"{name}.raw.onnx", make_card(**{"window": 5, **card})).read_bytes()
    private = load_private_key(key)
    graph_sha, card_sha = digests(ModelBytes.parse(data, name), name)
    sig = Signature(key_id(private.public_key()), "old-ci", "2026-01-01T00:00:00Z", graph_sha, card_sha,
                    format=FORMAT_V1)
    out = tmp / f"{name}.onnx"
    out.write_bytes(data + metadata_record(SIGNATURE_KEY, replace(sig, signature=private.sign(sig.message()))
                                           .to_prop()))
    return out


def _set_signature_entry(path: Path, out: Path, edit) -> Path:  # noqa: ANN001
    m = onnx.load(path)
    for p in m.metadata_props:
        if p.key == SIGNATURE_KEY:
            obj = json.loads(p.value)
            edit(obj)
            p.value = json.dumps(obj)
    onnx.save(m, out)
    return out


def _replay(tmp: Path, rows: int = 200) -> Path:
    p = tmp / f"rows{rows}.csv"
    p.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.6\n" * rows)
    return p


def test_the_release_is_signed(tmp_path: Path, keys: dict) -> None:
    runner = CliRunner()
    raw = write_model(tmp_path / "m.onnx", make_card(window=5))
    out = tmp_path / "m7.onnx"
    res = runner.invoke(main, ["model", "sign", str(raw), "--key", str(keys["key"]), "-o", str(out),
                               "--release", "7"])
    assert res.exit_code == 0 and "release 7" in res.output, res.output
    res = runner.invoke(main, ["model", "verify", str(out), "--trust-key", str(keys["pub"])])
    assert res.exit_code == 0 and "release 7;" in res.output, res.output
    res = runner.invoke(main, ["model", "sign", str(raw), "--key", str(keys["key"]), "-o", str(out),
                               "--release", "0"])
    assert res.exit_code == 2 and "--release" in res.output
    # default: the signing time in ns, so a later signature is a newer release
    before = time.time_ns()
    default = sign_bytes(raw.read_bytes(), load_private_key(keys["key"]))
    release = read_signature(default).release
    assert before <= release <= time.time_ns()
    trusted = [load_public_key(keys["pub"])]
    assert verify_bytes(sign_bytes(raw.read_bytes(), load_private_key(keys["key"])), trusted).signature.release \
        > release
    # the release is under the signature: raising it in the file breaks it
    raised = _set_signature_entry(out, tmp_path / "raised.onnx", lambda o: o.update(release=10**18))
    with pytest.raises(UntrustedModel, match="edited or forged"):
        verify_bytes(raised.read_bytes(), trusted)
    for bad in (-1, "7", True):
        broken = _set_signature_entry(out, tmp_path / "broken.onnx", lambda o, v=bad: o.update(release=v))
        with pytest.raises(UntrustedModel, match="signature entry is damaged: release"):
            verify_bytes(broken.read_bytes(), trusted)
    # a file signed before releases still verifies, as release 0; a release written into it is not signed
    old = _signed_v1(tmp_path, "old", keys["key"])
    got = verify_bytes(old.read_bytes(), trusted)
    assert got.signature.release == 0 and "release 0 (signed before releases existed)" in got.describe()
    claimed = _set_signature_entry(old, tmp_path / "claimed.onnx", lambda o: o.update(release=10**19))
    assert verify_bytes(claimed.read_bytes(), trusted).signature.release == 0


def _agent(tmp: Path, cwd: Path, model: Path, *extra: str, source: str | None = None) -> subprocess.Popen:
    """``agent run`` in ``cwd`` (so its spool folder is the default one) with its log in ``cwd/agent.log``."""
    with open(cwd / "agent.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source",
             source or f"replay:{_replay(tmp)}?rate=200&loop=1", "--stride", "1", "--trust-key",
             str(tmp / "release.pub"), *extra],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _finished(proc: subprocess.Popen, cwd: Path) -> tuple[int, str]:
    proc.communicate(timeout=60)
    return proc.returncode, (cwd / "agent.log").read_text()


class Lines:
    """The JSON events an agent process writes on stdout (its default sink), read as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.events: list[dict] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def of(self, kind: str) -> list[dict]:
        return [e for e in list(self.events) if e["event"] == kind]


def _replace(target: Path, source: Path) -> None:
    tmp = target.with_name(target.name + ".new")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def test_watched_file_and_restart_refuse_an_older_release(tmp_path: Path, keys: dict) -> None:
    """The README's form (stdout sink, default spool folder) with --trust-key and --watch-model."""
    v1 = _signed(tmp_path, "v1", keys["key"], release=1, threshold=0.3)
    v2 = _signed(tmp_path, "v2", keys["key"], release=2, threshold=0.5)
    v3 = _signed(tmp_path, "v3", keys["key"], release=3, threshold=0.4)
    run = tmp_path / "run"
    run.mkdir()
    live = run / "model.onnx"
    shutil.copyfile(v2, live)
    proc = _agent(tmp_path, run, live, "--watch-model", "--watch-interval", "0.1")
    out = Lines(proc)
    try:  # the start's log line comes once the watcher has taken its first look at the file
        assert wait_until(lambda: "streams (~" in (run / "agent.log").read_text(), 60)
        _replace(live, v1)
        assert wait_until(lambda: out.of("model_refused"), 30), out.events
        refused = out.of("model_refused")[0]
        assert refused["origin"] == "file" and refused["running_sha256"] == file_sha256(v2)
        assert "is release 1, signed by 'ci'" in refused["reason"] and "older than release 2" in refused["reason"]
        assert "edgewatch model sign" in refused["reason"] and "model rollback --key" in refused["reason"]
        _replace(live, v3)  # the watcher goes on: a newer release is taken
        assert wait_until(lambda: out.of("model_swapped"), 30), out.events
        assert out.of("model_swapped")[0]["sha256"] == file_sha256(v3)
        _replace(live, v2)
        assert wait_until(lambda: len(out.of("model_refused")) == 2, 30), out.events
        assert "older than release 3" in out.of("model_refused")[1]["reason"]
        assert len(out.of("model_swapped")) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code, err = _finished(proc, run)
    assert code == 0, err[-3000:]
    state = json.loads((run / "spool" / "models" / "state.json").read_text())
    assert state["release"]["release"] == 3 and state["release"]["sha256"] == file_sha256(v3)

    # a restart does not bring the older file back: the store remembers release 3
    short = f"replay:{_replay(tmp_path, 20)}"
    code, err = _finished(_agent(tmp_path, run, live, source=short), run)
    assert code == 3, err[-3000:]
    assert f"--model {live} is release 2" in err and "older than release 3" in err, err[-3000:]
    old = _signed_v1(tmp_path, "old", keys["key"], threshold=0.3)
    code, err = _finished(_agent(tmp_path, run, old, source=short), run)
    assert code == 3 and "release 0 (signed before releases existed)" in err, err[-3000:]
    # going back on purpose: the old file signed again is a new release
    res = CliRunner().invoke(main, ["model", "sign", str(v1), "--key", str(keys["key"]), "-o", str(live)])
    assert res.exit_code == 0, res.output
    code, err = _finished(_agent(tmp_path, run, live, source=short), run)
    assert code == 0, err[-3000:]
    assert json.loads((run / "spool" / "models" / "state.json").read_text())["release"]["sha256"] == \
        file_sha256(live)


def test_files_signed_before_releases_run_until_a_release_has(tmp_path: Path, keys: dict) -> None:
    """Format-1 signatures are release 0: they replace each other, and are refused once a release ran."""
    a = _signed_v1(tmp_path, "a", keys["key"], threshold=0.5)
    b = _signed_v1(tmp_path, "b", keys["key"], threshold=0.4)
    c = _signed(tmp_path, "c", keys["key"], threshold=0.3)
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(a), "--source", f"replay:{_replay(tmp_path, 20)}",
                                    "--trust-key", str(keys["pub"]), "--spool-dir", str(tmp_path / "sp"), "-q"])
    assert res.exit_code == 0, res.output  # an old signed file still starts an agent with --trust-key
    live = tmp_path / "live.onnx"
    shutil.copyfile(a, live)
    trust = TrustPolicy.from_files([keys["pub"]])
    store = ModelStore(tmp_path / "store")
    data, verified = trust.check_file(live, "start")
    admit_at_start(store, verified, file_sha256(live), live)
    assert store.release.release == 0
    agent = Agent(ScoringModel(live), [], AgentOptions(stride=1, drift_every=0))
    agent.add_source(ReplaySource(_replay(tmp_path), FEATURES, rate=2000, loop=True))
    watcher = ModelFileWatcher(agent, live, Gate.for_agent(agent, trust, store), interval=0.05)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        for path, threshold in ((b, 0.4), (c, 0.3)):
            _replace(live, path)
            watcher.check()
            assert wait_until(lambda t=threshold: agent.threshold == t), path.name
        _replace(live, a)
        watcher.check()
        assert watcher.refused == 1 and agent.threshold == 0.3
    finally:
        watcher.close()
        agent.request_stop()
        runner.join(20)
    assert store.release.sha256 == file_sha256(c) and store.release.release == read_signature(c.read_bytes()).release


def test_without_trust_keys_nothing_changes(tmp_path: Path, keys: dict) -> None:
    """No --trust-key: an older signed file replaces a newer one as any file does, and no store is made."""
    old = _signed(tmp_path, "old", keys["key"], release=1, threshold=0.3)
    new = _signed(tmp_path, "new", keys["key"], release=2, threshold=0.5)
    live = tmp_path / "live.onnx"
    shutil.copyfile(new, live)
    agent = Agent(ScoringModel(live), [], AgentOptions(stride=1, drift_every=0))
    agent.add_source(ReplaySource(_replay(tmp_path), FEATURES, rate=2000, loop=True))
    watcher = ModelFileWatcher(agent, live, Gate.for_agent(agent), interval=0.05)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        _replace(live, old)
        watcher.check()
        assert wait_until(lambda: agent.threshold == 0.3)
    finally:
        watcher.close()
        agent.request_stop()
        runner.join(20)
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(old), "--source",
                                    f"replay:{_replay(tmp_path, 20)}", "--spool-dir", str(tmp_path / "sp"), "-q"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "sp").exists()


class _Fleet:
    """One agent (in this process) with an MQTT sink and the model receiver, and a thread running it."""

    def __init__(self, tmp: Path, broker, live: Path, trust: TrustPolicy, agent_id: str) -> None:  # noqa: ANN001
        self.sink = MqttSink.from_url(f"mqtt://{broker.host}:{broker.port}/rel{os.getpid()}", agent_id=agent_id,
                                      spool_dir=tmp / "sp")
        self.agent = Agent(ScoringModel(live), [self.sink], AgentOptions(stride=1, drift_every=0,
                                                                        agent_id=agent_id))
        self.agent.add_source(ReplaySource(_replay(tmp), FEATURES, rate=2000, loop=True))
        self.store = ModelStore(tmp / "models")
        if trust.keys:
            admit_at_start(self.store, trust.check(live.read_bytes(), "start", str(live)), file_sha256(live), live)
        self.receiver = MqttModelReceiver(self.agent, self.sink.connection, self.sink.topics,
                                          Gate.for_agent(self.agent, trust, self.store))
        self.reasons: list[str] = []
        self.agent.subscribe(on_event=lambda e: self.reasons.append(e["reason"]) if e["event"] == "model_refused"
                             else None)
        self._thread = threading.Thread(target=self.agent.run)
        self._thread.start()

    def install(self, path: Path, shadow: bool = False) -> bool:
        return self.receiver.handle(payloads.install_message(path, shadow=shadow).to_payload())

    def action(self, action: str, **fields) -> bool:  # noqa: ANN003
        return self.receiver.handle(payloads.action_message(action, **fields).to_payload())

    def runs(self, path: Path) -> bool:
        return wait_until(lambda: self.agent.model.sha256 == file_sha256(path))

    def refused(self, why: str) -> bool:
        return wait_until(lambda: any(why in r for r in self.reasons)) and why in self.receiver.last_outcome["reason"]

    def close(self) -> None:
        self.receiver.close()
        self.agent.request_stop()
        self._thread.join(20)


def test_signed_rollback_and_what_it_refuses(tmp_path: Path, keys: dict, broker) -> None:
    v1 = _signed(tmp_path, "v1", keys["key"], threshold=0.5)
    v2 = _signed(tmp_path, "v2", keys["key"], threshold=0.3)
    private, other = load_private_key(keys["key"]), load_private_key(keys["other"])
    f = _Fleet(tmp_path, broker, v1, TrustPolicy.from_files([keys["pub"]]), "r1")
    try:
        assert f.install(v2) and f.runs(v2)
        release2 = read_signature(v2.read_bytes()).release
        assert f.store.release.release == release2
        v1_sha = file_sha256(v1)

        def grant(**kw) -> dict:  # noqa: ANN003
            return RollbackGrant.sign(**{"private": private, "agent": "r1", "sha256": v1_sha, **kw}).to_json()

        forged = {**grant(), "release": grant()["release"] + 10**12}
        refusals = [
            ({}, "send it signed ('edgewatch model rollback --key KEY')"),
            ({"grant": grant(private=other)}, "which is not a trusted key"),
            ({"grant": grant(agent="r2")}, "signed for agent 'r2', not for this agent ('r1')"),
            ({"grant": grant(sha256=file_sha256(v2))}, f"the grant is for model {file_sha256(v2)[:12]}"),
            ({"grant": forged}, "edited or forged"),
            ({"grant": {"format": "edgewatch-rollback/9"}}, "its grant is damaged"),
            ({"grant": grant(), "sha256": "ab" * 32}, "this agent's previous model is"),
        ]
        for fields, why in refusals:
            assert not f.action("rollback", **fields)
            assert f.refused(why), (why, f.reasons)
            assert f.agent.model.sha256 == file_sha256(v2) and f.store.release.release == release2
        good = grant()
        assert f.action("rollback", grant=good, note="v2 misses faults") and f.runs(v1)
        assert f.store.release.release == good["release"] > release2
        assert f.store.slots["live"].release == good["release"] and f.store.slots["previous"].sha256 == \
            file_sha256(v2)
        # neither the grant nor the release it rolled back from can be replayed
        assert not f.action("rollback", grant=good) and f.refused(f"the grant is for model {v1_sha[:12]}")
        assert not f.install(v2) and f.refused(f"is release {release2}")
        assert not f.install(v2, shadow=True) and f.agent.shadow is None
        assert f.agent.model.sha256 == v1_sha
        # a shadow the mark overtook is not promoted
        v3 = _signed(tmp_path, "v3", keys["key"], threshold=0.4)
        v4 = _signed(tmp_path, "v4", keys["key"], threshold=0.45)
        assert f.install(v3, shadow=True) and wait_until(lambda: f.agent.shadow is not None)
        assert f.install(v4) and f.runs(v4)
        assert not f.action("promote") and f.refused(f"promote: the shadow model {file_sha256(v3)[:12]} is release")
        assert f.agent.model.sha256 == file_sha256(v4)
    finally:
        f.close()
    # a restart (here: a new store object on the same folder) keeps the mark
    assert ModelStore(tmp_path / "models").release.sha256 == file_sha256(v4)


def test_without_trust_keys_an_unsigned_rollback_still_works(tmp_path: Path, broker) -> None:
    v1 = write_model(tmp_path / "v1.onnx", make_card(window=5, threshold=0.5))
    v2 = write_model(tmp_path / "v2.onnx", make_card(window=5, threshold=0.3))
    f = _Fleet(tmp_path, broker, v1, TrustPolicy(allow_unsigned_remote=True), "u1")
    try:
        assert f.install(v2) and f.runs(v2)
        assert f.action("rollback") and f.runs(v1)
        assert f.store.release is None and f.store.slots["live"].release is None
    finally:
        f.close()
