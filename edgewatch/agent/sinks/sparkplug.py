"""``sparkplug://HOST:PORT/GROUP/NODE``: the agent as a Sparkplug B edge node, one device per stream.

SCADA hosts (Ignition, ...) alarm on a device's metrics; Sparkplug has no
alarm message, so each stream is a device with three metrics (each with an
alias, used alone in DDATA):

* ``anomaly`` (Boolean): true while the stream is in an alert episode;
* ``anomaly_score`` (Double): the last scored window's anomaly_score
  (1 = the model's threshold, times ``--sensitivity``);
* ``threshold`` (Double): the raw score the model alerts above.

What goes out, per Eclipse Sparkplug 3.0 (the facts are the spec's; the
code is ours):

* on every MQTT connect: NBIRTH (``bdSeq``, ``Node Control/Rebirth``,
  seq 0), then a DBIRTH per known stream; a stream seen later is born
  when it is first scored;
* DDATA when a value changed: ``anomaly`` at once with each episode start
  and end, ``anomaly_score`` at most every ``interval`` seconds (default 1)
  and only when it moved by ``deadband`` (default 0.01) or more,
  ``threshold`` when a new model brings another;
* ``seq`` 0 in each NBIRTH, then one more (mod 256) in every message after it;
* ``bdSeq`` one more (mod 256) at every MQTT CONNECT, kept on disk
  (``SPOOL_DIR/sparkplug-GROUP-NODE/bdseq``) so a restarted agent does not
  reuse the last session's; the CONNECT's will is NDEATH with that bdSeq,
  published by the broker when the agent dies, and by the agent itself
  before a clean disconnect;
* an NCMD ``Node Control/Rebirth`` = true: NBIRTH and every DBIRTH again;
* DDEATH for a stream the agent dropped after ``--stream-ttl`` idle (its
  episode, if one was open, ended first); if it sends again it is born again.

Births and data are QoS 0, not retained, the NDEATH will QoS 1; the MQTT
session is clean, as the spec asks. Nothing is spooled: Sparkplug carries
state, and every connect republishes the current state in its births.
The connection is the sink's own (its will is the NDEATH), with the
``[mqtt]`` login and TLS settings; ``sparkplugs://`` turns TLS on.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgewatch.agent.sinks.base import SinkConfigError, SinkContext, SinkSpec
from edgewatch.agent.sinks.http_delivery import as_float, refuse_unknown
from edgewatch.agent.sinks.registry import register
from edgewatch.mqtt.topics import SparkplugKind, SparkplugTopics, StreamIds, TopicError
from edgewatch.wire.sparkplug import BOOLEAN, DOUBLE, INT64, decode_payload, encode_metric, encode_payload

log = logging.getLogger(__name__)

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
REBIRTH_ALIAS = 1
DEVICE_METRICS = (("anomaly", BOOLEAN), ("anomaly_score", DOUBLE), ("threshold", DOUBLE))


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Device:
    """One stream as a Sparkplug device: its aliases and the values last published (None: not yet)."""

    name: str
    first_alias: int
    anomaly: bool = False
    score: float | None = None
    threshold: float | None = None
    sent_score: float | None = None
    sent_threshold: float | None = None
    born: bool = False

    def alias(self, index: int) -> int:
        return self.first_alias + index


class SparkplugSink:
    """A Sparkplug B edge node for the agent's streams; see the module docstring."""

    def __init__(self, topics: SparkplugTopics, connection: Any, state_dir: Path, interval: float = 1.0,
                 deadband: float = 0.01) -> None:
        self.topics = topics
        self.connection = connection
        self.interval = interval
        self.deadband = deadband
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.devices: dict[str, Device] = {}
        self._next_alias = REBIRTH_ALIAS + 1
        self._lock = threading.RLock()  # one publisher at a time: seq numbers leave in order
        self.ids = StreamIds(SparkplugTopics.device_id, "Sparkplug device")  # one device per stream
        self._seq = 0
        self.bdseq = self._next_bdseq()
        self.births = 0  # NBIRTHs this run
        self._online = False
        self._stop = threading.Event()
        connection.set_will(topics.node_topic(SparkplugKind.NDEATH), self._death(), qos=1, retain=False)
        connection.on_connect(self._on_connect)
        connection.on_disconnect(self._on_disconnect)
        connection.subscribe(topics.node_topic(SparkplugKind.NCMD), self._on_command, qos=0)
        connection.start()
        self._thread = threading.Thread(target=self._data_loop, name="sparkplug-data", daemon=True)
        self._thread.start()

    # -- bdSeq, kept on disk -----------------------------------------------------------

    def _next_bdseq(self) -> int:
        path = self.state_dir / "bdseq"
        try:
            last = int(path.read_text().strip())
            value = (last + 1) % 256
        except (OSError, ValueError):
            value = 0
        self._save_bdseq(value)
        return value

    def _save_bdseq(self, value: int) -> None:
        tmp = self.state_dir / "bdseq.tmp"
        try:
            tmp.write_text(str(value))
            os.replace(tmp, self.state_dir / "bdseq")
        except OSError as exc:  # a restart may then reuse a bdSeq: hosts see a rebirth, nothing is lost
            log.warning("Sparkplug sink: cannot keep bdSeq in %s: %s", self.state_dir, exc.strerror or exc)

    def _death(self) -> bytes:
        return encode_payload([encode_metric(BDSEQ, self.bdseq, datatype=INT64)], timestamp=_ms())

    # -- connection events (paho's thread) ----------------------------------------------

    def _on_connect(self) -> None:
        with self._lock:
            self._online = True
            self._births()

    def _on_disconnect(self) -> None:
        with self._lock:
            self._online = False
            self.bdseq = (self.bdseq + 1) % 256  # the next CONNECT is a new session
            self._save_bdseq(self.bdseq)
            self.connection.set_will(self.topics.node_topic(SparkplugKind.NDEATH), self._death(), qos=1,
                                     retain=False)

    def _on_command(self, msg: Any) -> None:
        try:
            _ts, _seq, metrics = decode_payload(msg.payload)
        except ValueError as exc:
            log.warning("Sparkplug sink: an NCMD that is no Sparkplug B payload (%s); ignored", exc)
            return
        if any((m.name == REBIRTH or m.alias == REBIRTH_ALIAS) and m.value is True for m in metrics):
            log.info("Sparkplug sink: rebirth asked on %s", msg.topic)
            with self._lock:
                if self._online:
                    self._births()

    # -- publishing (under the lock) -----------------------------------------------------

    def _publish(self, topic: str, metrics: list[bytes], birth: bool = False) -> None:
        if birth:
            self._seq = 0
        payload = encode_payload(metrics, timestamp=_ms(), seq=self._seq)
        self._seq = (self._seq + 1) % 256
        self.connection.publish(topic, payload, qos=0, retain=False)

    def _births(self) -> None:
        now = _ms()
        self._publish(self.topics.node_topic(SparkplugKind.NBIRTH), [
            encode_metric(BDSEQ, self.bdseq, datatype=INT64, timestamp=now),
            encode_metric(REBIRTH, False, alias=REBIRTH_ALIAS, datatype=BOOLEAN, timestamp=now)], birth=True)
        self.births += 1
        for device in self.devices.values():
            self._device_birth(device)

    def _device_birth(self, device: Device) -> None:
        now = _ms()
        values = (device.anomaly, device.score, device.threshold)
        self._publish(self.topics.device_topic(SparkplugKind.DBIRTH, device.name), [
            encode_metric(name, value, alias=device.alias(i), datatype=kind, timestamp=now)
            for i, ((name, kind), value) in enumerate(zip(DEVICE_METRICS, values))])
        device.born = True
        device.sent_score, device.sent_threshold = device.score, device.threshold

    def _device(self, stream: str) -> Device:
        name = self.ids.of(stream)
        device = self.devices.get(name)
        if device is None:
            device = self.devices[name] = Device(name, self._next_alias)
            self._next_alias += len(DEVICE_METRICS)
        return device

    def _data(self, device: Device, anomaly: bool | None = None) -> None:
        """DDATA with what changed (by alias); a device not yet born is born instead."""
        if not self._online:
            return
        if not device.born:
            self._device_birth(device)
            return
        now = _ms()
        metrics = []
        if anomaly is not None:
            metrics.append(encode_metric(None, anomaly, alias=device.alias(0), datatype=BOOLEAN, timestamp=now))
        if device.score is not None and (device.sent_score is None
                                         or abs(device.score - device.sent_score) >= self.deadband
                                         or (anomaly is not None and device.score != device.sent_score)):
            metrics.append(encode_metric(None, device.score, alias=device.alias(1), datatype=DOUBLE, timestamp=now))
            device.sent_score = device.score
        if device.threshold is not None and device.threshold != device.sent_threshold:  # a new model
            metrics.append(encode_metric(None, device.threshold, alias=device.alias(2), datatype=DOUBLE,
                                         timestamp=now))
            device.sent_threshold = device.threshold
        if metrics:
            self._publish(self.topics.device_topic(SparkplugKind.DDATA, device.name), metrics)

    # -- the agent's side -----------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind not in ("start", "end") or not isinstance(event.get("stream"), str):
            return
        with self._lock:
            device = self._device(event["stream"])
            device.anomaly = kind == "start"
            threshold = event.get("threshold")
            if isinstance(threshold, (int, float)):
                device.threshold = float(threshold)
            if kind == "start" and isinstance(event.get("anomaly_score"), (int, float)):
                device.score = float(event["anomaly_score"])
            self._data(device, anomaly=device.anomaly)

    def on_batch(self, view: Any) -> None:
        """The last anomaly_score of each scored stream (the loop's thread: only stored here)."""
        if not view.scored:
            return
        with self._lock:
            for w in view.scored:
                device = self._device(w.stream)
                if math.isfinite(w.anomaly):
                    device.score = float(w.anomaly)
                device.threshold = float(view.threshold)

    def on_forget(self, streams: list[str]) -> None:
        """DDEATH for each dropped stream that was born, and forget it: the node's births and memory
        then hold only the streams the agent holds."""
        with self._lock:
            for stream in streams:
                name = self.ids.release(stream)
                device = None if name is None else self.devices.pop(name, None)
                if device is not None and device.born and self._online:
                    self._publish(self.topics.device_topic(SparkplugKind.DDEATH, device.name), [])

    def _data_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self._lock:
                    for device in list(self.devices.values()):
                        self._data(device)
            except Exception:  # a paho error must not end the thread
                log.exception("Sparkplug sink: publishing data failed")

    def close(self) -> None:
        """NDEATH ourselves (the broker sends no will after a clean DISCONNECT), then disconnect."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(self.interval + 1.0)
        with self._lock:
            if self._online:
                info = self.connection.publish(self.topics.node_topic(SparkplugKind.NDEATH), self._death(), qos=1)
                self.connection.wait_published(info, 2.0)  # not on a broker that stopped answering
        self.connection.close()


@register("sparkplug", "sparkplugs", form="sparkplug[s]://HOST:PORT/GROUP/NODE")
def _build(spec: SinkSpec, context: SinkContext) -> SparkplugSink:
    from edgewatch.mqtt.connection import BrokerConnection, MqttConfigError, client_id_for, parse_broker_url

    parts = urlsplit(spec.url)
    levels = [p for p in parts.path.split("/") if p]
    if len(levels) not in (1, 2):
        raise SinkConfigError(f"{spec.url!r}: write sparkplug://HOST:PORT/GROUP/NODE (NODE defaults to the agent id)")
    group, node = levels[0], levels[1] if len(levels) == 2 else context.agent_id
    try:
        topics = SparkplugTopics(group, node)
    except TopicError as exc:
        raise SinkConfigError(str(exc)) from None
    settings = spec.settings()
    interval = as_float(settings, "interval", 1.0)
    deadband = as_float(settings, "deadband", 0.01)
    if not 0.05 <= interval <= 3600 or deadband < 0:
        raise SinkConfigError(f"interval={interval:g}, deadband={deadband:g}: give 0.05 <= interval <= 3600 "
                              "seconds and deadband >= 0")
    refuse_unknown(spec.url, settings, ("interval", "deadband"))
    mqtt_url = ("mqtts" if parts.scheme.lower() == "sparkplugs" else "mqtt") + f"://{parts.netloc}/"
    try:
        broker, _ = parse_broker_url(mqtt_url, client_id=client_id_for(f"{context.agent_id}-spb-{node}"),
                                     clean_session=True, **context.mqtt_options)
    except MqttConfigError as exc:
        raise SinkConfigError(str(exc)) from None
    state = Path(context.spool_dir) / f"sparkplug-{group}-{node}"
    return SparkplugSink(topics, BrokerConnection(broker), state, interval=interval, deadband=deadband)
