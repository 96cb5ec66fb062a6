"""The public topic layout, spelled once: ``PREFIX/AGENT/<kind>`` (docs/fleet.md, contract version 1).

An agent publishes on its own topics and reads its ``model`` and
``command`` topics; the operator's tools subscribe to every agent's with
the one-level wildcard as the agent id (:meth:`Topics.every_agent`). Both
build their names from a :class:`Topics` value, so a topic cannot be
spelled two ways. What the payloads hold is :mod:`edgewatch.mqtt.payloads`.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgewatch.errors import EdgewatchError

log = logging.getLogger(__name__)

ANY_AGENT = "+"  # the agent id of a subscription to every agent's topic of a kind

ALERT_EVENTS = frozenset({"start", "end"})
DRIFT_EVENTS = frozenset({"drift", "drift_end"})


class TopicKind(enum.StrEnum):
    """The last level of an agent's topic: what travels on it."""

    STATUS = "status"  # agent -> all, retained: online/offline and counters; the last will says offline
    ALERTS = "alerts"  # agent -> all: episode start/end
    DRIFT = "drift"  # agent -> all: drift/drift_end
    EVENTS = "events"  # agent -> all: every other event (model swapped, shadow, refused, unchanged)
    MODEL = "model"  # operator -> agent, retained: install, rollback, promote
    COMMAND = "command"  # operator -> agent: e.g. shadow_report
    SHADOW = "shadow"  # agent -> all, retained: the latest shadow report


class TopicError(EdgewatchError, ValueError):
    """A prefix or agent id that cannot be part of an MQTT topic name (the message says which character)."""


@dataclass(frozen=True)
class Topics:
    """The topics of one agent (or, with :data:`ANY_AGENT`, the filters matching every agent's).

    ``prefix`` is the path of the agent's MQTT sink URL, slashes at its ends
    dropped (it may be empty); ``agent_id`` is one topic level, so it holds
    neither ``/`` nor the wildcards ``+`` and ``#``. Fails with
    :class:`TopicError` otherwise: a publish to such a name would be refused
    by paho or land where no reader looks.
    """

    prefix: str
    agent_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.prefix.strip("/"))
        if "#" in self.prefix or "+" in self.prefix:
            raise TopicError(f"MQTT topic prefix {self.prefix!r} holds a wildcard (+ or #); agents publish there")
        if self.agent_id != ANY_AGENT:
            bad = sorted(set(self.agent_id) & {"/", "+", "#", "\0"})
            if not self.agent_id or bad:
                raise TopicError(f"agent id {self.agent_id!r} cannot be one MQTT topic level"
                                 + (f": it holds {' '.join(bad)!s}" if bad else ": it is empty")
                                 + "; give --agent-id a name without / + #")

    @classmethod
    def every_agent(cls, prefix: str) -> Topics:
        """Subscription filters for a kind of topic of every agent under ``prefix``."""
        return cls(prefix, ANY_AGENT)

    @property
    def base(self) -> str:
        """``PREFIX/AGENT`` (just ``AGENT`` with an empty prefix)."""
        return f"{self.prefix}/{self.agent_id}" if self.prefix else self.agent_id

    def topic(self, kind: TopicKind | str) -> str:
        return f"{self.base}/{TopicKind(kind).value}"

    @property
    def status(self) -> str:
        return self.topic(TopicKind.STATUS)

    @property
    def alerts(self) -> str:
        return self.topic(TopicKind.ALERTS)

    @property
    def drift(self) -> str:
        return self.topic(TopicKind.DRIFT)

    @property
    def events(self) -> str:
        return self.topic(TopicKind.EVENTS)

    @property
    def model(self) -> str:
        return self.topic(TopicKind.MODEL)

    @property
    def command(self) -> str:
        return self.topic(TopicKind.COMMAND)

    @property
    def shadow(self) -> str:
        return self.topic(TopicKind.SHADOW)

    def stream_state(self, stream_id: str) -> str:
        """``PREFIX/AGENT/streams/ID/state``: one stream's retained state for Home Assistant (``--ha-discovery``)."""
        return f"{self.base}/streams/{stream_id}/state"

    def for_event(self, event: Mapping[str, Any]) -> str:
        """Where an agent event goes: episodes on ``alerts``, drift on ``drift``, anything else on ``events``."""
        kind = event.get("event")
        if kind in ALERT_EVENTS:
            return self.alerts
        if kind in DRIFT_EVENTS:
            return self.drift
        return self.events

    def agent_of(self, topic_name: str) -> str | None:
        """The agent id in ``PREFIX/AGENT/kind`` under this prefix; None for a topic of another form."""
        head = f"{self.prefix}/" if self.prefix else ""
        if not topic_name.startswith(head):
            return None
        parts = topic_name[len(head):].split("/")
        return parts[0] if len(parts) == 2 and parts[0] else None


SPARKPLUG_NAMESPACE = "spBv1.0"


