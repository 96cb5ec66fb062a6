"""The MQTT sink: alerts at QoS 1 through an on-disk spool, a retained status with a last will.

Topics (``PREFIX`` from the URL, ``AGENT`` the agent id)::

    PREFIX/AGENT/alerts   episode start/end events, QoS 1, JSON, each with an ``id``
    PREFIX/AGENT/drift    drift and drift_end events, QoS 1, JSON
    PREFIX/AGENT/events   other agent events (model swapped or refused), QoS 1, JSON
    PREFIX/AGENT/status   retained "online" / "offline"; the broker publishes "offline" as
                          the last will when the agent dies without saying goodbye
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
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edgewatch.agent.events import dumps
from edgewatch.agent.spool import DEFAULT_MAX_BYTES, Spool
from edgewatch.errors import EdgewatchError

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
CONNECT_ERROR_LOG_INTERVAL = 60.0


class MqttConfigError(EdgewatchError):
    """The MQTT URL or its options cannot work (see ``edgewatch agent run --help``)."""


@dataclass
class MqttOptions:
    """How to reach and log in to the broker; the CLI flags and the TOML ``mqtt_*`` keys map to these."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "edgewatch"
    agent_id: str = socket.gethostname()
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    keepalive: int = 30
    max_inflight: int = 32
    drain_timeout: float = 5.0
    reconnect_min: float = 0.2
    reconnect_max: float = 10.0


def topic_for(event: dict[str, Any], base: str) -> str:
    kind = event.get("event")
    if kind in ("start", "end"):
        return f"{base}/alerts"
    if kind in ("drift", "drift_end"):
        return f"{base}/drift"
    return f"{base}/events"


