"""One MQTT broker connection (TLS, login, reconnect), shared by everything that talks to that broker.

The MQTT sink (alerts), the MQTT source (measurements) and the model
receiver (retained model files) of one agent reach the same broker through
one :class:`BrokerConnection`, so one paho client, one TCP connection, one
session and one last will per broker. :class:`Connections` hands out the
connection for a broker address and closes it when its last user lets go.

The session is persistent (``clean_session=False``, a client id fixed by the
agent id): QoS 1 messages published to the agent's subscriptions while it
restarts are kept by the broker and delivered after the reconnect, and
paho resends unacknowledged publishes itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlsplit

from edgewatch.errors import EdgewatchError

if TYPE_CHECKING:  # paho is imported when a connection is made (edgewatch.mqtt.client)
    import paho.mqtt.client as paho

    from edgewatch.mqtt.status import StatusPublisher
    from edgewatch.mqtt.topics import Topics

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL = 60.0
TAKEOVER_SESSIONS = 3  # sessions in a row that the broker closed within TAKEOVER_SECONDS of accepting them
TAKEOVER_SECONDS = 10.0
TAKEOVER_RECONNECT_MIN = 2.0  # seconds before reconnecting while a takeover lasts (was reconnect_min, 0.2)
STABLE_SECONDS = 60.0  # a session this long ends the takeover
CLOSE_DRAIN_SECONDS = 5.0  # at most this long, on close, for the broker to acknowledge what is in flight
# on close, a broker that owes acknowledgements and has answered none of them for this long is taken for hung
# (a mosquitto sent SIGSTOP keeps its TCP connections open: paho notices only after 1.5 keepalives, 45 s)
CLOSE_SILENCE_SECONDS = 2.0

# returns False to leave a QoS 1 message unacknowledged (the broker sends it again next session)
MessageHandler = Callable[["paho.MQTTMessage"], "bool | None"]


class MqttConfigError(EdgewatchError):
    """The MQTT URL or its options cannot work (see ``edgewatch agent run --help``)."""


@dataclass(frozen=True)
class BrokerOptions:
    """How to reach and log in to one broker; the ``--mqtt-*`` flags and TOML ``mqtt-*`` keys map to these."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edgewatch"
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    keepalive: int = 30
    clean_session: bool = False  # True for short-lived operator clients, which need no session kept
    reconnect_min: float = 0.2
    reconnect_max: float = 10.0

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def key(self) -> tuple[Any, ...]:
        """Two users with the same key share one connection."""
        return (self.host, self.port, self.tls, self.username)


BROKER_FIELDS = frozenset(f.name for f in fields(BrokerOptions))


