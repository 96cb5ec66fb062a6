"""``mqtt://`` and ``mqtts://``: measurements from a broker, JSON or Sparkplug B.

``mqtt[s]://[user:pass@]HOST[:PORT]/TOPIC-FILTER[?qos=0|1]``: the filter may
use ``+`` and ``#`` (``#`` written ``%23`` in a URL). Login and TLS come
from the same ``--mqtt-*`` flags (or TOML keys) as the MQTT sink, and the
connection is the sink's when both name the same broker.

Stream id: the message's topic, unless a JSON payload names a ``stream``;
for Sparkplug B (topics ``spBv1.0/GROUP/NDATA|DDATA|NBIRTH|DBIRTH/NODE[/DEVICE]``)
the topic without its message type, so a device's births and data are one
stream. JSON payloads: an array, ``{"values": [...]}``, or a flat object keyed
by the model's feature names (a missing one held, see :mod:`.rows`).

A topic template names the levels that carry the stream and the feature:
``mqtt://HOST:PORT/plant/{stream}/{feature}`` subscribes to ``plant/+/#``;
``plant/pump-7/Pressure`` is then the feature ``Pressure`` of the stream
``pump-7``. A ``{feature}`` at the end takes every level from there (hence
the ``#``): ``plant/pump-7/Pump1/Flow`` is the feature ``Pump1/Flow``. The
level names a feature as :mod:`.feature_names` matches it (``pressure_bar``
for ``Pressure (bar)``), or as ``?columns=A,B,...`` names the levels for the
model's features in its order (tags named otherwise: :mod:`.feature_map`).
The payload is a bare number (``12.5``, ``"12.5"``, ``12,5``) or
``{"value": 12.5, "ts": ...}`` (``timestamp`` too). Without ``{stream}``
the stream is the topic without its feature level; with it and other
levels written ``+``, those levels and the ``{stream}`` level, joined by
``/`` (``site/+/{stream}/{feature}``: ``site-a/pump-7``). Rows are assembled per stream by the
rules of :mod:`.rows` (``max_age`` their staleness limit); a topic naming
no feature of the model is ``unknown_feature``.

Every payload, JSON or Sparkplug, is ``too_large`` past ``max_bytes`` (the
agent's message limit unless the source sets its own). A Sparkplug death, or
a birth that replaces a session, resets that node's or device's windows like
a reconnect (see :class:`~edgewatch.agent.sources.sparkplug.SparkplugDecoder` for
the bounds of its alias tables).

Sparkplug data naming an alias of a birth the agent does not hold (it
started after the edge node) asks that node for a rebirth: an NCMD
``Node Control/Rebirth`` through the source's own broker connection, at
most once per node per 30 s (:mod:`.rebirth`), unless ``sparkplug_rebirth=0``
(a read-only listener, or a broker that does not let the agent publish).

The subscription is QoS 1 in a persistent session: messages published
while the agent is away (restart, network cut) wait at the broker and
arrive after the reconnect; a message read while the agent stops is left
unacknowledged, so the broker sends it again next time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from edgewatch.agent.sources.base import (Item, Kind, Source, SourceConfigError, SourceContext, SourceSpec,
                                          row_assembler)
from edgewatch.agent.sources.feature_map import parse_columns
from edgewatch.agent.sources.parsing import DEFAULT_MAX_BYTES, BadReason, Measurement, parse_message
from edgewatch.agent.sources.rebirth import RebirthRequests
from edgewatch.agent.sources.rows import CLOCK_WARN_AFTER, RowAssembler
from edgewatch.agent.sources.sparkplug import DEFAULT_MAX_ALIASES, DEFAULT_MAX_NODES, SparkplugDecoder
from edgewatch.agent.sources.registry import register

log = logging.getLogger("edgewatch.agent.sources")

SPARKPLUG_PREFIX = "spBv1.0/"
# per-source limits (URL query or TOML keys); max_bytes defaults to the agent's message limit
LIMITS = {"max_bytes": DEFAULT_MAX_BYTES, "sparkplug_max_nodes": DEFAULT_MAX_NODES,
          "sparkplug_max_aliases": DEFAULT_MAX_ALIASES}


@dataclass(frozen=True)
class MqttLimits:
    """What one source's data may grow to: a payload's bytes, Sparkplug nodes and aliases (the keys of LIMITS)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    sparkplug_max_nodes: int = DEFAULT_MAX_NODES
    sparkplug_max_aliases: int = DEFAULT_MAX_ALIASES


REBIRTH_KEY = "sparkplug_rebirth"  # 1 (default): ask edge nodes whose births the agent missed; 0: never publish
STREAM, FEATURE = "{stream}", "{feature}"


