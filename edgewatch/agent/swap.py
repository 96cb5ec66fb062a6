"""Hot model swap: a new model file on disk, or on a retained MQTT topic, replaces the running one.

Both paths end the same way: :meth:`Agent.load_candidate` builds a
:class:`~edgewatch.agent.runtime.ModelRuntime` from the file with the
agent's run-time overrides and model checks (so a card that cannot run, a
post-process parameter the kind does not know, a drift reference that does
not fit, k > n, is found here, off the scoring loop) and checks it reads
the same features; :meth:`Agent.swap_runtime` then installs it between two
batches, so no message is dropped. A candidate that fails any check is
refused: ``edgewatch_model_swaps{result="refused"}`` counts it, the log
says why, a ``model_refused`` event goes to the sinks, and the old model
keeps running.

**File** (``--watch-model``): the model path is polled (mtime, size, inode);
a change that stays put for one more poll is loaded. Replace the file
atomically (write a temporary file beside it, then ``mv``/rename).

**MQTT** (``--model-topic``): ``PREFIX/AGENT/model``, retained, QoS 1, a model
message of the fleet contract (:class:`~edgewatch.fleet.topics.ModelMessage`:
install live or in shadow, rollback, promote; the first form, a JSON object
``{"sha256", "name", "onnx_b64"}`` from :func:`model_message`, is a live
install). For an install, in this order, before anything touches the disk: the message size against the limit
(``--max-model-mb``), the JSON, the sha256 against the bytes, the
:class:`~edgewatch.agent.signing.TrustPolicy` (signed by a trusted key, or
unsigned allowed explicitly). Only then is the file written to ``models/``
under the spool directory and loaded from there; a file the loader refuses
is deleted again, so a refusal leaves nothing behind. A retained message
equal to the running model is ignored, so restarts are quiet.

Every path (start, file, MQTT) checks the trust policy on the very bytes it
then loads, by sha256, so a file swapped between the check and the load is
refused rather than run unchecked. With trusted keys, every path also
refuses a release older than the highest this agent has run, kept in its
:class:`~edgewatch.agent.model_store.ModelStore` (:mod:`edgewatch.agent.releases`);
going back takes a signed rollback or a re-signed file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewatch.agent import events
from edgewatch.agent.model_store import ModelStore, StoredModel
from edgewatch.agent.releases import RollbackGrant
from edgewatch.agent.shadow import PromotionRule, ShadowScorer
from edgewatch.agent.signing import TrustPolicy, read_signature
from edgewatch.errors import BadModelFile, EdgewatchError
from edgewatch.fleet.topics import INSTALL, PROMOTE, ROLLBACK, ContractError, ModelMessage, iso

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent
    from edgewatch.agent.mqtt import MqttSink

log = logging.getLogger(__name__)

# models are a few MB (the S2 conv AE, the largest family, is 14 MB fp32); the agent's unit has MemoryMax=512M
MAX_MODEL_BYTES = 64 * 2**20


def offer(agent: Agent, path: Path, expected_sha256: str | None, origin: str,
          trust: TrustPolicy | None = None, data: bytes | None = None, info: dict[str, Any] | None = None,
          store: ModelStore | None = None, granted: int | None = None) -> bool:
    """Check ``path`` (its bytes ``data`` when already read) against ``trust``, load it and queue it
    for the agent; on any failure refuse it. True when accepted.

    With trusted keys and a ``store``, a release below the store's mark is
    refused and an accepted one moves the mark; ``granted`` is the release a
    signed rollback gives the file in place of its own.
    """
    trust = trust or TrustPolicy()
    try:
        if data is None:
            data = _read(path)
        verified = trust.check(data, origin, str(path))
        sha = hashlib.sha256(data).hexdigest()
        if expected_sha256 and expected_sha256.lower() != sha:
            raise BadModelFile(f"{path} has sha256 {sha}, expected {expected_sha256.lower()}")
        order = None  # (release, how it is told) when releases are ordered: keys, and a store to keep the mark
        if verified is not None and store is not None:
            s = verified.signature
            order = ((s.release, f", signed by {s.signer!r} at {s.signed_at}") if granted is None
                     else (granted, " (granted by a signed rollback)"))
            store.check_release(order[0], sha, str(path), order[1])  # before the work of loading it
        # built from the very bytes checked: a file swapped in between cannot slip past
        runtime = agent.load_candidate(path, expected_sha256=sha, data=data)
        if runtime.sha256 == agent.model.sha256:
            return False
        if order is not None and store is not None:  # again, and recorded: a mark that cannot be kept refuses it
            store.admit(order[0], sha, str(path), order[1])
        agent.swap_runtime(runtime, info)
        if verified is not None:
            log.info("model %s %s", path, verified.describe())
    except EdgewatchError as exc:
        agent.refuse_model(str(exc), sha256=expected_sha256, origin=origin, info=info)
        return False
    except Exception as exc:  # anything else a broken file can provoke
        agent.refuse_model(f"{type(exc).__name__}: {exc}", sha256=expected_sha256, origin=origin, info=info)
        return False
    log.info("model %s (%s) accepted from %s; swapping in", path, runtime.sha256[:12], origin)
    return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadModelFile(f"cannot read model file {path}: {exc.strerror}") from None


class ModelFileWatcher:
    """Polls the model path and offers a changed file to the agent."""

    def __init__(self, agent: Agent, path: str | os.PathLike[str], interval: float = 1.0,
                 trust: TrustPolicy | None = None, store: ModelStore | None = None) -> None:
        self.agent = agent
        self.path = Path(path)
        self.trust = trust or TrustPolicy()
        self.store = store  # with trusted keys: refuses a release older than its mark
        self.interval = interval
        self.accepted = 0
        self.refused = 0
        self._last = self._stat()
        self._seen_sha = agent.model.sha256
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def start(self) -> ModelFileWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> None:
        """One poll: offer the file when it changed and then stayed put for one interval."""
        now = self._stat()
        if now is None or now == self._last:
            return
        self._stop.wait(min(self.interval, 0.5))
        if self._stat() != now:
            return  # still being written; next poll
        self._last = now
        try:
            data = self.path.read_bytes()
        except OSError:
            return
        sha = hashlib.sha256(data).hexdigest()
        if sha == self._seen_sha:
            return
        self._seen_sha = sha
        if offer(self.agent, self.path, sha, origin="file", trust=self.trust, data=data, store=self.store):
            self.accepted += 1
        else:
            self.refused += 1

    def close(self) -> None:
        self._stop.set()


def model_message(path: str | os.PathLike[str]) -> bytes:
    """The payload to publish (retained) on ``PREFIX/AGENT/model`` to ship a model file."""
    data = Path(path).read_bytes()
    return json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "name": Path(path).name,
                       "onnx_b64": base64.b64encode(data).decode("ascii")}).encode()


class MqttModelReceiver:
    """Takes model messages (fleet contract v1) from the retained ``PREFIX/AGENT/model`` topic.

    ``install`` (live, or in shadow), ``rollback`` (to the previous model,
    kept on disk) and ``promote`` (the shadow model becomes live); the
    models and the id of the last message applied live in a
    :class:`~edgewatch.agent.model_store.ModelStore`. ``trust`` decides
    which files may run (default: none unsigned, see :class:`TrustPolicy`);
    ``max_bytes`` bounds the model file, and its base64 message, before
    anything is decoded or written. paho has the message in memory by then:
    bound the broker's ``message_size_limit`` too.
    """

    def __init__(self, agent: Agent, sink: MqttSink, directory: str | os.PathLike[str],
                 trust: TrustPolicy | None = None, max_bytes: int = MAX_MODEL_BYTES,
                 store: ModelStore | None = None) -> None:
        self.agent = agent
        self.store = store or ModelStore(directory)
        self.dir = self.store.dir
        self.trust = trust or TrustPolicy()
        self.max_bytes = max_bytes
        self.accepted = 0
        self.refused = 0
        # the entry of a swap queued but maybe not yet recorded in the store, so a status written in
        # between names the new model's note and time, not the start's
        self.pending: StoredModel | None = None
        self.last_outcome: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one model change at a time (this thread, and promote-if checks)
        self._latest: bytes | None = None
        self._too_big: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-topic", daemon=True)
        self._thread.start()
        live = self.store.slots["live"]
        if live is None or live.sha256 != agent.model.sha256:  # started with --model: that is the live one
            mark = self.store.release
            self.store.slots["live"] = StoredModel(agent.model.sha256, str(agent.model.path), "",
                                                   iso(agent.started_at), "start",
                                                   release=mark.release if mark and mark.sha256 == agent.model.sha256
                                                   else None)
            self.store.save()
        self._resume_shadow()
        self.connection = sink.connection
        self.topic = self.connection.subscribe(f"{sink.base}/model", self._on_message)

    def _resume_shadow(self) -> None:
        """After a restart, the model that was in shadow goes on in shadow (its retained message was applied)."""
        entry = self.store.get("shadow")
        if entry is None:
            self.store.slots["shadow"] = None
            return
        try:
            data = Path(entry.path).read_bytes()
            self.trust.check(data, "mqtt", f"shadow model {entry.path}")
            runtime = self.agent.load_candidate(Path(entry.path), expected_sha256=entry.sha256, data=data)
            rule = PromotionRule.parse(entry.promote_if) if entry.promote_if else None
            self.agent.set_shadow(ShadowScorer(runtime, self.agent.threshold, note=entry.note, rule=rule,
                                               message_id=entry.message_id),
                                  {"action": INSTALL, "message_id": entry.message_id, "resumed": True})
            log.info("shadow model %s resumed from %s", entry.sha256[:12], self.store.dir)
        except (OSError, ValueError, EdgewatchError) as exc:
            log.warning("shadow model %s not resumed: %s", entry.sha256[:12], exc)
            self.store.slots["shadow"] = None
            self.store.save()

    def _on_message(self, msg: Any) -> None:
        # paho's network thread: keep it short, loading a model happens in our thread
        size = len(msg.payload)
        if size > self._message_limit():
            self._too_big, self._latest = size, None  # drop our reference at once
        else:
            self._latest, self._too_big = bytes(msg.payload), None
        self._wake.set()

    def _message_limit(self) -> int:
        return self.max_bytes * 4 // 3 + 4096  # base64 plus the JSON header

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            payload, self._latest = self._latest, None
            too_big, self._too_big = self._too_big, None
            if too_big is not None:
                self._refuse(f"model message of {too_big} bytes is over the limit of {self._message_limit()} "
                             f"bytes (--max-model-mb {self.max_bytes / 2**20:g}); nothing was written", None, {})
            elif payload:
                self.handle(payload)

    # -- outcomes ------------------------------------------------------------------------

    def _refuse(self, reason: str, sha: str | None, info: dict[str, Any]) -> bool:
        self.refused += 1
        self.agent.refuse_model(reason, sha256=sha, origin="mqtt", info=info)
        self.last_outcome = {"event": "model_refused", "time": iso(), "sha256": sha, "reason": reason, **info}
        return False

    def _applied(self, event: str, sha: str, info: dict[str, Any], message_id: str | None) -> bool:
        self.accepted += 1
        self.last_outcome = {"event": event, "time": iso(), "sha256": sha, **info}
        if message_id:
            self.store.last_message_id = message_id
        self.store.save()
        return True

    # -- messages ------------------------------------------------------------------------

    def handle(self, payload: bytes) -> bool:
        """Check and apply one model message; True when it changed the live or shadow model."""
        with self._lock:
            if len(payload) > self._message_limit():
                return self._refuse(f"model message of {len(payload)} bytes is over the limit of "
                                    f"{self._message_limit()} bytes; nothing was written", None, {})
            try:
                msg = ModelMessage.from_payload(payload)
            except ContractError as exc:
                return self._refuse(str(exc), None, {})
            if msg.id == self.store.last_message_id:
                return False  # the retained copy of a message applied before this restart
            info = {"message_id": msg.id, "action": msg.action, "note": msg.note}
            if msg.action == INSTALL:
                return self._install(msg, info)
            if msg.action == ROLLBACK:
                return self._rollback(msg, info)
            return self._promote(msg.id, info, msg.sha256)

    def _install(self, msg: ModelMessage, info: dict[str, Any]) -> bool:
        assert msg.data is not None and msg.sha256 is not None
        sha, data = msg.sha256, msg.data
        info = {**info, "shadow": msg.shadow}
        if len(data) > self.max_bytes:
            return self._refuse(f"model file of {len(data)} bytes is over the limit of {self.max_bytes} bytes "
                                "(--max-model-mb); nothing was written", sha, info)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            return self._refuse(f"model message says sha256 {sha} but its file has {actual}: damaged in transit?",
                                sha, info)
        live = self.agent.model.sha256
        if sha == live and not msg.shadow:
            self.agent.post_event(events.model_unchanged_event(agent=self.agent.options.agent_id, now=time.time(),
                                                               sha256=sha, **info))
            self.store.last_message_id = msg.id
            self.store.save()
            return False
        rule = None
        if msg.promote_if:
            try:
                rule = PromotionRule.parse(msg.promote_if)
            except ValueError as exc:
                return self._refuse(f"--promote-if: {exc}", sha, info)
        source = f"model {msg.name!r} ({sha[:12]}) from MQTT"
        try:
            verified = self.trust.check(data, "mqtt", source)
            if verified is not None:  # a shadow older than the mark could never be promoted: refuse it now
                s = verified.signature
                self.store.check_release(s.release, sha, source, f", signed by {s.signer!r} at {s.signed_at}")
        except BadModelFile as exc:
            return self._refuse(str(exc), sha, info)
        path = self.store.path_for(sha)
        existed = path.exists()
        self.store.put(sha, data)
        entry = StoredModel(sha, str(path), msg.note, iso(), "mqtt", msg.id, msg.promote_if,
                            verified.signature.release if verified is not None else None)
        if msg.shadow:
            try:
                runtime = self.agent.load_candidate(path, expected_sha256=sha, data=data)
                scorer = ShadowScorer(runtime, self.agent.threshold, note=msg.note, rule=rule, message_id=msg.id)
                self.agent.set_shadow(scorer, info)
            except Exception as exc:  # BadModelFile, BadOverride, or whatever a broken file provokes
                self._drop_unused(path, existed)
                reason = str(exc) if isinstance(exc, EdgewatchError) else f"{type(exc).__name__}: {exc}"
                return self._refuse(reason, sha, info)
            self.store.slots["shadow"] = entry
            log.info("model %s (%s) from MQTT runs in shadow", msg.name, sha[:12])
            return self._applied("model_shadow", sha, info, msg.id)
        self.pending = entry
        try:
            if not offer(self.agent, path, sha, origin="mqtt", trust=self.trust, data=data, info=info,
                         store=self.store):
                self._drop_unused(path, existed)
                self.refused += 1
                self.last_outcome = {"event": "model_refused", "time": iso(), "sha256": sha, **info}
                return False
            self._new_live(entry)
        finally:
            self.pending = None
        return self._applied("model_swapped", sha, info, msg.id)

    def _rollback(self, msg: ModelMessage, info: dict[str, Any]) -> bool:
        """Back to the previous model; with trusted keys only by a signed grant, which gives it a new release."""
        prev = self.store.get("previous")
        if prev is None:
            return self._refuse("rollback: no previous model is kept on this agent", msg.sha256, info)
        if msg.sha256 and msg.sha256 != prev.sha256:
            return self._refuse(f"rollback to {msg.sha256[:12]}: this agent's previous model is {prev.sha256[:12]}",
                                msg.sha256, info)
        granted = None
        if self.trust.keys:
            if msg.grant is None:
                return self._refuse("rollback: this agent runs only signed releases (--trust-key), and going back "
                                    "is a new release: send it signed ('edgewatch model rollback --key KEY')",
                                    prev.sha256, info)
            try:
                grant = RollbackGrant.from_json(msg.grant, "rollback")
                grant.verify(self.trust.keys, self.agent.options.agent_id, "rollback")
            except BadModelFile as exc:
                return self._refuse(str(exc), prev.sha256, info)
            if grant.sha256 != prev.sha256:
                return self._refuse(f"rollback: the grant is for model {grant.sha256[:12]}, this agent's previous "
                                    f"model is {prev.sha256[:12]}", prev.sha256, info)
            granted = grant.release
        try:
            data = Path(prev.path).read_bytes()
        except OSError as exc:
            return self._refuse(f"rollback: previous model {prev.path} unreadable: {exc.strerror}", prev.sha256, info)
        entry = replace(prev, since=iso(), message_id=msg.id, release=granted if granted is not None else prev.release)
        self.pending = entry
        try:
            if not offer(self.agent, Path(prev.path), prev.sha256, origin="mqtt", trust=self.trust, data=data,
                         info=info, store=self.store, granted=granted):
                self.refused += 1
                self.last_outcome = {"event": "model_refused", "time": iso(), "sha256": prev.sha256, **info}
                return False
            current = self.store.slots["live"]
            self.store.slots["live"] = entry
            self.store.slots["previous"] = current
        finally:
            self.pending = None
        return self._applied("model_swapped", prev.sha256, info, msg.id)

    def promote(self, why: str = "", message_id: str | None = None) -> bool:
        """Make the shadow model live (``--promote-if`` calls this; so does a ``promote`` message)."""
        with self._lock:
            return self._promote(message_id, {"action": PROMOTE, "message_id": message_id,
                                              **({"why": why} if why else {})}, None)

    def _promote(self, message_id: str | None, info: dict[str, Any], sha: str | None) -> bool:
        scorer = self.agent.shadow
        if scorer is None or scorer.promoted:
            return self._refuse("promote: no model runs in shadow on this agent", sha, info)
        if sha and sha != scorer.sha256:
            return self._refuse(f"promote: the shadow model is {scorer.sha256[:12]}, not {sha[:12]}", sha, info)
        runtime = scorer.runtime.fresh()  # its own episodes were never sent: start from empty state
        entry = self.store.slots["shadow"] or StoredModel(scorer.sha256, str(runtime.model.path), scorer.note)
        try:
            if self.trust.keys:  # the mark may have moved past it while it ran in shadow
                release = self._release_of(entry)
                self.store.admit(release, scorer.sha256, f"promote: the shadow model {scorer.sha256[:12]}")
                entry = replace(entry, release=release)
            self.agent.swap_runtime(runtime, info)
        except (BadModelFile, OSError) as exc:
            return self._refuse(str(exc), scorer.sha256, info)
        scorer.promoted = True
        self.agent.set_shadow(None)
        self._new_live(replace(entry, since=iso(), promote_if=None))
        self.store.slots["shadow"] = None
        log.info("shadow model %s promoted to live %s", scorer.sha256[:12], info.get("why", ""))
        return self._applied("model_swapped", scorer.sha256, info, message_id)

    @staticmethod
    def _release_of(entry: StoredModel) -> int:
        """The stored model's release (read from its file when the store predates releases)."""
        if entry.release is not None:
            return entry.release
        sig = read_signature(Path(entry.path).read_bytes(), entry.path)
        return sig.release if sig is not None else 0

    def _new_live(self, entry: StoredModel) -> None:
        current = self.store.slots["live"]
        if current is not None and current.sha256 != entry.sha256:
            self.store.slots["previous"] = self._kept(current)
        self.store.slots["live"] = entry

    def _kept(self, entry: StoredModel) -> StoredModel | None:
        """``entry`` with its file in the store (the --model of a first start lives elsewhere)."""
        path = Path(entry.path)
        if path.parent == self.store.dir:
            return entry
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            log.warning("model store: %s changed since it ran; it cannot be rolled back to", path)
            return None
        return replace(entry, path=str(self.store.put(entry.sha256, data)))

    def _drop_unused(self, path: Path, existed: bool) -> None:
        if not existed and all(m is None or Path(m.path) != path for m in self.store.slots.values()):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.connection.unsubscribe(self.topic)
