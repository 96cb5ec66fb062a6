"""What every source shares: the items it hands the agent, its thread, backoff, its build context.

Every source runs in its own thread and puts :class:`Item` tuples on one
bounded queue that the agent loop drains. A full queue blocks the source,
which is the back-pressure we want (a replay slows down, a websocket peer
sees TCP push back, an MQTT broker holds its messages) instead of
unbounded memory.

A source ends only when told to (or, for a replay or stdin, at the end of
its input). A reading it cannot use is handed on as a BAD item with its
reason (:meth:`Source.bad_reading`); a thread that dies anyway sends a
FAILED item, and the agent starts it again (:mod:`.supervision`).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from edgewatch.agent.sources.parsing import DEFAULT_MAX_BYTES, BadReason
from edgewatch.agent.sources.rows import RowAssembler, parse_max_age
from edgewatch.errors import BadInput, EdgewatchError

log = logging.getLogger(__name__)

BAD_LOG_INTERVAL = 60.0  # seconds between two log lines of a source about the same kind of bad reading


class Kind:
    RAW = 0  # payload: str | bytes, to be parsed
    MEASUREMENT = 1  # payload: Measurement, already parsed (replay)
    RESET = 2  # payload: None (the source reconnected: its streams' windows are stale) or a tuple of the
    # stream ids whose windows are stale (a Sparkplug node or device died or was born again)
    END = 3  # payload: the Source; it finished as it should (told to stop, or the end of its input)
    BAD = 4  # payload: BadReason; refused before parsing (a binary websocket frame, a bad Modbus reply)
    FAILED = 5  # payload: SourceFailure; its thread ended without being told to (the agent restarts it)
    REBIRTH = 6  # payload: str, the Sparkplug edge node (spBv1.0/GROUP/NODE) just asked for a rebirth; counted


class Item(NamedTuple):
    kind: int
    source: str
    payload: object
    received: float


class SourceFailure(NamedTuple):
    source: Source
    why: str


class SourcesFailed(EdgewatchError):
    """Every source has ended and at least one ended unexpectedly (exit 1); the message names which and why."""

    def __init__(self, failures: dict[str, str], n_sources: int) -> None:
        clean = n_sources - len(failures)
        super().__init__("every source has ended; " + "; ".join(f"{n}: {w}" for n, w in failures.items())
                         + (f" ({clean} other source(s) reached the end of their input)" if clean else "")
                         + ". The agent stops with exit 1 so that its service manager starts it again")
        self.failures = failures


class Source:
    """Base: a named producer thread; ``stop()`` must make ``run`` return soon.

    ``run`` may be called again after it failed (the agent restarts a
    source whose thread died), so it must (re)open what it reads itself.
    """

    name: str = "source"
    finite = False  # True: its input can end (replay, stdin), and reaching that end is a clean END

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue: queue.Queue[Item] | None = None
        self._bad_logged: dict[BadReason, float] = {}
        # how this source's rows are assembled (held values, staleness); the agent's loop uses it for the
        # objects keyed by feature name on raw lines (stdin, websocket), the source itself for the rest
        self.rows: RowAssembler | None = None

    def start(self, q: queue.Queue[Item]) -> None:
        self.queue = q
        self._thread = threading.Thread(target=self._main, name=f"source:{self.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        why = None
        try:
            self.run()
        except Exception as exc:  # a source bug must not take the agent down, nor end silently
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.error("source %s failed: %s", self.name, why, exc_info=True)
        else:
            if not (self.stopping or self.finite):
                why = "its reader returned although nobody asked it to stop"
        if why is None:
            self._put(Item(Kind.END, self.name, self, time.time()), force=True)
        else:
            self._put(Item(Kind.FAILED, self.name, SourceFailure(self, why), time.time()), force=True)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def bad_reading(self, reason: BadReason, detail: str) -> bool:
        """Hand the agent one reading it cannot use (counted as ``reason``) and say why (:meth:`_note_bad`).
        False when the agent is stopping."""
        self._note_bad(reason, detail)
        return self._put(Item(Kind.BAD, self.name, reason, time.time()))

    def _note_bad(self, reason: BadReason, detail: str) -> None:
        """Log what was wrong with a reading, at most once a minute per reason (the agent counts them all)."""
        now = time.monotonic()
        last = self._bad_logged.get(reason)
        if last is None or now - last >= BAD_LOG_INTERVAL:
            self._bad_logged[reason] = now
            log.warning("source %s: %s (counted as %s; logged at most once a minute)", self.name, detail,
                        reason.value)

    def _put(self, item: Item, force: bool = False) -> bool:
        """Put with back-pressure, giving up only when asked to stop."""
        assert self.queue is not None
        while True:
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self._stop.is_set() and not force:
                    return False


@dataclass
class Backoff:
    """Jittered exponential backoff: base·2^attempt, capped, times a random factor in [0.5, 1.5)."""

    base: float = 0.1
    cap: float = 10.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return delay * (0.5 + self.rng.random())

    def reset(self) -> None:
        self.attempt = 0


class SourceConfigError(BadInput):
    """A --source URL or its TOML table cannot work; the message names what to change."""


def row_assembler(source: str, features: list[str], max_age: object = None,
                  states: dict[str, dict[str, float]] | None = None) -> RowAssembler:
    """The source's :class:`RowAssembler` with its ``max_age`` setting and the model's state features' codes
    (``states``, the card's); SourceConfigError when ``max_age`` is no duration."""
    try:
        return RowAssembler(features, parse_max_age(max_age), source=source, states=states)
    except ValueError as exc:
        raise SourceConfigError(f"source {source!r}: {exc}") from None


@dataclass
class SourceSpec:
    """One ``--source``: its URL and, from a TOML ``[[source]]`` table, the keys beside ``url``."""

    url: str
    scheme: str
    options: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The URL's query parameters, then the table's keys (dashes as underscores); the table wins."""
        query = dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))
        merged: dict[str, Any] = {k.replace("-", "_"): v for k, v in query.items()}
        merged.update({k.replace("-", "_"): v for k, v in self.options.items()})
        return merged

    def checked(self, known: frozenset[str] | set[str]) -> dict[str, Any]:
        """:meth:`settings`, or SourceConfigError naming the unknown ones (a misspelt key must not pass)."""
        settings = self.settings()
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise SourceConfigError(f"source {self.name!r}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return settings

    @property
    def name(self) -> str:
        """The source's public name: its URL without a login or query (passwords must not reach metrics)."""
        return public_name(self.url)


def public_name(url: str, keep_query: bool = False) -> str:
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query if keep_query else "", ""))


@dataclass
class SourceContext:
    """What sources need from the agent to be built: the model's features, shared connections, limits."""

    features: list[str]
    agent_id: str = "edgewatch"
    idle_timeout: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_BYTES
    mqtt_options: dict[str, Any] = field(default_factory=dict)  # --mqtt-* flags (login, TLS)
    connections: Any = None  # edgewatch.mqtt.connection.Connections, shared with the MQTT sink
    states: dict[str, dict[str, float]] | None = None  # the card's state features: {feature: {text: code}}

