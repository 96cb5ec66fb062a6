"""The operator's side of the fleet: publish, roll back and promote models; read the agents' status.

Only the topic contract (:mod:`edgewatch.mqtt.topics`, :mod:`edgewatch.mqtt.payloads`) is used, so this
works through any broker that speaks MQTT 3.1.1. The connection is the
agent's own :class:`~edgewatch.mqtt.connection.BrokerConnection` with a clean
session and a random client id, so an operator command leaves no session
behind on the broker.

"Every agent under PREFIX" means every agent that has a retained status
there (online or offline): MQTT has no wildcard publish, so a model goes
to each agent's own retained model topic, and an agent that is offline
finds it when it comes back.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from edgewatch.errors import EdgewatchError
from edgewatch.fleet.status import AgentStatus, read_status
from edgewatch.mqtt import payloads
from edgewatch.mqtt.connection import BrokerConnection, parse_broker_url
from edgewatch.mqtt.topics import Topics
from edgewatch.wire.json import dumps, iso_now

DISCOVER_SECONDS = 1.5  # retained messages come right after the SUBACK; this is ample on a LAN


class FleetError(EdgewatchError):
    """The operator command cannot do what was asked (no agents found, broker unreachable)."""


@dataclass
class Outcome:
    agent: str
    event: str  # model_swapped, model_shadow, model_refused, model_promoted, model_rolled_back
    reason: str = ""
    seconds: float = 0.0


class Operator:
    """One connection to the fleet's broker under one prefix."""

    def __init__(self, url: str, connect_timeout: float = 10.0, **broker_options: Any) -> None:
        options, path = parse_broker_url(url, client_id=f"edgewatch-op-{uuid.uuid4().hex[:12]}", **broker_options)
        self.prefix = path.strip("/") or "edgewatch"
        self.every = Topics.every_agent(self.prefix)  # filters over every agent's topics
        self.conn = BrokerConnection(replace(options, clean_session=True))
        self.conn.start()
        if not self.conn.wait_connected(connect_timeout):
            self.conn.close()
            raise FleetError(f"cannot reach the MQTT broker {options.address} within {connect_timeout:g} s")
        self._lock = threading.Lock()
        self.statuses: dict[str, tuple[bytes, float]] = {}  # agent -> (payload, when received)
        self._events: list[tuple[str, dict[str, Any], float]] = []
        self._status_filter: str | None = None
        self._events_filter: str | None = None

    # -- listening -----------------------------------------------------------------------

    def watch_status(self) -> None:
        if self._status_filter:
            return

        def take(msg: Any) -> None:
            agent = self.every.agent_of(msg.topic)
            if agent is not None:
                with self._lock:
                    if msg.payload:
                        self.statuses[agent] = (bytes(msg.payload), time.time())
                    else:
                        self.statuses.pop(agent, None)  # a cleared retained status: the agent was removed

        self._status_filter = self.conn.subscribe(self.every.status, take)

    def watch_events(self) -> None:
        if self._events_filter:
            return

        def take(msg: Any) -> None:
            agent = self.every.agent_of(msg.topic)
            try:
                event = json.loads(msg.payload)
            except (ValueError, UnicodeDecodeError):
                return
            if agent is not None and isinstance(event, dict):
                with self._lock:
                    self._events.append((agent, event, time.monotonic()))

        self._events_filter = self.conn.subscribe(self.every.events, take)

    def discover(self, seconds: float = DISCOVER_SECONDS) -> list[str]:
        """The agents with a retained status under the prefix."""
        self.watch_status()
        deadline = time.monotonic() + seconds
        seen = -1
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with self._lock:
                now = len(self.statuses)
            if now == seen and now and time.monotonic() > deadline - seconds / 2:
                break  # nothing new for a while
            seen = now
        with self._lock:
            return sorted(self.statuses)

    def status_of(self, agent: str) -> AgentStatus | None:
        """The agent's last status as read so far (after :meth:`discover`), None when it has none."""
        with self._lock:
            held = self.statuses.get(agent)
        return read_status(agent, *held) if held is not None else None

    def targets(self, agents: Sequence[str]) -> list[str]:
        """The named agents, or every agent found; either way the statuses are read (who is online)."""
        found = self.discover()
        if agents:
            return list(dict.fromkeys(agents))
        if not found:
            raise FleetError(f"no agent has a status under {self.prefix!r} on this broker; start agents with "
                             "an MQTT sink under that prefix, or name them with --agent")
        return found

    # -- sending ---------------------------------------------------------------------------

    def send_model_message(self, agents: Iterable[str], message: payloads.ModelMessage, timeout: float = 30.0
                           ) -> list[str]:
        """Publish ``message`` retained, QoS 1, to each agent's model topic; returns the agents it reached."""
        return self.send_model_messages(dict.fromkeys(agents, message), timeout)

    def send_model_messages(self, messages: Mapping[str, payloads.ModelMessage], timeout: float = 30.0) -> list[str]:
        """Publish each agent its own message (a signed rollback names the agent) as :meth:`send_model_message`."""
        infos = []
        for agent, message in messages.items():
            info = self.conn.publish(Topics(self.prefix, agent).model, message.to_payload(), qos=1,
                                     retain=True)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise FleetError(f"publish to {agent} failed: {info.rc}")
            infos.append((agent, info))
        deadline = time.monotonic() + timeout
        for agent, info in infos:
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                raise FleetError(f"the broker did not confirm the model message to {agent}: {exc}") from None
            if not info.is_published():
                raise FleetError(f"the broker did not confirm the model message to {agent} within {timeout:g} s")
        return [a for a, _ in infos]

    def send_command(self, agents: Iterable[str], command: str, message_id: str | None = None,
                     **fields: Any) -> str:
        """Publish an operator command (QoS 1, not retained) to each agent; returns its id.

        Agents answer with it as ``request_id``: pass ``message_id`` when the
        answers are listened for before the command goes out.
        """
        message_id = message_id or payloads.new_id()
        payload = dumps({"v": payloads.CONTRACT_VERSION, "command": command, "id": message_id,
                         "time": iso_now(), **fields}).encode()
        for agent in agents:
            self.conn.publish(Topics(self.prefix, agent).command, payload, qos=1, retain=False)
        return message_id

    def outcomes(self, agents: Sequence[str], message_id: str, timeout: float, since: float,
                 done_events: Sequence[str]) -> dict[str, Outcome]:
        """Wait up to ``timeout`` for each agent's event about ``message_id``."""
        want = set(agents)
        got: dict[str, Outcome] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < len(want):
            with self._lock:
                events = list(self._events)
            for agent, event, when in events:
                if agent in want and agent not in got and event.get("message_id") == message_id \
                        and event.get("event") in done_events:
                    got[agent] = Outcome(agent, str(event["event"]), str(event.get("reason") or ""), when - since)
            time.sleep(0.05)
        return got

    def close(self) -> None:
        self.conn.close()