class TopicTemplate(NamedTuple):
    """Which levels of a topic name the stream and the feature (``plant/{stream}/{feature}``)."""

    levels: int
    stream: int | None
    feature: int
    wild: tuple[int, ...] = ()  # the levels written '+': part of the stream id (site/+/{stream}/{feature})
    # the {feature} level's names as the plant writes them, in the model's feature order (?columns=); () when the
    # level is written with the features' own names
    columns: tuple[str, ...] = ()

    @property
    def tail(self) -> bool:
        """The feature is the last level: it takes every level from there on (a tag such as ``Pump1/Flow``)."""
        return self.feature == self.levels - 1

    def topic_filter(self, template: str) -> str:
        """The filter to subscribe to: ``+`` for the stream level, ``+`` or (last) ``#`` for the feature."""
        levels = template.split("/")
        return "/".join("#" if i == self.feature and self.tail else "+" if lv in (STREAM, FEATURE) else lv
                        for i, lv in enumerate(levels))

    @classmethod
    def parse(cls, source: str, template: str) -> TopicTemplate | None:
        """None for a plain topic filter; SourceConfigError for a template that cannot work."""
        levels = template.split("/")
        if not any("{" in lv or "}" in lv for lv in levels):
            return None
        bad = [lv for lv in levels if ("{" in lv or "}" in lv) and lv not in (STREAM, FEATURE)]
        if bad or levels.count(FEATURE) != 1 or levels.count(STREAM) > 1 or "#" in levels:
            raise SourceConfigError(f"source {source!r}: a topic template has one whole level {FEATURE}, at most "
                                    f"one {STREAM}, and no '#' (e.g. plant/{STREAM}/{FEATURE}); got {template!r}")
        return cls(len(levels), levels.index(STREAM) if STREAM in levels else None, levels.index(FEATURE),
                   tuple(i for i, lv in enumerate(levels) if lv == "+"))

    def split(self, topic: str) -> tuple[str, str] | None:
        """(stream, feature) of a topic the filter matched, or None when its levels do not fit."""
        parts = topic.split("/")
        if len(parts) != self.levels and not (self.tail and len(parts) > self.levels):
            return None
        feature = "/".join(parts[self.feature:]) if self.tail else parts[self.feature]
        if not feature:
            return None
        if self.stream is not None:
            if self.wild:  # site-a/pump-7 and site-b/pump-7 are two machines, not one stream pump-7
                return "/".join(parts[i] for i in sorted((*self.wild, self.stream))), feature
            return parts[self.stream], feature
        return "/".join(p for i, p in enumerate(parts[:self.levels]) if i != self.feature), feature


