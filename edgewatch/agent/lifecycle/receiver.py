"""``--model-topic``: model messages of the fleet contract on the retained topic ``PREFIX/AGENT/model``.

A message (:class:`~edgewatch.mqtt.payloads.ModelMessage`) installs a
model live or in shadow, rolls back to the previous one, or promotes the
shadow model; the first form, a JSON object ``{"sha256", "name",
"onnx_b64"}``, is a live install. Before anything is decoded, the message
size is checked against ``--max-model-mb``; an install then goes through
:func:`~edgewatch.agent.lifecycle.accept.accept` like every model (size,
sha256 against the header, trust, release, build, features), and its file
is written to the model store only once it passed the checks; a file the
loader refuses is deleted again, so a refusal leaves nothing behind. A
retained message equal to the running model is ignored, so restarts are
quiet; the id of the last message applied is kept in the store, so its
retained copy is not applied twice (a rollback stays rolled back).

With trusted keys, going back to an older release takes a signed rollback
grant (:mod:`edgewatch.agent.lifecycle.releases`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewatch import digests
from edgewatch.agent import events
from edgewatch.agent.lifecycle.accept import Candidate, Gate, Origin, Outcome, Verdict, accept, refuse
from edgewatch.agent.lifecycle.releases import RollbackGrant
from edgewatch.agent.lifecycle.shadow import PromotionRule
from edgewatch.agent.lifecycle.signing import read_signature
from edgewatch.agent.lifecycle.store import ModelStore, StoredModel
from edgewatch.errors import BadModelFile
from edgewatch.mqtt.payloads import INSTALL, PROMOTE, ROLLBACK, ContractError, ModelMessage
from edgewatch.wire.json import iso, iso_now

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent
    from edgewatch.mqtt.connection import BrokerConnection
    from edgewatch.mqtt.topics import Topics

log = logging.getLogger(__name__)

# models are a few MB (the S2 conv AE, the largest family, is 14 MB fp32); the agent's unit has MemoryMax=512M
MAX_MODEL_BYTES = 64 * 2**20


class MqttModelReceiver:
    """Takes model messages (fleet contract v1) from the retained ``PREFIX/AGENT/model`` topic.

    ``install`` (live, or in shadow), ``rollback`` (to the previous model,
    kept on disk) and ``promote`` (the shadow model becomes live); the
    models and the id of the last message applied live in the gate's
    :class:`~edgewatch.agent.lifecycle.store.ModelStore`, and its trust
    policy decides which files may run (none unsigned by default).
    ``max_bytes`` bounds the model file, and its base64 message, before
    anything is decoded or written. paho has the message in memory by then:
    bound the broker's ``message_size_limit`` too.
    """

    def __init__(self, agent: Agent, connection: BrokerConnection, topics: Topics, gate: Gate,
                 max_bytes: int = MAX_MODEL_BYTES) -> None:
        if gate.store is None:
            raise ValueError("the model topic keeps its models in a ModelStore: give the gate one")
        self.agent = agent
        self.gate = replace(gate, max_bytes=max_bytes)
        self.store: ModelStore = gate.store
        self.trust = gate.trust
        self.max_bytes = max_bytes
        self.accepted = 0
        self.refused = 0
        # the entry of a swap queued but maybe not yet recorded in the store, so a status written in
        # between names the new model's note and time, not the start's
        self.pending: StoredModel | None = None
        self.last_outcome: dict[str, Any] | None = None  # the last message's outcome, as the status shows it
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
        self.connection = connection
        self.topic = connection.subscribe(topics.model, self._on_message)

    def _resume_shadow(self) -> None:
        """After a restart, the model that was in shadow goes on in shadow (its retained message was applied)."""
        entry = self.store.get("shadow")
        if entry is None:
            self.store.slots["shadow"] = None
            return
        try:
            rule = PromotionRule.parse(entry.promote_if) if entry.promote_if else None
        except ValueError as exc:
            rule, outcome = None, refuse(self.agent, f"--promote-if: {exc}", entry.sha256, Origin.STORE)
        else:
            outcome = accept(self.agent, Candidate(
                Path(entry.path), Origin.STORE, sha256=entry.sha256, shadow=True, rule=rule,
                info={"action": INSTALL, "message_id": entry.message_id, "note": entry.note, "resumed": True}),
                self.gate)
        if outcome.verdict is Verdict.SHADOW:
            log.info("shadow model %s resumed from %s", entry.sha256[:12], self.store.dir)
            return
        log.warning("shadow model %s not resumed: %s", entry.sha256[:12], outcome.reason)
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
        return self._refused(refuse(self.agent, reason, sha, Origin.MQTT, info), info)

    def _refused(self, outcome: Outcome, info: dict[str, Any]) -> bool:
        self.refused += 1
        self.last_outcome = {"event": outcome.verdict.value, "time": iso_now(), "sha256": outcome.sha256,
                             "reason": outcome.reason, **info}
        return False

    def _applied(self, event: str, sha: str, info: dict[str, Any], message_id: str | None) -> bool:
        self.accepted += 1
        self.last_outcome = {"event": event, "time": iso_now(), "sha256": sha, **info}
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
        if (sha == self.agent.model.sha256 and not msg.shadow and len(data) <= self.max_bytes
                and digests.sha256(data).hexdigest() == sha):
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
        path = self.store.path_for(sha)
        existed = path.exists()
        entry = StoredModel(sha, str(path), msg.note, iso_now(), "mqtt", msg.id, msg.promote_if,
                            _claimed_release(data) if self.trust.keys else None)
        if not msg.shadow:
            self.pending = entry
        try:
            outcome = accept(self.agent, Candidate(path, Origin.MQTT, data=data, sha256=sha, shadow=msg.shadow,
                                                   rule=rule, info=info, keep=lambda d: self.store.put(sha, d)),
                             self.gate)
            if not outcome.changed:
                self._drop_unused(path, existed)
                return self._refused(outcome, info) if outcome.verdict is Verdict.REFUSED else False
            entry = replace(entry, release=outcome.release)
            if msg.shadow:
                self.store.slots["shadow"] = entry
                return self._applied(outcome.verdict.value, sha, info, msg.id)
            self._new_live(entry)
        finally:
            self.pending = None
        return self._applied(outcome.verdict.value, sha, info, msg.id)

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
        entry = replace(prev, since=iso_now(), message_id=msg.id,
                        release=granted if granted is not None else prev.release)
        self.pending = entry
        try:
            outcome = accept(self.agent, Candidate(Path(prev.path), Origin.MQTT, data=data, sha256=prev.sha256,
                                                   granted=granted, info=info), self.gate)
            if outcome.verdict is not Verdict.SWAPPED:
                return self._refused(outcome, info) if outcome.verdict is Verdict.REFUSED else False
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
            self.agent.queue_model(runtime, info)
        except (BadModelFile, OSError) as exc:
            return self._refuse(str(exc), scorer.sha256, info)
        scorer.promoted = True
        self.agent.queue_shadow(None)
        self._new_live(replace(entry, since=iso_now(), promote_if=None))
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
        if digests.sha256(data).hexdigest() != entry.sha256:
            log.warning("model store: %s changed since it ran; it cannot be rolled back to", path)
            return None
        return replace(entry, path=str(self.store.put(entry.sha256, data)))

    def _drop_unused(self, path: Path, existed: bool) -> None:
        if not existed and all(m is None or Path(m.path) != path for m in self.store.slots.values()):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.connection.unsubscribe(self.topic, keep_session=True)


def _claimed_release(data: bytes) -> int | None:
    """The release a model file's signature claims (checked by the gate); None for an unsigned file."""
    try:
        sig = read_signature(data, "model message")
    except (BadModelFile, ValueError):
        return None
    return sig.release if sig is not None else None