def parse_broker_url(url: str, client_id: str, **options: Any) -> tuple[BrokerOptions, str]:
    """``mqtt[s]://[user:pass@]host[:port]/PATH`` plus ``--mqtt-*`` options -> (options, unquoted PATH).

    ``mqtts://`` or a CA/client certificate or ``tls_insecure`` turns TLS on
    (default port 8883, else 1883). Options not given (None) leave the URL's
    login in place; unknown options are refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise MqttConfigError(f"bad MQTT address {url!r}: use mqtt://host:port/... or mqtts://host:port/...")
    unknown = set(options) - BROKER_FIELDS
    if unknown:
        raise MqttConfigError(f"unknown MQTT options {sorted(unknown)}; known: {sorted(BROKER_FIELDS)}")
    clean = {k: v for k, v in options.items() if v is not None}
    asked = bool(clean.pop("tls", False))  # popped first: mqtts:// must not leave it in (a TypeError)
    tls = (parts.scheme == "mqtts" or asked or bool(clean.get("tls_insecure"))
           or any(clean.get(k) for k in ("ca_file", "cert_file")))
    if parts.username and "username" not in clean:
        clean["username"] = unquote(parts.username)
    if parts.password and "password" not in clean:
        clean["password"] = unquote(parts.password)
    try:
        port = parts.port
    except ValueError:
        raise MqttConfigError(f"bad port in MQTT address {url!r}") from None
    opts = BrokerOptions(host=parts.hostname, port=port or (8883 if tls else 1883), client_id=client_id,
                         tls=tls, **clean)
    return opts, unquote(parts.path)


@dataclass
class TakeoverWatch:
    """Tells a session taken over by another client with the same id from an ordinary lost connection.

    MQTT 3.1.1 gives the older client no reason when the broker closes its
    connection for a newer one with its client id (MQTT 5 would send reason
    0x8E, session taken over); what shows it is the rhythm. Two agents with
    one ``--agent-id`` on mosquitto 2: each connection accepted, then closed
    by the broker about 0.2 s later, the other agent in turn, 149 reconnects
    in 40 s. So: ``TAKEOVER_SESSIONS`` connections in a row ended by the
    broker within ``TAKEOVER_SECONDS``, with no failed attempt between them,
    are taken for a takeover until a session lasts ``STABLE_SECONDS``. A
    broker that closes every session for another reason (a packet it
    refuses) shows the same rhythm: the log line names that possibility.
    """

    short: int = 0  # sessions in a row that ended soon after they began
    kicks: int = 0  # sessions lost while the takeover lasted
    taken_over: bool = False
    since: float | None = None  # when the current session began (monotonic)

    def began(self, now: float) -> None:
        self.since = now

    def attempt_failed(self) -> None:
        """A connection that could not be made: the broker or the network is down, not another client."""
        self.short = 0

    def ended(self, now: float) -> str | None:
        """A session the broker (or the network) ended: "takeover" the first time the rhythm shows,
        "stable" when a long session ended one, None otherwise."""
        lasted = now - self.since if self.since is not None else float("inf")
        self.since = None
        if lasted >= STABLE_SECONDS and self.taken_over:
            self.taken_over, self.short = False, 0
            return "stable"
        self.short = self.short + 1 if lasted < TAKEOVER_SECONDS else 0
        if self.taken_over:
            self.kicks += 1
        elif self.short >= TAKEOVER_SESSIONS:
            self.taken_over, self.kicks = True, self.short
            return "takeover"
        return None


class BrokerConnection:
    """One paho client to one broker: connects in the background and reconnects forever.

    Users register what they need before or after :meth:`start`:
    subscriptions (renewed on every connect), a last will, and listeners
    for connect / disconnect / publish acknowledgements. Callbacks run on
    paho's network thread: they must be short and must not raise (a raise
    is logged and swallowed, so one user cannot break the others).

    Messages are acknowledged after their handler returned (manual ack), so
    a message the agent did not take (it was stopping) is not lost: the
    broker sends it again in the next session. A message no handler
    wants (a subscription left in the session by an earlier run) is
    acknowledged and dropped.
    """

    def __init__(self, options: BrokerOptions) -> None:
        self.options = o = options
        self.connects = 0
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        from paho.mqtt.matcher import MQTTMatcher

        from edgewatch.mqtt.client import CallbackAPIVersion, _Client, paho

        self._matcher = MQTTMatcher()
        self._routes: dict[bytes, list[MessageHandler]] = {}  # raw topic -> handlers, cleared on (un)subscribe
        self._on_connect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self._on_publish: list[Callable[[int, bool], None]] = []
        # in-flight bookkeeping: mids of QoS >= 1 publishes not acknowledged yet, noted under _inflight_lock
        # together with paho's publish; paho's thread only appends acknowledged mids to _acks (it holds its
        # out-lock then: taking ours there could deadlock), and they are struck off under the lock
        self._unacked: set[int] = set()
        self._acks: deque[int] = deque()
        self._ack_seen = threading.Event()
        self._inflight_lock = threading.Lock()
        # when the broker last answered (a PUBACK, a CONNACK) and since when it has owed one (monotonic):
        # how :attr:`silence` is measured, so that close need not wait the whole drain on a broker that stopped
        self._last_answer = 0.0
        self._owed_since = 0.0
        self._attempt_since: float | None = None  # a connection attempt waiting for its CONNACK, since when
        # SUBACKs: paho's thread only appends the mid (as for PUBACKs); struck off under _lock by the waiter
        self._sub_mids: dict[int, str] = {}  # SUBSCRIBE mid -> topic filter, this session
        self._subacks: deque[int] = deque()
        self._early_subacks: set[int] = set()
        self._subscribed: set[str] = set()  # filters the broker acknowledged in this session
        self._suback_seen = threading.Event()
        self.last_error: str | None = None  # why the last connection attempt failed
        self.failed_connects = 0
        self.takeover = TakeoverWatch()
        self._error_logged_at: float | None = None
        self._statuses: dict[str, StatusPublisher] = {}
        self.client = client = _Client(self._connect_failed, CallbackAPIVersion.VERSION2, client_id=o.client_id[:64],
                                       protocol=paho.MQTTv311, clean_session=o.clean_session, manual_ack=True)
        paho_log = logging.getLogger("edgewatch.mqtt.paho")
        if paho_log.isEnabledFor(logging.DEBUG):  # otherwise it repeats every failed reconnect at ERROR
            client.enable_logger(paho_log)
        if o.username:
            client.username_pw_set(o.username, o.password)
        if o.tls:
            self._set_tls(client)
        client.reconnect_delay_set(min_delay=o.reconnect_min, max_delay=o.reconnect_max)  # type: ignore[arg-type]
        client.max_inflight_messages_set(64)
        client.max_queued_messages_set(0)
        client.on_pre_connect = self._connecting_cb
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_publish = self._published_cb
        client.on_message = self._message_cb
        client.on_subscribe = self._subscribed_cb

    def _set_tls(self, client: paho.Client) -> None:
        import ssl

        o = self.options
        for label, path in (("CA file", o.ca_file), ("client certificate", o.cert_file), ("client key", o.key_file)):
            if path and not Path(path).is_file():
                raise MqttConfigError(f"MQTT {label} {path} does not exist")
        try:
            client.tls_set(ca_certs=o.ca_file, certfile=o.cert_file, keyfile=o.key_file,
                           cert_reqs=ssl.CERT_NONE if o.tls_insecure else ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise MqttConfigError(f"MQTT TLS setup failed: {exc}") from exc
        if o.tls_insecure:
            client.tls_insecure_set(True)

    # -- registration ------------------------------------------------------------------

    def status_publisher(self, topics: Topics) -> StatusPublisher:
        """The one publisher of ``topics``' retained status on this connection (made on first use, which
        sets the last will: before :meth:`start`, or it takes effect at the next connect)."""
        from edgewatch.mqtt.status import StatusPublisher

        with self._lock:
            held = self._statuses.get(topics.status)
            if held is None:
                held = self._statuses[topics.status] = StatusPublisher(self, topics)
        return held

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        """The broker publishes this if the connection dies without a goodbye (taken at the next connect)."""
        self.client.will_set(topic, payload, qos=qos, retain=retain)

    def on_connect(self, callback: Callable[[], None]) -> None:
        self._on_connect.append(callback)
        if self._connected.is_set():
            self._call(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._on_disconnect.append(callback)

    def on_publish(self, callback: Callable[[int, bool], None]) -> None:
        """``callback(mid, refused)`` for every acknowledged QoS 1 publish (paho's out-lock is held: be quick)."""
        self._on_publish.append(callback)

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> str:
        """Deliver messages matching ``topic_filter`` (``+``/``#`` allowed) to ``handler``, across reconnects."""
        levels = topic_filter.split("/")
        if not topic_filter or any(("+" in lv or "#" in lv) and len(lv) > 1 for lv in levels) or "#" in levels[:-1]:
            raise MqttConfigError(f"bad MQTT topic filter {topic_filter!r}: '+' and '#' must be whole levels, "
                                  "'#' only the last (write '#' as %23 in a URL)")
        with self._lock:  # with the connect callback's snapshot under the same lock: subscribed exactly once
            self._subscriptions[topic_filter] = (qos, handler)
            self._matcher[topic_filter] = handler
            self._routes = {}
            connected = self._connected.is_set()
        if connected:
            self._subscribe_one(topic_filter, qos)
        return topic_filter

    def unsubscribe(self, topic_filter: str, keep_session: bool = False) -> None:
        """Stop delivering ``topic_filter``; ``keep_session`` leaves the broker's subscription in place,
        so what is published until the next run is kept for it (an MQTT source that stops)."""
        with self._lock:
            if self._subscriptions.pop(topic_filter, None) is None:
                return
            self._subscribed.discard(topic_filter)
            try:
                del self._matcher[topic_filter]
            except KeyError:
                pass
            self._routes = {}
        if self._connected.is_set() and not keep_session:
            self.client.unsubscribe(topic_filter)

    def _message_cb(self, client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        take = True
        try:
            raw = msg._topic  # the bytes: no decode for a topic seen before
            handlers = self._routes.get(raw)
            if handlers is None:
                handlers = list(self._matcher.iter_match(msg.topic))
                if len(self._routes) >= 10_000:
                    self._routes = {}  # many distinct topics: the cache only bounds its memory
                self._routes[raw] = handlers
        except (UnicodeDecodeError, KeyError, TypeError):
            handlers = []
        for handler in handlers:
            try:
                if handler(msg) is False:
                    take = False
            except Exception:  # a handler bug must not kill paho's network thread
                log.exception("handler for MQTT topic %r failed", msg._topic)
        if take and msg.qos:
            client.ack(msg.mid, msg.qos)

    def _subscribe_one(self, topic_filter: str, qos: int) -> None:
        rc, mid = self.client.subscribe(topic_filter, qos=qos)
        if mid is not None:
            self._sub_mids[mid] = topic_filter
        from paho.mqtt.client import error_string
        from paho.mqtt.enums import MQTTErrorCode

        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("MQTT subscribe to %s failed: %s", topic_filter, error_string(rc))

    # -- life ----------------------------------------------------------------------------

    def start(self) -> BrokerConnection:
        """Connect in the background (idempotent); reconnects with backoff until :meth:`close`."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        self.client.connect_async(self.options.host, self.options.port, keepalive=self.options.keepalive)
        self.client.loop_start()
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        """paho's publish; check ``rc`` (``NO_CONN`` means queued, sent after the reconnect).

        A QoS >= 1 message paho took is counted in :attr:`in_flight` until the
        broker acknowledges it, so that :meth:`close` can wait for it.
        """
        with self._inflight_lock:  # the acknowledgement cannot be struck off before the mid is noted
            self._strike_acks()
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if qos and published(info, queued=True):
                if not self._unacked:
                    self._owed_since = time.monotonic()
                self._unacked.add(info.mid)
            self._strike_acks()  # also those of QoS 0 publishes (paho reports them written): keeps _acks short
        return info

    def _strike_acks(self) -> None:
        """Strike acknowledged mids off the in-flight set (with ``_inflight_lock`` held)."""
        acks, unacked = self._acks, self._unacked
        while acks:
            unacked.discard(acks.popleft())

    @property
    def in_flight(self) -> int:
        """QoS >= 1 messages published through :meth:`publish` that the broker has not acknowledged yet."""
        with self._inflight_lock:
            self._strike_acks()
            return len(self._unacked)

    @property
    def silence(self) -> float:
        """Seconds the broker has owed an answer without giving any: a PUBACK while connected, or the CONNACK
        of a connection attempt under way; 0 when it owes none (also while down between attempts).

        Why: a broker that accepts TCP but stopped answering (hung, or a
        mosquitto sent SIGSTOP) looks connected to paho for 1.5 keepalives;
        this tells it from a slow one, which still acknowledges something.
        """
        now = time.monotonic()
        if not self._connected.is_set():
            attempt = self._attempt_since
            return 0.0 if attempt is None else max(0.0, now - attempt)
        with self._inflight_lock:
            self._strike_acks()
            if not self._unacked:
                return 0.0
            since = max(self._owed_since, self._last_answer)
        return max(0.0, now - since)

    @property
    def answering(self) -> bool:
        """False while connected to a broker silent for CLOSE_SILENCE_SECONDS or more (see :attr:`silence`)."""
        return self.silence < CLOSE_SILENCE_SECONDS

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait up to ``timeout`` while connected for every in-flight QoS >= 1 publish to be acknowledged.

        Returns at once (False) when the connection is down: what paho holds
        then goes out after a reconnect, which a closing connection will not see;
        and (False) as soon as the broker is not :attr:`answering`: a hung broker
        would hold the caller the whole ``timeout`` for nothing.
        """
        return self._wait_acks(lambda: not self.in_flight, timeout)

    def wait_published(self, info: paho.MQTTMessageInfo, timeout: float) -> bool:
        """Wait up to ``timeout`` for one QoS >= 1 publish to be acknowledged, while connected and the broker
        is :attr:`answering` (paho's ``wait_for_publish`` waits the whole timeout on a hung broker); False at
        once for a publish paho did not send (queued for a reconnect, or refused)."""
        if not published(info):
            return False
        return self._wait_acks(info.is_published, timeout)

    def _wait_acks(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait up to ``timeout``, woken by each acknowledgement, for ``done``; False once disconnected or
        the broker stopped answering."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or not self._connected.is_set() or not self.answering:
                return False
            self._ack_seen.wait(min(left, 0.05))
            self._ack_seen.clear()
        return True

    def close(self, timeout: float = 2.0, drain: float = CLOSE_DRAIN_SECONDS) -> None:
        """Wait for in-flight publishes, disconnect cleanly (no last will) and stop paho's thread.

        First waits up to ``drain`` seconds, while connected, for the broker
        to acknowledge every QoS >= 1 publish still in flight. Why: paho's
        DISCONNECT goes out right behind the last PUBLISH and paho then closes
        its socket with the broker's PUBACKs unread; a socket closed with
        unread data sends a TCP reset, and the broker dropped what it had not
        read yet (mosquitto 2.0.11 logs "disconnected due to out of memory"):
        20 QoS 1 messages published then closed at once lost some in 24 of 30
        tries. With the wait, 0 of 30. A broker that has answered nothing for
        CLOSE_SILENCE_SECONDS while owing acknowledgements (hung: its TCP
        connection open, nothing read) ends the wait then: before, a stopping
        agent waited the whole drain on it, and again in each user's own wait
        (the sink's 5 s, the status' 2 s), 12 s in all; what it did not
        acknowledge stays in the sinks' spools. Then waits up to ``timeout`` for the
        broker to see the DISCONNECT: paho's thread, stopped at once, could drop
        it unsent, and the broker would then publish the last will over the
        "offline" status just published.
        """
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            if not self.wait_acknowledged(drain) and self._connected.is_set():
                silence = self.silence
                if silence >= CLOSE_SILENCE_SECONDS:
                    log.warning("MQTT %s: the broker has answered nothing for %.1fs; closing with %d publish(es) "
                                "not acknowledged (what a sink spooled among them stays in its spool for the next "
                                "start)", self.options.address, silence, self.in_flight)
                else:
                    log.warning("MQTT %s: %d publish(es) not acknowledged within %gs of closing; closing anyway",
                                self.options.address, self.in_flight, drain)
            self.client.disconnect()
            deadline = time.monotonic() + timeout
            while self._connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            self.client.loop_stop()
        self._connected.clear()

    # -- paho callbacks ------------------------------------------------------------------

    def _connecting_cb(self, _client: paho.Client, _userdata: Any) -> None:
        self._attempt_since = time.monotonic()

    def _connected_cb(self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        self._attempt_since = None
        if reason.is_failure:
            self._connect_failed(f"the broker refused the connection: {reason}")
            return
        self._error_logged_at = None  # a later failure is news again
        self.connects += 1
        self._last_answer = time.monotonic()  # a CONNACK: and paho sends what is in flight again
        self.takeover.began(self._last_answer)
        with self._lock:
            # a subscribe() racing this callback either lands in the snapshot or sees the flag set: never
            # neither (that lost the model topic now and then when it was subscribed right at start)
            subs = list(self._subscriptions.items())
            self._subscribed.clear()  # acknowledged again in this session (a clean one has none)
            self._subacks.clear()
            self._early_subacks.clear()
            self._sub_mids.clear()
            self._connected.set()
        for topic_filter, (qos, _) in subs:
            self._subscribe_one(topic_filter, qos)
        log.log(logging.DEBUG if self.takeover.taken_over else logging.INFO,
                 "MQTT connected to %s (connection %d, session %s)", self.options.address, self.connects,
                 "resumed" if getattr(flags, "session_present", False) else "new")
        for cb in list(self._on_connect):
            self._call(cb)

    def _disconnected_cb(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._attempt_since = None
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing.is_set():
            self._lost(reason)
            for cb in list(self._on_disconnect):
                self._call(cb)

    def _lost(self, reason: Any) -> None:
        """Say why the connection went: once for a session taken over, else once per loss."""
        o = self.options
        verdict = self.takeover.ended(time.monotonic())
        if verdict == "takeover":
            log.error("MQTT %s: the broker closed this agent's connection %d times in a row within %gs of "
                      "accepting it: another client is most likely connected with the same client id %r "
                      "(two agents with the same --agent-id?), and the broker drops the older session each "
                      "time the other connects. Give every agent a unique --agent-id. (If no other client "
                      "uses that id, the broker is refusing something this agent sends: see the broker's log.) "
                      "Reconnecting every %gs meanwhile; this is logged once.", o.address, self.takeover.short,
                      TAKEOVER_SECONDS, o.client_id, TAKEOVER_RECONNECT_MIN)
            self.client.reconnect_delay_set(min_delay=max(o.reconnect_min, TAKEOVER_RECONNECT_MIN),  # type: ignore[arg-type]
                                            max_delay=max(o.reconnect_max, TAKEOVER_RECONNECT_MIN))  # type: ignore[arg-type]
        elif verdict == "stable":
            log.warning("MQTT connection to %s lost (%s) after holding %gs or more: the session is no longer "
                        "taken over (%d sessions were); reconnecting", o.address, reason, STABLE_SECONDS,
                        self.takeover.kicks)
            self.client.reconnect_delay_set(min_delay=o.reconnect_min, max_delay=o.reconnect_max)  # type: ignore[arg-type]
        elif self.takeover.taken_over:
            log.debug("MQTT connection to %s lost again (%s): session taken over", o.address, reason)
        else:
            log.warning("MQTT connection to %s lost (%s); reconnecting", o.address, reason)

    def _connect_failed(self, reason: str) -> None:
        """Say why the broker cannot be reached (TLS verify, refused, DNS...), at most once a minute."""
        self._attempt_since = None
        self.last_error = reason
        self.failed_connects += 1
        self.takeover.attempt_failed()
        if self._closing.is_set():
            return
        now = time.monotonic()
        if self._error_logged_at is None or now - self._error_logged_at >= ERROR_LOG_INTERVAL:
            self._error_logged_at = now
            log.warning("MQTT %s: cannot connect: %s (%d failed attempt(s) so far; alerts wait in the spool, "
                        "retrying; logged at most once a minute)", self.options.address, reason,
                        self.failed_connects)

    def _published_cb(self, _client: paho.Client, _userdata: Any, mid: int, reason: Any, _props: Any) -> None:
        refused = bool(getattr(reason, "is_failure", False))
        if mid in self._unacked:  # a PUBACK; paho also reports QoS 0 publishes here, when it wrote them
            self._last_answer = time.monotonic()
        self._acks.append(mid)
        self._ack_seen.set()
        for cb in self._on_publish:
            try:
                cb(mid, refused)
            except Exception:
                log.exception("MQTT publish listener failed")

    def _subscribed_cb(self, _client: paho.Client, _userdata: Any, mid: int, _reasons: Any, _props: Any) -> None:
        self._subacks.append(mid)
        self._suback_seen.set()

    def subscribed(self, topic_filter: str) -> bool:
        """Whether the broker has acknowledged ``topic_filter``'s subscription in the current session.

        Why: a message published before the broker has the subscription is
        not kept for it (unless retained); a caller that must not miss one
        waits for this, not for the connection alone.
        """
        with self._lock:
            early = self._early_subacks  # a SUBACK may come before _subscribe_one has noted its mid
            while self._subacks:
                early.add(self._subacks.popleft())
            for mid in [m for m in early if m in self._sub_mids]:
                early.discard(mid)
                filt = self._sub_mids.pop(mid)
                if filt in self._subscriptions:
                    self._subscribed.add(filt)
            return self._connected.is_set() and topic_filter in self._subscribed

    def wait_subscribed(self, topic_filter: str, timeout: float) -> bool:
        """Wait up to ``timeout`` for :meth:`subscribed` to be true."""
        deadline = time.monotonic() + timeout
        while not self.subscribed(topic_filter):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._suback_seen.wait(min(left, 0.05))
            self._suback_seen.clear()
        return True

    def _call(self, cb: Callable[[], None]) -> None:
        try:
            cb()
        except Exception:
            log.exception("MQTT connection listener failed")


def _describe(exc: BaseException) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"


class Connections:
    """The agent's broker connections: one per broker, closed when the last user releases it."""

    def __init__(self) -> None:
        self._open: dict[tuple[Any, ...], tuple[BrokerConnection, int]] = {}
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, options: BrokerOptions) -> BrokerConnection:
        with self._lock:
            held = self._open.get(options.key)
            if held is not None:
                conn, users = held
                if replace(conn.options, client_id=options.client_id) != options:
                    log.warning("MQTT %s is shared; the options of its first user apply", options.address)
                self._open[options.key] = (conn, users + 1)
                return conn
            # two connections to one broker (another login) must not share a client id: the broker
            # would drop one whenever the other connects
            same = self._ids.get(f"{options.host}:{options.port}:{options.client_id}", 0)
            self._ids[f"{options.host}:{options.port}:{options.client_id}"] = same + 1
            if same:
                options = replace(options, client_id=f"{options.client_id}-{same + 1}")
            conn = BrokerConnection(options)
            self._open[options.key] = (conn, 1)
            return conn

    def release(self, conn: BrokerConnection) -> None:
        with self._lock:
            for key, (held, users) in list(self._open.items()):
                if held is conn:
                    if users > 1:
                        self._open[key] = (held, users - 1)
                        return
                    del self._open[key]
                    break
        conn.close()

    def close(self) -> None:
        with self._lock:
            held = [c for c, _ in self._open.values()]
            self._open.clear()
        for conn in held:
            conn.close()


def published(info: paho.MQTTMessageInfo, queued: bool = False) -> bool:
    """Whether paho took a publish; with ``queued``, also one held for the reconnect (``NO_CONN``)."""
    from paho.mqtt.enums import MQTTErrorCode

    return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (queued and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN)


def publish_error(info: paho.MQTTMessageInfo) -> str:
    """paho's words for why a publish was not taken."""
    from paho.mqtt.client import error_string

    return error_string(info.rc)


def client_id_for(agent_id: str) -> str:
    return _safe(f"edgewatch-{agent_id}")[:64]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
