"""``mqtt://`` and ``mqtts://``: measurements from a broker, JSON or Sparkplug B.

``mqtt[s]://[user:pass@]HOST[:PORT]/TOPIC-FILTER[?qos=0|1]``: the filter may
use ``+`` and ``#`` (``#`` written ``%23`` in a URL). Login and TLS come
from the same ``--mqtt-*`` flags (or TOML keys) as the MQTT sink, and the
connection is the sink's when both name the same broker.

Stream id: the message's topic, unless a JSON payload names a ``stream``;
for Sparkplug B (topics ``spBv1.0/GROUP/NDATA|DDATA|NBIRTH|DBIRTH/NODE[/DEVICE]``)
the topic without its message type, so a device's births and data are one
stream. JSON payloads: an array, ``{"values": [...]}``, or a flat object keyed
by the model's feature names (see :func:`~edgewatch.agent.parsing.parse_payload`).

The subscription is QoS 1 in a persistent session: messages published
while the agent is away (restart, network cut) wait at the broker and
arrive after the reconnect; a message read while the agent stops is left
unacknowledged, so the broker sends it again next time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from edgewatch.agent.parsing import BadReason, Measurement, parse_payload
from edgewatch.agent.sources.base import Item, Kind, Source, SourceConfigError, SourceContext, SourceSpec
from edgewatch.agent.sources.registry import register

log = logging.getLogger("edgewatch.agent.sources")

SPARKPLUG_PREFIX = "spBv1.0/"


class MqttSource(Source):
    """Subscribes to one topic filter on a shared broker connection; see the module docstring."""

    def __init__(self, name: str, broker: Any, topic_filter: str, features: list[str], qos: int = 1,
                 connections: Any = None, max_message_bytes: int = 64 * 1024) -> None:
        super().__init__()
        self.name = name
        self.broker = broker  # BrokerOptions
        self.topic_filter = topic_filter
        self.features = list(features)
        self.qos = qos
        self.max_message_bytes = max_message_bytes
        self.received = 0  # messages handed to the agent (good and bad)
        self.connects = 0
        self._connections = connections
        self._sparkplug: Any = None  # SparkplugDecoder, built on the first spBv1.0 message
        self._taking = threading.Event()

    def run(self) -> None:
        from edgewatch.agent.broker import BrokerConnection

        conn = self._connections.acquire(self.broker) if self._connections else BrokerConnection(self.broker)
        self._taking.set()
        conn.on_connect(self._on_connect)
        conn.subscribe(self.topic_filter, self._on_message, qos=self.qos)
        conn.start()
        try:
            self._stop.wait()
        finally:
            self._taking.clear()
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
        try:
            item = self._item(msg)
        except Exception as exc:  # one message must never cost the others: counted, skipped, acknowledged
            return self.bad_reading(BadReason.BAD_REPLY, f"reading a message on {msg.topic!r} raised "
                                    f"{type(exc).__name__}: {exc}")
        if item is None:
            return True  # a death certificate, a command, a birth that is not yet complete
        if not self._put(item):
            return False
        self.received += 1
        return True

    def _item(self, msg: Any) -> Item | None:
        topic = msg.topic
        if topic.startswith(SPARKPLUG_PREFIX):
            return self._sparkplug_item(topic, msg.payload)
        m = parse_payload(msg.payload, self.features, self.max_message_bytes)
        if type(m) is Measurement:
            if m.stream is None:
                m.stream = topic
            return Item(Kind.MEASUREMENT, self.name, m, time.time())
        return Item(Kind.BAD, self.name, m, time.time())

    def _sparkplug_item(self, topic: str, payload: bytes) -> Item | None:
        if self._sparkplug is None:
            from edgewatch.agent.sparkplug import SparkplugDecoder

            self._sparkplug = SparkplugDecoder(self.features)
        out = self._sparkplug.decode(topic, payload)
        if out is None:
            return None
        if isinstance(out, BadReason):
            return Item(Kind.BAD, self.name, out, time.time())
        return Item(Kind.MEASUREMENT, self.name, out, time.time())


@register("mqtt", "mqtts")
def build(spec: SourceSpec, ctx: SourceContext) -> MqttSource:
    """``mqtt[s]://[user:pass@]host[:port]/topic-filter[?qos=1]``; TOML keys: qos and any ``mqtt-*`` option."""
    from edgewatch.agent.broker import BROKER_FIELDS, client_id_for, parse_broker_url

    settings = spec.checked((BROKER_FIELDS - {"host", "port", "client_id"}) | {"qos"})
    try:
        qos = int(settings.pop("qos", 1))
    except ValueError:
        qos = -1
    if qos not in (0, 1, 2):
        raise SourceConfigError(f"source {spec.name!r}: qos must be 0, 1 or 2")
    options = {**ctx.mqtt_options, **settings}
    broker, path = parse_broker_url(spec.url.split("?", 1)[0], client_id=client_id_for(ctx.agent_id), **options)
    fragment = urlsplit(spec.url).fragment
    topic_filter = path.lstrip("/")
    if "#" in spec.url.split("?", 1)[0]:  # a '#' typed as is lands in the URL fragment: take it back
        topic_filter += "#" + fragment
    if not topic_filter:
        raise SourceConfigError(f"source {spec.name!r} names no topic: use mqtt://host:port/TOPIC-FILTER "
                                "(e.g. plant/+/metrics or spBv1.0/%23)")
    levels = topic_filter.split("/")
    if any(("+" in lv or "#" in lv) and len(lv) > 1 for lv in levels) or "#" in levels[:-1]:
        raise SourceConfigError(f"bad MQTT topic filter {topic_filter!r}: '+' and '#' must be whole levels, "
                                "'#' only the last (write '#' as %23 in a URL)")
    name = f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}/{topic_filter}"
    return MqttSource(name, broker, topic_filter, ctx.features, qos=qos, connections=ctx.connections,
                      max_message_bytes=ctx.max_message_bytes)