class MqttSource(Source):
    """Subscribes to one topic filter on a shared broker connection; see the module docstring."""

    def __init__(self, name: str, broker: Any, topic_filter: str, features: list[str], qos: int = 1,
                 connections: Any = None, limits: MqttLimits | None = None, template: TopicTemplate | None = None,
                 rows: RowAssembler | None = None, rebirth: bool = True) -> None:
        super().__init__()
        # a template's {feature} level as the plant names it -> the model's feature (?columns=, model order)
        self.renames = dict(zip(template.columns, features)) if template is not None else {}
        self.name = name
        self.broker = broker  # BrokerOptions
        self.topic_filter = topic_filter
        self.features = list(features)
        self.qos = qos
        limits = limits or MqttLimits()
        self.max_message_bytes = limits.max_bytes
        self.received = 0  # messages handed to the agent (good and bad)
        self.connects = 0
        self.connection: Any = None  # the broker connection, once running (its subscribed() says when it counts)
        self._connections = connections
        self.sparkplug = SparkplugDecoder(self.features, max_bytes=limits.max_bytes,
                                          max_nodes=limits.sparkplug_max_nodes,
                                          max_aliases=limits.sparkplug_max_aliases, source=name)
        self._taking = threading.Event()
        self._conn: Any = None  # the broker connection while running: rebirth requests go out on it
        self._watched: set[int] = set()  # connections whose loss tells rebirths (a request the broker refused)
        self.rebirths = (RebirthRequests(name, self._publish_rebirth, max_nodes=limits.sparkplug_max_nodes)
                         if rebirth else None)
        self.template = template
        self.rows = rows or RowAssembler(self.features, source=name)
        if self.rows.states is not None:  # a state feature's String or Boolean metric read as every source reads it
            self.sparkplug.state_code = self.rows.state_code

    def run(self) -> None:
        from edgewatch.mqtt.connection import BrokerConnection

        conn = self._connections.acquire(self.broker) if self._connections else BrokerConnection(self.broker)
        self.connection = conn
        self._conn = conn
        self._taking.set()
        conn.on_connect(self._on_connect)
        if self.rebirths is not None and id(conn) not in self._watched:  # a restarted source: once per connection
            self._watched.add(id(conn))
            conn.on_disconnect(self.rebirths.lost)
        conn.subscribe(self.topic_filter, self._on_message, qos=self.qos)
        conn.start()
        try:
            self._stop.wait()
        finally:
            self._taking.clear()
            self._conn = None
            conn.unsubscribe(self.topic_filter, keep_session=True)
            if self._connections:
                self._connections.release(conn)
            else:
                conn.close()

    def _on_connect(self) -> None:
        if self.connects and self._taking.is_set():
            # the connection had a gap: what comes now does not continue the windows of before
            self._put(Item(Kind.RESET, self.name, None, time.time()))
        self.connects += 1

    def _on_message(self, msg: Any) -> bool:
        """paho's thread: decode, queue (blocking when the agent is behind); False = not taken, no ack."""
        if not self._taking.is_set():
            return False
        now = time.time()
        try:
            items = self._items(msg.topic, msg.payload, now)
        except Exception as exc:  # one message must never cost the others: counted, skipped, acknowledged
            return self.bad_reading(BadReason.BAD_REPLY, f"reading a message on {msg.topic!r} raised "
                                    f"{type(exc).__name__}: {exc}")
        for item in items:
            if not self._put(item):
                return False
            if item.kind not in (Kind.RESET, Kind.REBIRTH):
                self.received += 1
        return True  # also a message that means nothing here: a command, a death, a birth not yet complete

    def _items(self, topic: str, payload: bytes, now: float) -> list[Item]:
        if topic.startswith(SPARKPLUG_PREFIX):
            return self._sparkplug_items(topic, payload, now)
        if self.template is not None:
            where = self.template.split(topic)
            if where is None:  # another layout under the same wildcards: no feature named where it should be
                return [Item(Kind.BAD, self.name, BadReason.UNKNOWN_FEATURE, now)]
            out = self.rows.reading(payload, where[0], self.renames.get(where[1], where[1]), now,
                                    self.max_message_bytes)
            return [Item(Kind.MEASUREMENT if type(r) is Measurement else Kind.BAD, self.name, r, now) for r in out]
        m = parse_message(payload, len(self.features), self.max_message_bytes, self.rows.value_keys, self.rows.states)
        if m is BadReason.NO_VALUES:
            m = self.rows.keyed_message(payload, topic, now, self.max_message_bytes)
        elif type(m) is Measurement:
            if m.ts is not None and abs(m.ts - now) >= CLOCK_WARN_AFTER:
                self.rows.check_clock(m.stream or topic, m.ts, now)
            m = self.rows.whole(m, topic, now)  # a model's totalisers to their rate (edgewatch/fit/totalisers.py)
        if type(m) is Measurement:
            if m.stream is None:
                m.stream = topic
            return [Item(Kind.MEASUREMENT, self.name, m, now)]
        if m is BadReason.WRONG_ARITY and len(self.features) > 1:
            self._note_bad(m, self._arity_advice(topic, payload))
        return [Item(Kind.BAD, self.name, m, now)]

    def _arity_advice(self, topic: str, payload: bytes) -> str:
        """What a plain filter receiving one sensor per topic should be instead (a topic template)."""
        levels = topic.split("/")
        template = "/".join(levels[:-2] + ["{stream}", "{feature}"]) if len(levels) > 1 else "{feature}"
        return (f"{topic!r} carried {bytes(payload[:40])!r}, not a row of the model's {len(self.features)} "
                f"features {self.features}; if the plant publishes one topic per sensor, name the topic levels "
                f"that carry the machine and the sensor: --source \"mqtt://{self.broker.host}:{self.broker.port}/"
                f"{template}\"")

    def _sparkplug_items(self, topic: str, payload: bytes, now: float) -> list[Item]:
        out = []
        for d in self.sparkplug.decode(topic, payload):
            if isinstance(d, BadReason):
                out.append(Item(Kind.BAD, self.name, d, now))
                if d is BadReason.UNKNOWN_ALIAS and self.rebirths is not None:
                    node = self._rebirth_for(topic)
                    if node is not None and self.rebirths.ask(node):
                        out.append(Item(Kind.REBIRTH, self.name, node, now))
            elif isinstance(d, Measurement):
                if d.ts is not None and abs(d.ts - now) >= CLOCK_WARN_AFTER:
                    self.rows.check_clock(d.stream or topic, d.ts, now)
                d = self.rows.whole(d, topic, now)  # a model's totalisers to their rate
                out.append(Item(Kind.MEASUREMENT if type(d) is Measurement else Kind.BAD, self.name, d, now))
            else:  # a death or a new birth: the agent resets these streams' windows
                out.append(Item(Kind.RESET, self.name, d.streams, now))
        if self.rebirths is not None and "BIRTH/" in topic:  # a node answered, asked or not
            parts = topic.split("/")
            if len(parts) >= 4 and parts[2] in ("NBIRTH", "DBIRTH"):
                self.rebirths.born(f"spBv1.0/{parts[1]}/{parts[3]}")
        return out

    def _rebirth_for(self, topic: str) -> str | None:
        """The edge node to ask for a rebirth for data on ``topic`` (a DDATA or NDATA the decoder read),
        or None when its last birth was refused: the same birth would be refused again."""
        parts = topic.split("/")
        node = f"spBv1.0/{parts[1]}/{parts[3]}"
        stream = node if len(parts) == 4 else f"{node}/{parts[4]}"
        return None if self.sparkplug.birth_refused(stream) else node

    def _publish_rebirth(self, topic: str, payload: bytes) -> str | None:
        """QoS 0, not retained (Sparkplug's rule for NCMD) on the source's connection; None or why not."""
        from edgewatch.mqtt.connection import publish_error, published

        conn = self._conn
        if conn is None:
            return "the source is not running"
        try:
            info = conn.publish(topic, payload, qos=0, retain=False)
        except Exception as exc:  # paho refusing a topic or a closed client: said, never fatal to the source
            return f"{type(exc).__name__}: {exc}"
        return None if published(info) else publish_error(info)


