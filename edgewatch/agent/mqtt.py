"""The MQTT sink: alerts at QoS 1 through an on-disk spool, a retained status with a last will.

Topics (``PREFIX`` from the URL, ``AGENT`` the agent id)::

    PREFIX/AGENT/alerts   episode start/end events, QoS 1, JSON, each with an ``id``
    PREFIX/AGENT/drift    drift and drift_end events, QoS 1, JSON
    PREFIX/AGENT/events   other agent events (model swapped or refused), QoS 1, JSON
    PREFIX/AGENT/status   retained JSON status with "state" online/offline (fleet contract v1,
                          docs/fleet.md); the broker publishes an "offline" status as the last
                          will when the agent dies without saying goodbye
    PREFIX/AGENT/model    (subscribed, see :mod:`edgewatch.agent.swap`) a retained new model file

Every event is first written to the :class:`~edgewatch.agent.spool.Spool`
and only leaves it when the broker's PUBACK comes back, so a dead broker or
a killed agent loses nothing: delivery is at least once, in order, and the
``id`` field lets subscribers drop the rare duplicate. ``send`` never waits
for the network; a sender thread feeds paho at most ``max_inflight`` records
at a time, and paho resends those itself after a reconnect.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from edgewatch.agent.broker import (BrokerConnection, BrokerOptions, Connections, MqttConfigError, _safe,
                                    client_id_for, parse_broker_url)
from edgewatch.agent.events import dumps
from edgewatch.agent.spool import DEFAULT_MAX_BYTES, Spool
from edgewatch.fleet.topics import minimal_status, offline_will

log = logging.getLogger(__name__)


__all__ = ["MqttConfigError", "MqttOptions", "MqttSink", "topic_for"]


@dataclass
class MqttOptions:
    """What the sink publishes where; how to reach the broker is :class:`~edgewatch.agent.broker.BrokerOptions`."""

    prefix: str = "edgewatch"
    agent_id: str = "edgewatch"
    max_inflight: int = 32
    drain_timeout: float = 5.0


SINK_FIELDS = frozenset(f.name for f in fields(MqttOptions))


def topic_for(event: dict[str, Any], base: str) -> str:
    kind = event.get("event")
    if kind in ("start", "end"):
        return f"{base}/alerts"
    if kind in ("drift", "drift_end"):
        return f"{base}/drift"
    return f"{base}/events"


class MqttSink:
    """Spool-backed MQTT publisher; see the module docstring for topics and semantics."""

    def __init__(self, options: MqttOptions, spool_dir: str | os.PathLike[str], connection: BrokerConnection,
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, metrics: Any = None,
                 connections: Connections | None = None) -> None:
        self.options = o = options
        self.connection = connection
        self._connections = connections  # who to release the connection to (None: this sink owns it)
        self.base = f"{o.prefix.strip('/')}/{o.agent_id}".lstrip("/")
        self.status_topic = f"{self.base}/status"
        self.spool = Spool(Path(spool_dir), max_bytes=spool_max_bytes)
        self.metrics = metrics
        self.published = 0  # PUBACKs received this run
        self.publish_errors = 0
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._status_lock = threading.Lock()
        self._stop_sender = False
        self._acks: deque[int] = deque()
        self._inflight: dict[int, int] = {}  # paho mid -> spool number
        self._handed = 0  # highest spool number handed to paho this run
        self._update_depth()
        # what the status says; the fleet's StatusReporter replaces it with the full status
        self.status_payload: Callable[[str], bytes] = lambda state: minimal_status(o.agent_id, state)
        connection.set_will(self.status_topic, offline_will(o.agent_id), qos=1, retain=True)
        connection.on_connect(self._on_connect)
        connection.on_disconnect(self._on_disconnect)
        connection.on_publish(self._on_publish)
        connection.start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()

    @classmethod
    def from_url(cls, url: str, agent_id: str, spool_dir: str | os.PathLike[str] | None = None,
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, metrics: Any = None,
                 connections: Connections | None = None, **options: Any) -> MqttSink:
        """``mqtt://[user:pass@]host[:port]/prefix`` (``mqtts://`` turns TLS on, port 8883).

        ``options`` are broker options (login, TLS, see :class:`BrokerOptions`) and
        sink options (``max_inflight``, ``drain_timeout``). With ``connections``
        the broker connection is shared with the agent's other MQTT users.
        """
        sink_opts = {k: options.pop(k) for k in list(options) if k in SINK_FIELDS - {"prefix", "agent_id"}}
        unknown = set(options) - {f.name for f in fields(BrokerOptions)} - {"client_id"}
        if unknown:
            raise MqttConfigError(f"unknown MQTT options {sorted(unknown)}; known: "
                                  f"{sorted({f.name for f in fields(BrokerOptions)} | SINK_FIELDS)}")
        broker, path = parse_broker_url(url, client_id=client_id_for(agent_id), **options)
        opts = MqttOptions(prefix=path.strip("/") or "edgewatch", agent_id=agent_id, **sink_opts)
        connection = connections.acquire(broker) if connections else BrokerConnection(broker)
        if spool_dir is None:
            spool_dir = Path("spool")
        return cls(opts, Path(spool_dir) / _safe(f"{broker.host}_{broker.port}_{opts.prefix}"), connection,
                   spool_max_bytes=spool_max_bytes, metrics=metrics, connections=connections)

    @property
    def client(self) -> paho.Client:
        return self.connection.client

    @property
    def last_error(self) -> str | None:
        """Why the broker connection's last attempt failed (None once connected)."""
        return self.connection.last_error

    # -- connection events (paho's network thread) ---------------------------------------

    def _on_connect(self) -> None:
        self.publish_status("online")
        quiet = self.connection.takeover.taken_over  # said once by the connection, not at every kick
        log.log(logging.DEBUG if quiet else logging.INFO, "MQTT sink %s ready (spool depth %d)", self.base,
                self.spool.depth)
        self._wake.set()

    def publish_status(self, state: str = "online") -> Any:
        """Publish the retained status now (paho's info, or None when it could not be built or queued)."""
        with self._status_lock:  # an "online" from another thread never lands after the final "offline"
            if state == "online" and self._closing.is_set():
                return None
            try:
                payload = self.status_payload(state)
            except Exception:  # a status that cannot be built must not stop the connection
                log.exception("building the MQTT status failed")
                return None
            info = self.connection.publish(self.status_topic, payload, qos=1, retain=True)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT status %r not queued: %s", state, paho.error_string(info.rc))
            return None
        return info

    def _on_disconnect(self) -> None:
        if not self._closing.is_set():
            log.log(logging.DEBUG if self.connection.takeover.taken_over else logging.WARNING,
                    "MQTT sink %s: alerts wait in the spool until the broker is back", self.base)

    def _on_publish(self, mid: int, refused: bool) -> None:
        # called with paho's out-message lock held: only hand the mid over to the sender thread
        if refused:
            self.publish_errors += 1
            log.error("MQTT broker refused message %d", mid)
        self._acks.append(mid)
        self._wake.set()

    # -- the sink ------------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        """Durably queue one event (fsync), then let the sender thread publish it."""
        record = topic_for(event, self.base).encode() + b"\n" + dumps(event).encode()
        self.spool.append(record)
        self._update_depth()
        self._wake.set()

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self._take_acks()
            if self._stop_sender:
                return
            if not self.connection.connected:
                continue
            room = self.options.max_inflight - len(self._inflight)
            if room <= 0:
                continue
            for number, record in self.spool.pending(after=self._handed, limit=room):
                topic, _, payload = record.partition(b"\n")
                info = self.connection.publish(topic.decode(), payload, qos=1)
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    # not queued by paho: leave it in the spool and try again on the next wake-up
                    self.publish_errors += 1
                    log.warning("MQTT publish of spool record %d failed: %s", number, paho.error_string(info.rc))
                    break
                # NO_CONN: paho keeps it queued and sends it after the reconnect, in order
                self._inflight[info.mid] = number
                self._handed = number

    def _take_acks(self) -> None:
        numbers = []
        while self._acks:
            number = self._inflight.pop(self._acks.popleft(), None)
            if number is not None:  # None: the status message
                numbers.append(number)
        if numbers:
            self.spool.ack_many(numbers)
            self.published += len(numbers)
        self._update_depth()

    def _update_depth(self) -> None:
        self._reported_depth = self.spool.depth
        if self.metrics is not None:
            self.metrics.spool_depth.set(self.spool.depth)
            self.metrics.spool_dropped.set(self.spool.dropped)
            self.metrics.publish_errors.set(self.publish_errors)

    @property
    def connected(self) -> bool:
        return self.connection.connected

    def wait_delivered(self, timeout: float) -> bool:
        """Block until the spool is empty (every event acknowledged) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while (self.spool.depth or self._reported_depth) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        return self.spool.depth == 0 and self._reported_depth == 0

    def close(self) -> None:
        """Deliver what the broker can take within ``drain_timeout``, say "offline", disconnect.

        What is still spooled stays on disk and goes out at the next start.
        """
        if self._closing.is_set():
            return
        conn = self.connection
        deadline = time.monotonic() + self.options.drain_timeout
        if self.spool.depth and not conn.connected:
            # a short run (end of input at once) may stop before the first connect: give it the drain time
            conn.wait_connected(self.options.drain_timeout)
        if conn.connected:
            self.wait_delivered(max(0.0, deadline - time.monotonic()))
        self._closing.set()
        self._stop_sender = True
        self._wake.set()
        self._sender.join(2.0)
        if conn.connected:
            info = self.publish_status("offline")
            if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(timeout=2.0)
                except (RuntimeError, ValueError) as exc:
                    log.warning("MQTT status 'offline' not confirmed: %s", exc)
        # without a goodbye the broker publishes the last will ("offline") when it notices
        if self._connections is not None:
            self._connections.release(conn)
        else:
            conn.close()
        if self.spool.depth:
            log.warning("%d alert(s) left in the spool %s; they are sent at the next start",
                        self.spool.depth, self.spool.dir)
        self.spool.close()