class SparkplugKind(enum.StrEnum):
    """A Sparkplug B message type (the third topic level), Sparkplug 3.0 "Topic Namespace"."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"


@dataclass(frozen=True)
class SparkplugTopics:
    """The topics of one Sparkplug B edge node: ``spBv1.0/GROUP/KIND/NODE[/DEVICE]``.

    Group, node and device ids are one topic level each; the spec also bars
    ``+`` and ``#``. TopicError says which id holds what.
    """

    group: str
    node: str

    def __post_init__(self) -> None:
        for what, value in (("group", self.group), ("edge node", self.node)):
            bad = sorted(set(value) & {"/", "+", "#", "\0"})
            if not value or bad:
                raise TopicError(f"Sparkplug {what} id {value!r} cannot be one topic level"
                                 + (f": it holds {' '.join(bad)}" if bad else ": it is empty")
                                 + "; write sparkplug://HOST:PORT/GROUP/NODE")

    def node_topic(self, kind: SparkplugKind) -> str:
        return f"{SPARKPLUG_NAMESPACE}/{self.group}/{kind.value}/{self.node}"

    def device_topic(self, kind: SparkplugKind, device: str) -> str:
        return f"{SPARKPLUG_NAMESPACE}/{self.group}/{kind.value}/{self.node}/{device}"

    @staticmethod
    def device_id(stream: str) -> str:
        """A stream id as a device id: ``/``, ``+``, ``#`` become ``_`` (a stream id may hold them)."""
        out = "".join("_" if c in "/+#\0" else c for c in stream)
        return out or "_"


DEFAULT_HA_PREFIX = "homeassistant"


class HaComponent(enum.StrEnum):
    """The Home Assistant entity kinds the agent announces."""

    BINARY_SENSOR = "binary_sensor"
    SENSOR = "sensor"


@dataclass(frozen=True)
class HomeAssistantTopics:
    """Home Assistant's MQTT discovery topics: ``PREFIX/COMPONENT/NODE/OBJECT/config`` and ``PREFIX/status``.

    Home Assistant accepts only letters, digits, ``_`` and ``-`` in the node
    and object ids: :meth:`ha_id` makes one of an agent or stream id.
    """

    prefix: str = DEFAULT_HA_PREFIX

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.prefix.strip("/"))
        if not self.prefix or "#" in self.prefix or "+" in self.prefix:
            raise TopicError(f"Home Assistant discovery prefix {self.prefix!r}: give a topic without + or # "
                             f"(default {DEFAULT_HA_PREFIX})")

    def config(self, component: HaComponent, node_id: str, object_id: str) -> str:
        return f"{self.prefix}/{component.value}/{self.ha_id(node_id)}/{self.ha_id(object_id)}/config"

    @property
    def birth(self) -> str:
        """Where Home Assistant says ``online`` when it starts: discovery configs are sent again then."""
        return f"{self.prefix}/status"

    @staticmethod
    def ha_id(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"


class StreamIds:
    """Stream ids as the ids of topic levels (a Sparkplug device, a Home Assistant entity): one each.

    The mappings (:meth:`SparkplugTopics.device_id`, :meth:`HomeAssistantTopics.ha_id`)
    are many to one: ``line/1`` and ``line_1`` are both the device
    ``line_1``, ``Pumpe-Ö1`` and ``Pumpe-Ä1`` both the entity ``Pumpe-_1``.
    Two streams on one id were one device or entity, so the end of one
    stream's episode switched the other's alarm off (and any stream id a
    sender chose could do it). The first stream on an id keeps it, the name
    it had before; another stream whose id is held gets the id, ``_`` and 8
    hex digits of its own name's SHA-256, and the log says so once. Held
    while the agent holds the stream: :meth:`release` when it drops it.
    """

    def __init__(self, mapping: Callable[[str], str], what: str) -> None:
        self.mapping = mapping
        self.what = what  # for the log: "Sparkplug device", "Home Assistant entity"
        self._ids: dict[str, str] = {}  # stream -> its id
        self._streams: dict[str, str] = {}  # id -> the stream holding it

    def of(self, stream: str) -> str:
        ident = self._ids.get(stream)
        if ident is not None:
            return ident
        ident = plain = self.mapping(stream)
        holder = self._streams.get(plain)
        if holder is not None:
            ident = self._other(plain, stream)
            log.warning("streams %r and %r would be one %s %r: %r is %r", holder, stream, self.what, plain, stream,
                        ident)
        self._ids[stream] = ident
        self._streams.setdefault(ident, stream)
        return ident

    def _other(self, plain: str, stream: str) -> str:
        """``plain`` with 8 hex digits of ``stream``'s SHA-256; more, or a number, if a stream named so holds it."""
        import hashlib  # here: an agent that needs no hashing does not load OpenSSL's libcrypto (test_imports)

        digest = hashlib.sha256(stream.encode("utf-8", "surrogatepass")).hexdigest()
        for n in (8, 16, 64):
            ident = f"{plain}_{digest[:n]}"
            if ident not in self._streams:
                return ident
        i = 2
        while f"{ident}_{i}" in self._streams:
            i += 1
        return f"{ident}_{i}"

    def release(self, stream: str) -> str | None:
        """Forget ``stream`` (the agent dropped it); its id, if it had one."""
        ident = self._ids.pop(stream, None)
        if ident is not None and self._streams.get(ident) == stream:
            del self._streams[ident]
        return ident