class MqttSink:
    """Spool-backed MQTT publisher; see the module docstring for topics and semantics."""

    def __init__(self, options: MqttOptions, spool_dir: str | os.PathLike[str],
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, metrics: Any = None) -> None:
        self.options = o = options
        self.base = f"{o.prefix.strip('/')}/{o.agent_id}".lstrip("/")
        self.status_topic = f"{self.base}/status"
        self.spool = Spool(Path(spool_dir), max_bytes=spool_max_bytes)
        self.metrics = metrics
        self.published = 0  # PUBACKs received this run
        self.publish_errors = 0
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._stop_sender = False
        self._acks: deque[int] = deque()
        self._inflight: dict[int, int] = {}  # paho mid -> spool number
        self._handed = 0  # highest spool number handed to paho this run
        self._subscriptions: dict[str, Callable[[paho.MQTTMessage], None]] = {}
        self._extra = _extra_metrics(metrics)
        self.last_error: str | None = None  # why the last connection attempt failed
        self._failed_connects = 0
        self._error_logged_at: float | None = None
        self.client = self._make_client()
        self._update_depth()
        self.client.connect_async(o.host, o.port, keepalive=o.keepalive)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()

    @classmethod
    def from_url(cls, url: str, agent_id: str, spool_dir: str | os.PathLike[str] | None = None,
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, metrics: Any = None, **options: Any) -> MqttSink:
        """``mqtt://[user:pass@]host[:port]/prefix`` (``mqtts://`` turns TLS on, port 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise MqttConfigError(f"bad MQTT sink {url!r}: use mqtt://host:port/prefix or mqtts://host:port/prefix")
        asked = bool(options.pop("tls", False))  # popped first: mqtts:// must not leave it in (a TypeError)
        tls = parts.scheme == "mqtts" or asked or any(options.get(k) for k in ("ca_file", "cert_file"))
        known = {f for f in MqttOptions.__dataclass_fields__}
        unknown = set(options) - known
        if unknown:
            raise MqttConfigError(f"unknown MQTT options {sorted(unknown)}; known: {sorted(known)}")
        clean = {k: v for k, v in options.items() if v is not None}
        if parts.username and "username" not in clean:
            clean["username"] = unquote(parts.username)
        if parts.password and "password" not in clean:
            clean["password"] = unquote(parts.password)
        opts = MqttOptions(host=parts.hostname, port=parts.port or (8883 if tls else 1883),
                           prefix=parts.path.strip("/") or "edgewatch", agent_id=agent_id, tls=tls, **clean)
        if spool_dir is None:
            spool_dir = Path("spool")
        return cls(opts, Path(spool_dir) / _safe(f"{opts.host}_{opts.port}_{opts.prefix}"),
                   spool_max_bytes=spool_max_bytes, metrics=metrics)

    # -- paho ----------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        o = self.options
        client = _Client(self._connect_failed, CallbackAPIVersion.VERSION2,
                         client_id=_safe(f"edgewatch-{o.agent_id}")[:64], protocol=paho.MQTTv311, clean_session=True)
        paho_log = logging.getLogger("edgewatch.agent.paho")
        if paho_log.isEnabledFor(logging.DEBUG):  # otherwise it repeats every failed reconnect at ERROR
            client.enable_logger(paho_log)
        if o.username:
            client.username_pw_set(o.username, o.password)
        if o.tls:
            for label, path in (("CA file", o.ca_file), ("client certificate", o.cert_file),
                                ("client key", o.key_file)):
                if path and not Path(path).is_file():
                    raise MqttConfigError(f"MQTT {label} {path} does not exist")
            try:
                client.tls_set(ca_certs=o.ca_file, certfile=o.cert_file, keyfile=o.key_file,
                               cert_reqs=ssl.CERT_NONE if o.tls_insecure else ssl.CERT_REQUIRED)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise MqttConfigError(f"MQTT TLS setup failed: {exc}") from exc
            if o.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=o.reconnect_min, max_delay=o.reconnect_max)  # type: ignore[arg-type]
        client.max_inflight_messages_set(o.max_inflight + 8)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect_failed(self, reason: str) -> None:
        """Say why the broker cannot be reached (TLS verify, refused, DNS...), at most once a minute."""
        self.last_error = reason
        self._failed_connects += 1
        now = time.monotonic()
        if self._error_logged_at is None or now - self._error_logged_at >= CONNECT_ERROR_LOG_INTERVAL:
            self._error_logged_at = now
            log.warning("MQTT %s:%d: cannot connect: %s (%d failed attempt(s) so far; alerts wait in the "
                        "spool; logged at most once a minute)", self.options.host, self.options.port, reason,
                        self._failed_connects)

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._connect_failed(f"the broker refused the connection: {reason}")
            return
        self._error_logged_at = None  # a later failure is news again
        info = client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT status 'online' not queued: %s", paho.error_string(info.rc))
        for topic in self._subscriptions:
            rc, _ = client.subscribe(topic, qos=1)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("MQTT subscribe to %s failed: %s", topic, paho.error_string(rc))
        log.info("MQTT connected to %s:%d (spool depth %d)", self.options.host, self.options.port, self.spool.depth)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected.is_set() and not self._closing.is_set():
            log.warning("MQTT connection to %s:%d lost (%s); alerts wait in the spool",
                        self.options.host, self.options.port, reason)
        self._connected.clear()

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: Any, _props: Any) -> None:
        # called with paho's out-message lock held: only hand the mid over to the sender thread
        if getattr(reason, "is_failure", False):
            self.publish_errors += 1
            log.error("MQTT broker refused message %d: %s", mid, reason)
        self._acks.append(mid)
        self._wake.set()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        handler = self._subscriptions.get(msg.topic)
        if handler is None:
            return
        try:
            handler(msg)
        except Exception:  # a handler bug must not kill paho's network thread
            log.exception("handler for MQTT topic %s failed", msg.topic)

    def subscribe(self, suffix: str, handler: Callable[[paho.MQTTMessage], None]) -> str:
        """Subscribe to ``PREFIX/AGENT/<suffix>`` (again after every reconnect); returns the topic."""
        topic = f"{self.base}/{suffix}"
        self._subscriptions[topic] = handler
        if self._connected.is_set():
            self.client.subscribe(topic, qos=1)
        return topic

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
            if not self._connected.is_set():
                continue
            room = self.options.max_inflight - len(self._inflight)
            if room <= 0:
                continue
            for number, record in self.spool.pending(after=self._handed, limit=room):
                topic, _, payload = record.partition(b"\n")
                info = self.client.publish(topic.decode(), payload, qos=1)
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
        if self._extra:
            self._extra["dropped"].set(self.spool.dropped)
            self._extra["errors"].set(self.publish_errors)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

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
        deadline = time.monotonic() + self.options.drain_timeout
        if self.spool.depth and not self._connected.is_set():
            # a short run (end of input at once) may stop before the first connect: give it the drain time
            self._connected.wait(self.options.drain_timeout)
        if self._connected.is_set():
            self.wait_delivered(max(0.0, deadline - time.monotonic()))
        self._closing.set()
        self._stop_sender = True
        self._wake.set()
        self._sender.join(2.0)
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(timeout=2.0)
                except (RuntimeError, ValueError) as exc:
                    log.warning("MQTT status 'offline' not confirmed: %s", exc)
            self.client.disconnect()
        else:
            self.client.disconnect()  # the broker publishes the last will when it notices
        self.client.loop_stop()
        if self.spool.depth:
            log.warning("%d alert(s) left in the spool %s; they are sent at the next start",
                        self.spool.depth, self.spool.dir)
        self.spool.close()


class _Client(paho.Client):
    """paho's client, telling us why a connection attempt failed.

    Why: paho's loop catches the OSError of a failed connect (refused, DNS,
    TLS certificate verification) and only calls ``on_connect_fail`` without
    it, so an operator would never learn why the alerts stay in the spool.
    """

    def __init__(self, on_error: Callable[[str], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_error = on_error

    def _create_socket(self) -> Any:
        try:
            return super()._create_socket()
        except Exception as exc:
            self._on_error(_describe(exc))
            raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"


def _extra_metrics(metrics: Any) -> dict[str, Any]:
    if metrics is None or not hasattr(metrics, "registry"):
        return {}
    from prometheus_client import Gauge

    try:
        return {
            "dropped": Gauge("edgewatch_spool_dropped", "Spooled alerts dropped because the spool was full",
                             registry=metrics.registry),
            "errors": Gauge("edgewatch_mqtt_publish_errors", "MQTT publishes refused by paho or the broker",
                            registry=metrics.registry),
        }
    except ValueError:  # a second MQTT sink on the same registry
        return {}


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
