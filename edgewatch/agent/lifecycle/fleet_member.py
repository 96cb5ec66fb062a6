"""The agent's side of the fleet contract (docs/fleet.md): retained status, commands, shadow reports.

One thread per agent with a fleet broker (``--fleet-broker``, or the
first MQTT sink's): it publishes the retained status every
``status_interval`` seconds (and right after a model change), answers
``shadow_report`` commands, publishes a shadow report every
``shadow_interval`` seconds while a model is in shadow, and checks the
shadow's ``--promote-if`` rule once a second. It only reads the agent's
counters, so the scoring loop never waits for it. It is given the broker
connection and the agent's :class:`~edgewatch.mqtt.topics.Topics`, and the
status publisher of those topics (shared with an MQTT sink on them, whose
status then is this one's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgewatch.mqtt import payloads
from edgewatch.wire.json import dumps, iso, iso_now

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent
    from edgewatch.agent.lifecycle.receiver import MqttModelReceiver
    from edgewatch.mqtt.connection import BrokerConnection
    from edgewatch.mqtt.status import StatusPublisher
    from edgewatch.mqtt.topics import Topics

log = logging.getLogger(__name__)

MODEL_EVENTS = frozenset({"model_swapped", "model_shadow", "model_refused", "model_unchanged"})


class FleetMember:
    """See the module docstring; ``receiver`` is the model-topic receiver when ``--model-topic`` is on,
    ``spool_depth`` says how many alerts wait in the MQTT sinks' spools (for the status).

    ``publish_events``: publish the model events (``model_swapped``, ``model_refused`` ...: the outcomes
    ``edgewatch model publish`` waits for) on the events topic, for a fleet broker no MQTT sink sends
    events to. They are not spooled: an outcome the broker misses shows in the next status.
    """

    def __init__(self, agent: Agent, connection: BrokerConnection, topics: Topics, status: StatusPublisher,
                 receiver: MqttModelReceiver | None = None, intervals: tuple[float, float] = (10.0, 60.0),
                 spool_depth: Callable[[], int] = lambda: 0, publish_events: bool = False) -> None:
        self.agent = agent
        self.connection = connection
        self.topics = topics
        self.status = status
        self.receiver = receiver
        self.status_interval, self.shadow_interval = intervals
        self.spool_depth = spool_depth
        self.publish_events = publish_events
        self.keepalive = connection.options.keepalive
        self.start_model = {"sha256": agent.model.sha256, "note": "", "since": iso(agent.started_at),
                            "origin": "start"}
        self.last_alert: dict[str, Any] | None = None
        self._rate_at = (time.monotonic(), agent.summary.messages)
        self._rate = 0.0
        self._last_shadow_report = time.monotonic()
        self._seen_outcome: Any = None
        self._requests: list[str] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        status.payload = self.status_payload
        self.command_topic = connection.subscribe(topics.command, self._on_command)
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()
        if connection.connected:  # else its connect publishes this status (queued now, it would land after that)
            status.publish("online")

    # -- the agent's events (its loop thread): keep it cheap --------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in ("start", "end"):
            self.last_alert = {"time": event.get("time"), "stream": event.get("stream"), "event": kind,
                               "id": event.get("id")}
        elif kind in MODEL_EVENTS:
            self._wake.set()  # status right away
            if self.publish_events:  # the operator waits for it there (no MQTT sink sends it)
                self.connection.publish(self.topics.events, dumps(event).encode(), qos=1)

    # -- commands (paho's thread) ------------------------------------------------------

    def _on_command(self, msg: Any) -> None:
        try:
            obj = payloads.loads(msg.payload, "command")
        except payloads.ContractError as exc:
            log.warning("fleet command refused: %s", exc)
            return
        if obj.get("command") == payloads.SHADOW_REPORT:
            self._requests.append(str(obj.get("id") or ""))
            self._wake.set()
        else:
            log.warning("fleet command %r unknown (this agent knows %s)", obj.get("command"), list(payloads.COMMANDS))

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        next_status = time.monotonic() + self.status_interval
        while not self._stop.is_set():
            self._wake.wait(min(1.0, self.status_interval))
            woke = self._wake.is_set()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._tick(woke, next_status)
            except Exception:  # never let a status bug end the thread
                log.exception("fleet status thread")
            if woke or time.monotonic() >= next_status:
                next_status = time.monotonic() + self.status_interval

    def _tick(self, woke: bool, next_status: float) -> None:
        now = time.monotonic()
        while self._requests:
            self.publish_shadow_report(self._requests.pop(0))
        scorer = self.agent.shadow
        if scorer is not None and now - self._last_shadow_report >= self.shadow_interval:
            self.publish_shadow_report(None)
        if scorer is not None and scorer.rule is not None and self.receiver is not None:
            decision = scorer.promotion()
            if decision is not None and decision[0]:
                self.publish_shadow_report(None)  # the report that says why, before the model changes
                self.receiver.promote(why=decision[1], message_id=None)
                woke = True
        outcome = self.receiver.last_outcome if self.receiver else None
        if outcome is not self._seen_outcome:
            self._seen_outcome, woke = outcome, True
        if woke or now >= next_status:
            self.status.publish("online")

    def publish_shadow_report(self, request_id: str | None) -> None:
        scorer = self.agent.shadow
        self._last_shadow_report = time.monotonic()
        if scorer is None:
            if request_id is not None:
                body: dict[str, Any] = {"shadow": None, "reason": "no model runs in shadow on this agent"}
            else:
                return
        else:
            body = scorer.report(self.agent.model.sha256)
        report = {"v": payloads.CONTRACT_VERSION, "agent": self.agent.options.agent_id, "time": iso_now(),
                  **({"request_id": request_id} if request_id is not None else {}), **body}
        self.connection.publish(self.topics.shadow, dumps(report).encode(), qos=1, retain=True)

    # -- the status payload --------------------------------------------------------------

    def status_payload(self, state: str) -> bytes:
        a = self.agent
        now_m = time.monotonic()
        t0, n0 = self._rate_at
        messages = a.summary.messages
        if now_m - t0 >= 0.5:
            self._rate = (messages - n0) / (now_m - t0)
            self._rate_at = (now_m, messages)
        now = time.time()
        store = self.receiver.store if self.receiver else None
        live = store.slots["live"] if store else None
        pending = self.receiver.pending if self.receiver else None
        entry = next((e for e in (live, pending) if e is not None and e.sha256 == a.model.sha256), None)
        model = entry.to_status() if entry is not None else dict(self.start_model)
        model["sha256"] = a.model.sha256
        model["family"] = a.card.family
        prev = store.slots["previous"] if store else None
        shadow = None
        if a.shadow is not None:
            entry = store.slots["shadow"] if store else None
            shadow = {**(entry.to_status() if entry else {}), "sha256": a.shadow.sha256}
        status = {
            "v": payloads.CONTRACT_VERSION, "agent": a.options.agent_id, "state": state,
            "time": iso(now), "ts": now, "interval_s": self.status_interval, "keepalive_s": self.keepalive,
            # three missed statuses, and never later than the broker's last will would say it
            "stale_after_s": min(3 * self.status_interval, self.status_interval + 1.5 * self.keepalive),
            "started_at": iso(a.started_at), "uptime_s": round(now - a.started_at, 1),
            "model": model, "previous_model": prev.to_status() if prev else None, "shadow": shadow,
            "last_model_outcome": self.receiver.last_outcome if self.receiver else None,
            "messages": messages, "messages_per_s": round(self._rate, 2),
            "bad": sum(a.summary.bad.values()), "bad_by_reason": dict(a.summary.bad),
            "streams": len(a.streams), "open_episodes": len(a.tracker.open_slots()),
            "last_alert": self.last_alert, "spool_depth": self.spool_depth(),
        }
        return dumps(status).encode()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        self.connection.unsubscribe(self.command_topic, keep_session=True)  # no packet races the DISCONNECT
        self.status.close()