@register("mqtt", "mqtts")
def build(spec: SourceSpec, ctx: SourceContext) -> MqttSource:
    """``mqtt[s]://[user:pass@]host[:port]/topic-filter-or-template[?qos=1]``; keys (query or TOML): qos,
    max_bytes, max_age, sparkplug_max_nodes, sparkplug_max_aliases, sparkplug_rebirth and any ``mqtt-*`` option."""
    from edgewatch.mqtt.connection import BROKER_FIELDS, client_id_for, parse_broker_url

    settings = spec.checked((BROKER_FIELDS - {"host", "port", "client_id"}) | {"qos", "max_age", REBIRTH_KEY}
                            | set(LIMITS) | {"columns"})
    max_age = settings.pop("max_age", None)
    columns = parse_columns(spec.name, settings.pop("columns", None), ctx.features)
    rebirth = _switch(spec.name, REBIRTH_KEY, settings.pop(REBIRTH_KEY, True))
    try:
        qos = int(settings.pop("qos", 1))
    except ValueError:
        qos = -1
    if qos not in (0, 1, 2):
        raise SourceConfigError(f"source {spec.name!r}: qos must be 0, 1 or 2")
    limits = {key: _positive(spec.name, key, settings.pop(key, default))
              for key, default in {**LIMITS, "max_bytes": ctx.max_message_bytes}.items()}
    options = {**ctx.mqtt_options, **settings}
    broker, path = parse_broker_url(spec.url.split("?", 1)[0], client_id=client_id_for(ctx.agent_id), **options)
    fragment = urlsplit(spec.url).fragment
    topic_filter = path.lstrip("/")
    if "#" in spec.url.split("?", 1)[0]:  # a '#' typed as is lands in the URL fragment: take it back
        topic_filter += "#" + fragment
    if not topic_filter:
        raise SourceConfigError(f"source {spec.name!r} names no topic: use mqtt://host:port/TOPIC-FILTER "
                                "(e.g. plant/+/metrics or spBv1.0/%23)")
    template = TopicTemplate.parse(spec.name, topic_filter)
    if template is not None:
        topic_filter = template.topic_filter(topic_filter)
        template = template._replace(columns=tuple(columns or ()))
    elif columns is not None:
        raise SourceConfigError(f"source {spec.name!r}: columns names the {{feature}} level of a topic template "
                                "(mqtt://HOST:PORT/plant/{stream}/{feature}?columns=A,B,...); this source has none")
    levels = topic_filter.split("/")
    if any(("+" in lv or "#" in lv) and len(lv) > 1 for lv in levels) or "#" in levels[:-1]:
        raise SourceConfigError(f"bad MQTT topic filter {topic_filter!r}: '+' and '#' must be whole levels, "
                                "'#' only the last (write '#' as %23 in a URL)")
    name = f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}/{topic_filter}"
    return MqttSource(name, broker, topic_filter, ctx.features, qos=qos, connections=ctx.connections,
                      limits=MqttLimits(**limits), template=template,
                      rows=row_assembler(spec.name, ctx.features, max_age, ctx.states), rebirth=rebirth)


def _switch(source: str, key: str, value: Any) -> bool:
    """An on/off setting: a misspelt value must not silently leave it on (or off)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SourceConfigError(f"source {source!r}: {key} must be 1 or 0 (true/false, yes/no, on/off); got {value!r}")


def _positive(source: str, key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise SourceConfigError(f"source {source!r}: {key} must be a whole number of at least 1 (got {value!r})")
    return number
