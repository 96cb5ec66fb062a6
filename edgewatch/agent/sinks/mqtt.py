"""The MQTT sink: alerts at QoS 1 through an on-disk spool, a retained status with a last will.

Topics (``PREFIX`` from the URL, ``AGENT`` the agent id; spelled by
:class:`~edgewatch.mqtt.topics.Topics`)::

    PREFIX/AGENT/alerts   episode start/end events, QoS 1, JSON, each with an ``id``
    PREFIX/AGENT/drift    drift and drift_end events, QoS 1, JSON
    PREFIX/AGENT/events   other agent events (model swapped or refused), QoS 1, JSON
    PREFIX/AGENT/status   retained JSON status with "state" online/offline (fleet contract v1,
                          docs/fleet.md, :mod:`edgewatch.mqtt.status`); the broker publishes an
                          "offline" status as the last will when the agent dies without saying goodbye

The fleet's own topics (model, command, shadow) are the fleet member's and
the model receiver's (:mod:`edgewatch.agent.lifecycle`), on the fleet broker.

Every event is first written to the :class:`~edgewatch.agent.sinks.spool.Spool`
and only leaves it when the broker's PUBACK comes back, so a dead broker or
a killed agent loses nothing: delivery is at least once, in order, and the
``id`` field lets subscribers drop the rare duplicate. ``send`` never waits
for the network; a sender thread feeds paho at most ``max_inflight`` records
at a time, and paho resends those itself after a reconnect.

A disk that refuses the spool's writes does not lose alerts either: they
wait in the spool's bounded memory queue, are published from there, and
reach the disk when it takes writes again; only past that queue is an alert
dropped, counted in ``edgewatch_spool_dropped``. No error (an OSError of the
disk, a paho failure) ends the sender thread: it logs at most once a minute
and retries with backoff. :meth:`MqttSink.not_ready_reason` tells
``/readyz`` while alerts cannot be stored or sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgewatch.agent.sinks.base import SinkContext, SinkSpec
from edgewatch.agent.sinks.registry import register
from edgewatch.agent.sinks.spool import DEFAULT_MAX_BYTES, DEFAULT_MEMORY_BYTES, Spool, SpooledSender
from edgewatch.mqtt.connection import (BrokerConnection, BrokerOptions, Connections, MqttConfigError, _safe,
                                       client_id_for, parse_broker_url, publish_error, published)
from edgewatch.mqtt.topics import Topics
from edgewatch.wire.json import dumps

log = logging.getLogger(__name__)


__all__ = ["MqttConfigError", "MqttOptions", "MqttSink"]

UNDELIVERABLE_AFTER = 5.0  # seconds without the broker before /readyz says alerts_undeliverable
SENDER_RETRY_MAX = 10.0  # seconds between attempts of a sender that keeps failing
ERROR_LOG_INTERVAL = 60.0


@dataclass
class MqttOptions:
    """What the sink publishes where; how to reach the broker is :class:`~edgewatch.mqtt.connection.BrokerOptions`."""

    prefix: str = "edgewatch"
    agent_id: str = "edgewatch"
    max_inflight: int = 32
    drain_timeout: float = 5.0


SINK_FIELDS = frozenset(f.name for f in fields(MqttOptions))


class MqttSink(SpooledSender):
    """Spool-backed MQTT publisher; see the module docstring for topics and semantics."""

    def __init__(self, options: MqttOptions, spool_dir: str | os.PathLike[str], connection: BrokerConnection,
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, metrics: Any = None,
                 connections: Connections | None = None, spool_memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 connect: bool = True) -> None:
        self.options = o = options
        self.connection = connection
        self._connections = connections  # who to release the connection to (None: this sink owns it)
        self.topics = Topics(o.prefix, o.agent_id)
        self.base = self.topics.base
        self.spool = Spool(Path(spool_dir), max_bytes=spool_max_bytes, memory_max_bytes=spool_memory_bytes)
        self.metrics = metrics
        self.sent = 0  # events taken by send() this run
        self.published = 0  # PUBACKs received this run
        self.publish_errors = 0
        self.sender_errors = 0  # failed turns of the sender thread (each retried)
        self._down_since: float | None = time.monotonic()  # None while connected
        self._error_logged: float | None = None
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._stop_sender = False
        self._acks: deque[int] = deque()
        self._inflight: dict[int, int] = {}  # paho mid -> spool number
        self._handed = 0  # highest spool number handed to paho this run
        self._update_depth()
        # the retained status and last will; a fleet member on the same topics shares it (and its payload)
        self.status = connection.status_publisher(self.topics)
        connection.on_connect(self._on_connect)
        connection.on_disconnect(self._on_disconnect)
        connection.on_publish(self._on_publish)
        if connect:  # else whoever wires the connection's other users starts it (SinkContext.connect)
            connection.start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()

    @classmethod
    def from_url(cls, url: str, agent_id: str, spool_dir: str | os.PathLike[str] | None = None,
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, metrics: Any = None,
                 connections: Connections | None = None, spool_memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 connect: bool = True, **options: Any) -> MqttSink:
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
                   spool_max_bytes=spool_max_bytes, metrics=metrics, connections=connections,
                   spool_memory_bytes=spool_memory_bytes, connect=connect)

    @property
    def last_error(self) -> str | None:
        """Why the broker connection's last attempt failed (None once connected)."""
        return self.connection.last_error

    # -- connection events (paho's network thread) ---------------------------------------

    def _on_connect(self) -> None:
        self._down_since = None
        quiet = self.connection.takeover.taken_over  # said once by the connection, not at every kick
        log.log(logging.DEBUG if quiet else logging.INFO, "MQTT sink %s ready (spool depth %d)", self.base,
                self.spool.depth)
        self._wake.set()

    def _on_disconnect(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
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
        """Durably queue one event (fsync; in memory while the disk refuses), then let the sender publish it.

        Inside a group (:meth:`begin_group`), the fsync and the sender's turn
        wait for :meth:`end_group`: one sync for all the group's events.
        """
        record = self.topics.for_event(event).encode() + b"\n" + dumps(event).encode()
        self.sent += 1
        self._spooled(record)
        self._update_depth()

    def _send_loop(self) -> None:
        delay = 0.0
        while True:
            self._wake.wait(delay or 0.5)
            self._wake.clear()
            if self._stop_sender:
                self._take_acks_logged()
                return
            try:
                self._send_turn()
                delay = 0.0
            except Exception as exc:  # a full disk, a paho error: this thread must outlive them all
                self.sender_errors += 1
                delay = min(SENDER_RETRY_MAX, max(0.5, delay * 2))
                now = time.monotonic()
                if self._error_logged is None or now - self._error_logged >= ERROR_LOG_INTERVAL:
                    self._error_logged = now
                    log.error("MQTT sink %s: sending failed: %s: %s; retrying every %.1fs at most (%d failure(s); "
                              "logged at most once a minute)", self.base, type(exc).__name__, exc, delay,
                              self.sender_errors)

    def _take_acks_logged(self) -> None:
        try:
            self._take_acks()
        except Exception as exc:
            log.error("MQTT sink %s: recording the last acknowledgements failed: %s", self.base, exc)

    def _send_turn(self) -> None:
        self._take_acks()
        self.spool.flush()  # what waits in memory, once the disk takes it (the spool backs off by itself)
        if not self.connection.connected:
            return
        room = self.options.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for number, record in self.spool.pending(after=self._handed, limit=room):
            topic, _, payload = record.partition(b"\n")
            info = self.connection.publish(topic.decode(), payload, qos=1)
            if not published(info, queued=True):
                # not queued by paho: leave it in the spool and try again on the next wake-up
                self.publish_errors += 1
                log.warning("MQTT publish of spool record %d failed: %s", number, publish_error(info))
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

    def not_ready_reason(self) -> str | None:
        """Why alerts cannot be kept or sent now: ``spool_unwritable`` (the disk refuses the spool's writes;
        alerts wait in memory), ``alerts_undeliverable`` (no broker for UNDELIVERABLE_AFTER seconds); else None."""
        if not self.spool.writable:
            return "spool_unwritable"
        down = self._down_since
        if down is not None and time.monotonic() - down >= UNDELIVERABLE_AFTER:
            return "alerts_undeliverable"
        return None

    def delivery(self) -> dict[str, int]:
        """This run's counts: events ``sent`` to the sink, ``delivered`` (PUBACK), ``dropped`` (never to be
        delivered), ``waiting`` in the spool for the next start (also older runs' events)."""
        return {"sent": self.sent, "delivered": self.published, "dropped": self.spool.dropped,
                "waiting": self.spool.depth}

    def wait_delivered(self, timeout: float) -> bool:
        """Block until the spool is empty (every event acknowledged) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while (self.spool.depth or self._reported_depth) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        return self.spool.depth == 0 and self._reported_depth == 0

    def _drain(self, deadline: float) -> None:
        """:meth:`wait_delivered` until ``deadline``, ended early by a broker that does not answer."""
        while (self.spool.depth or self._reported_depth) and time.monotonic() < deadline:
            if not self.connection.answering:
                log.warning("MQTT sink %s: the broker has answered nothing for %.1fs; stopping without waiting "
                            "for it", self.base, self.connection.silence)
                return
            self._wake.set()
            time.sleep(0.02)

    def close(self) -> None:
        """Deliver what the broker can take within ``drain_timeout``, say "offline", disconnect.

        What is still spooled stays on disk and goes out at the next start.
        A broker that stopped answering (it holds the TCP connection and
        acknowledges nothing: hung, or a mosquitto sent SIGSTOP) ends the
        drain after CLOSE_SILENCE_SECONDS of silence instead of the whole
        ``drain_timeout``, and the status and connection then wait for it no
        more (:attr:`BrokerConnection.answering`): a stop on a hung broker
        took 12 s before.
        """
        if self._closing.is_set():
            return
        self.spool.sync()  # a group left open (the loop ended by an exception): its records are delivered too
        conn = self.connection
        deadline = time.monotonic() + self.options.drain_timeout
        if self.spool.depth and not conn.connected:
            # a short run (end of input at once) may stop before the first connect: give it the drain time
            while not conn.wait_connected(min(0.05, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
                if not conn.answering:
                    log.warning("MQTT sink %s: the broker has not answered the connection for %.1fs; stopping "
                                "without waiting for it", self.base, conn.silence)
                    break
        if conn.connected:
            self._drain(deadline)
        self._closing.set()
        self._stop_sender = True
        self._wake.set()
        self._sender.join(2.0)
        self.status.close()  # "offline"; without a goodbye the broker publishes the last will when it notices
        if self._connections is not None:
            self._connections.release(conn)
        else:
            conn.close()  # waits (bounded) for the broker to acknowledge what is in flight
        # the acknowledgements that came while the connection drained: recorded, not sent again at the next start
        self._take_acks_logged()
        self.spool.close()  # before the summary: what never reached the disk is counted as dropped
        self._update_depth()
        if self.spool.depth:
            log.warning("%d alert(s) left in the spool %s; they are sent at the next start",
                        self.spool.depth, self.spool.dir)


@register("mqtt", "mqtts", form="mqtt[s]://HOST:PORT/PREFIX")
def _build(spec: SinkSpec, context: SinkContext) -> MqttSink:
    """A ``[[sink]]`` table's keys (``max_inflight``, ``keepalive``...) beside ``url`` win over the [mqtt] settings."""
    options = {**context.mqtt_options, **{k.replace("-", "_"): v for k, v in spec.options.items()}}
    return MqttSink.from_url(spec.url, agent_id=context.agent_id, spool_dir=context.spool_dir,
                             spool_max_bytes=context.spool_max_bytes, metrics=context.metrics,
                             connections=context.connections, spool_memory_bytes=context.spool_memory_bytes,
                             connect=context.connect, **options)
