"""Spooled HTTP POSTs for the webhook and Alertmanager sinks: in order, at least once, with backoff.

Every record is first written to the sink's own
:class:`~edgewatch.agent.sinks.spool.Spool` (fsynced; in memory while the
disk refuses) and leaves it only when the receiver answered 2xx, so a
receiver that is down, slow or restarting loses nothing and a killed agent
sends the rest at its next start. One sender thread posts the oldest
record, one at a time: a record waits until those before it were taken,
so the receiver sees them in the order the agent emitted them.

What an answer means:

* 2xx: delivered; the next record goes.
* 408, 429, 5xx, a timeout, a refused connection, a TLS failure: the same
  record is tried again after a backoff (``retry_min`` doubling to
  ``retry_max``, with jitter; a 429's ``Retry-After`` is obeyed up to
  ``retry_max``), for as long as it takes.
* any other status (400, 401, 403, 404, 413, 3xx...): the receiver will
  never take this record, and retrying it forever would hold back every
  alert behind it. It is **parked**: appended to ``rejected.jsonl`` in the
  sink's spool directory with the status and the start of the answer,
  counted in ``edgewatch_sink_parked_total{sink}``, logged, and the next
  record goes.

Every failure is counted in ``edgewatch_sink_http_failures_total{sink,
status}`` (and in :attr:`HttpDelivery.failures`, which exists without
``--metrics``) and logged at most once a minute. ``http.client`` and
``ssl`` are imported only when a sink of this kind is built.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgewatch import digests
from edgewatch.agent.sinks.base import SinkConfigError, SinkContext
from edgewatch.agent.sinks.spool import DEFAULT_MAX_BYTES, DEFAULT_MEMORY_BYTES, Spool, SpooledSender

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429})
LOG_INTERVAL = 60.0
UNDELIVERABLE_AFTER = 30.0  # seconds of failed posts before /readyz says alerts_undeliverable
ANSWER_KEPT = 200  # bytes of a refusing answer kept in rejected.jsonl


@dataclass(frozen=True)
class HttpOptions:
    """How to reach one HTTP receiver: where, with which headers, how long to wait and to back off."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    token_file: Path | None = None
    timeout: float = 10.0
    retry_min: float = 1.0
    retry_max: float = 60.0
    ca_file: Path | None = None
    tls_insecure: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SinkConfigError(f"{self.url!r} is not an http:// or https:// URL with a host")
        if not 0 < self.timeout <= 600:
            raise SinkConfigError(f"timeout={self.timeout:g}: give seconds between 0 and 600")
        if not 0 < self.retry_min <= self.retry_max:
            raise SinkConfigError(f"retry_min={self.retry_min:g}, retry_max={self.retry_max:g}: give 0 < retry_min "
                                  "<= retry_max (seconds)")
        for name, value in self.headers.items():
            if not name or any(c in name for c in ":\r\n ") or any(c in str(value) for c in "\r\n"):
                raise SinkConfigError(f"header {name!r}: a name without ':', spaces or line breaks, and a value "
                                      "without line breaks")
        if self.token_file is not None:
            read_token(self.token_file)  # refused at start, not at the first alert


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped); SinkConfigError when unreadable or empty."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise SinkConfigError(f"token_file {path}: {exc.strerror or exc}") from None
    if not token or any(c in token for c in "\r\n"):
        raise SinkConfigError(f"token_file {path} must hold one line: the token")
    return token


@dataclass(frozen=True)
class Answer:
    """What one POST came to: ``status`` is the HTTP code as text, or timeout / connection / tls."""

    status: str
    body: bytes = b""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status.isdigit() and 200 <= int(self.status) < 300

    @property
    def retryable(self) -> bool:
        if not self.status.isdigit():
            return True
        code = int(self.status)
        return code in RETRYABLE or code >= 500


class HttpPoster:
    """POSTs JSON to one URL with the configured headers; never raises for what the network does."""

    def __init__(self, options: HttpOptions) -> None:
        import http.client
        import ssl

        self.options = options
        self._http = http.client
        self._ssl = ssl
        parts = urlsplit(options.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._context = None
        if self.https:
            ctx = ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)
            if options.tls_insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._context = ctx
        self._token = read_token(options.token_file) if options.token_file else None

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json", "User-Agent": "edgewatch-agent", **self.options.headers}
        if self.options.token_file is not None:
            try:  # read each time: a rotated token is used at once; a broken file keeps the last good one
                self._token = read_token(self.options.token_file)
            except SinkConfigError as exc:
                log.warning("%s; using the token read before", exc)
            out["Authorization"] = f"Bearer {self._token}"
        return out

    def post(self, body: bytes) -> Answer:
        http = self._http
        if self.https:
            conn = http.HTTPSConnection(self.host, self.port, timeout=self.options.timeout, context=self._context)
        else:
            conn = http.HTTPConnection(self.host, self.port, timeout=self.options.timeout)
        try:
            conn.request("POST", self.target, body=body, headers=self.headers())
            resp = conn.getresponse()
            data = resp.read()
            return Answer(str(resp.status), data, _retry_after(resp.getheader("Retry-After")))
        except TimeoutError:
            return Answer("timeout")
        except self._ssl.SSLError as exc:
            return Answer("tls", str(exc).encode())
        except (OSError, http.HTTPException) as exc:
            return Answer("connection", str(exc).encode())
        finally:
            conn.close()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


class HttpDelivery(SpooledSender):
    """The spool and the sender thread of one HTTP sink; see the module docstring.

    ``idle`` is called by the sender thread whenever the spool is empty and
    the last post succeeded (the Alertmanager sink re-sends open alerts
    there); it returns the answer of what it posted, or None.
    """

    def __init__(self, name: str, poster: HttpPoster, spool_dir: Path, metrics: Any = None,
                 spool_max_bytes: int = DEFAULT_MAX_BYTES, spool_memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 idle: Callable[[], Answer | None] | None = None, drain_timeout: float = 5.0) -> None:
        self.name = name
        self.poster = poster
        self.metrics = metrics
        self.spool = Spool(spool_dir, max_bytes=spool_max_bytes, memory_max_bytes=spool_memory_bytes)
        self.rejected = Path(spool_dir) / "rejected.jsonl"
        self.idle = idle
        self.drain_timeout = drain_timeout
        self.failures: Counter[str] = Counter()  # by status, this run
        self.sent = 0
        self.delivered = 0
        self.parked = 0
        self._failing_since: float | None = None
        self._delay = 0.0  # the last backoff
        self._retry_at = 0.0  # monotonic time of the next try after a failure
        self._logged: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{name}-sender", daemon=True)
        self._thread.start()

    def append(self, record: bytes) -> None:
        self.sent += 1
        self._spooled(record)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)  # a backoff: new alerts do not cut it short
            else:
                self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._turn()
            except Exception as exc:  # a disk error of the spool, a bug: this thread outlives it
                self._count("error", repr(exc))
                self._back_off()

    def _turn(self) -> None:
        self.spool.flush()
        while not self._stop.is_set():
            head = self.spool.pending(limit=1)
            if not head:
                break
            number, record = head[0]
            answer = self.poster.post(record)
            if answer.ok:
                self.spool.ack(number)
                self.delivered += 1
                self._recovered()
                continue
            self._failed(answer)
            if answer.retryable:
                self._back_off(answer.retry_after)
                return
            self._park(record, answer)
            self.spool.ack(number)
        if self.idle is not None and not self._stop.is_set():
            answer = self.idle()
            if answer is not None and not answer.ok:
                self._failed(answer)
                self._back_off(answer.retry_after)
            elif answer is not None:
                self._recovered()

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info("%s sink %s takes deliveries again", self.name, self.poster.options.url)
        self._failing_since = None
        self._delay = 0.0
        self._retry_at = 0.0

    def _failed(self, answer: Answer) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        detail = answer.body[:ANSWER_KEPT].decode("utf-8", "replace")
        self._count(answer.status, detail)

    def _count(self, status: str, detail: str) -> None:
        self.failures[status] += 1
        if self.metrics is not None:
            self.metrics.sink_http_failures.labels(self.name, status).inc()
        now = time.monotonic()
        if now - self._logged.get(status, -LOG_INTERVAL) >= LOG_INTERVAL:
            self._logged[status] = now
            log.error("%s sink %s: delivery failed (%s%s); %d failure(s) this run, %d alert(s) waiting in the "
                      "spool (logged at most once a minute per status)", self.name, self.poster.options.url, status,
                      f": {detail}" if detail else "", sum(self.failures.values()), self.spool.depth)

    def _back_off(self, retry_after: float | None = None) -> None:
        """The next try after ``retry_min`` doubling to ``retry_max`` (80-100 %: senders do not march in step)."""
        o = self.poster.options
        self._delay = min(o.retry_max, max(o.retry_min, self._delay * 2))
        delay = self._delay if retry_after is None else min(o.retry_max, max(self._delay, retry_after))
        self._retry_at = time.monotonic() + delay * random.uniform(0.8, 1.0)

    def _park(self, record: bytes, answer: Answer) -> None:
        self.parked += 1
        if self.metrics is not None:
            self.metrics.sink_parked.labels(self.name).inc()
        line = json.dumps({"status": answer.status, "answer": answer.body[:ANSWER_KEPT].decode("utf-8", "replace"),
                           "time": time.time(), "record": record.decode("utf-8", "replace")})
        try:
            with self.rejected.open("a") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.error("%s sink: cannot keep a refused alert in %s (%s); it is lost", self.name, self.rejected,
                      exc.strerror or exc)
        log.error("%s sink %s refused an alert for good (HTTP %s: %s); kept in %s, not retried", self.name,
                  self.poster.options.url, answer.status, answer.body[:ANSWER_KEPT].decode("utf-8", "replace"),
                  self.rejected)

    def not_ready_reason(self) -> str | None:
        """``spool_unwritable`` (alerts wait in memory), ``alerts_undeliverable`` (posts failing for a while)."""
        if not self.spool.writable:
            return "spool_unwritable"
        since = self._failing_since
        if since is not None and self.spool.depth and time.monotonic() - since >= UNDELIVERABLE_AFTER:
            return "alerts_undeliverable"
        return None

    def wait_delivered(self, timeout: float) -> bool:
        """Block until the spool is empty or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.spool.depth and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.spool.depth == 0

    def delivery(self) -> dict[str, int]:
        """This run's counts, as the MQTT sink gives them, plus ``parked``."""
        return {"sent": self.sent, "delivered": self.delivered, "dropped": self.spool.dropped,
                "waiting": self.spool.depth, "parked": self.parked}

    def close(self) -> None:
        """Deliver what the receiver takes within ``drain_timeout``; the rest stays in the spool for the next start."""
        if self._stop.is_set():
            return
        self.spool.sync()  # a group left open (the loop ended by an exception): its records are delivered too
        if self.spool.depth and self._failing_since is None:
            self._wake.set()
            self.wait_delivered(self.drain_timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(self.poster.options.timeout + 2.0)
        self.spool.close()
        if self.spool.depth:
            log.warning("%d alert(s) left in the %s spool %s; they are sent at the next start", self.spool.depth,
                        self.name, self.spool.dir)


def spool_dir_for(root: Path, kind: str, url: str) -> Path:
    """One spool per sink: ``SPOOL_DIR/<kind>-<host>_<port>-<hash of the URL>``, stable across restarts."""
    parts = urlsplit(url)
    tag = digests.sha1(url.encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{parts.hostname}_{parts.port or ''}")
    return Path(root) / f"{kind}-{safe}-{tag}"


def as_float(settings: dict[str, Any], key: str, default: float) -> float:
    """A query value (text) or a table value (number) as seconds; SinkConfigError naming the key."""
    value = settings.pop(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SinkConfigError(f"{key}={value!r}: give a number of seconds") from None


def as_bool(settings: dict[str, Any], key: str) -> bool:
    value = settings.pop(key, False)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", ""):
        return True
    if str(value).lower() in ("0", "false", "no"):
        return False
    raise SinkConfigError(f"{key}={value!r}: give true or false")


def headers_of(settings: dict[str, Any]) -> dict[str, str]:
    """``header=Name:Value`` (repeatable, query or list) and a ``headers`` table, merged; the table wins."""
    out: dict[str, str] = {}
    given = settings.pop("header", [])
    for item in [given] if isinstance(given, str) else list(given):
        name, sep, value = str(item).partition(":")
        if not sep:
            raise SinkConfigError(f"header={item!r}: write it as Name:Value")
        out[name.strip()] = value.strip()
    table = settings.pop("headers", {})
    if not isinstance(table, Mapping):
        raise SinkConfigError(f"headers = {table!r}: give a table, e.g. headers = {{ X-Plant = \"north\" }}")
    out.update({str(k): str(v) for k, v in table.items()})
    return out


def http_options(url: str, settings: dict[str, Any]) -> HttpOptions:
    """Take the HTTP keys out of ``settings`` (what is left is the sink's own or unknown)."""
    if "token" in settings:
        raise SinkConfigError("a token on the command line or in a URL ends up in process lists and logs: put it "
                              "in a file readable by the agent only and give token_file=PATH")
    token = settings.pop("token_file", None)
    ca = settings.pop("ca_file", None)
    headers = headers_of(settings)
    if token and any(k.lower() == "authorization" for k in headers):
        raise SinkConfigError("give either an Authorization header or token_file, not both")
    return HttpOptions(url=url, headers=headers, token_file=Path(token) if token else None,
                       timeout=as_float(settings, "timeout", 10.0), retry_min=as_float(settings, "retry_min", 1.0),
                       retry_max=as_float(settings, "retry_max", 60.0), ca_file=Path(ca) if ca else None,
                       tls_insecure=as_bool(settings, "tls_insecure"))


HTTP_KEYS = ("header", "headers", "token_file", "timeout", "retry_min", "retry_max", "ca_file", "tls_insecure")


def refuse_unknown(url: str, settings: dict[str, Any], known: tuple[str, ...]) -> None:
    if settings:
        raise SinkConfigError(f"sink {url!r}: unknown setting(s) {sorted(settings)}; known: {sorted(known)}")


class SpooledHttpSink:
    """What every HTTP sink shares: its :class:`HttpDelivery` (spool and sender thread) and the sink
    protocol's delivery side, answered by it. A subclass says what it posts (``send``) and, if it re-posts
    while the spool is idle, ``idle``."""

    def __init__(self, name: str, poster: HttpPoster, context: SinkContext,
                 idle: Callable[[], Answer | None] | None = None) -> None:
        self.sender = HttpDelivery(name, poster, spool_dir_for(context.spool_dir, name, poster.options.url),
                                   metrics=context.metrics, spool_max_bytes=context.spool_max_bytes,
                                   spool_memory_bytes=context.spool_memory_bytes, idle=idle)
        self.spool = self.sender.spool

    def not_ready_reason(self) -> str | None:
        return self.sender.not_ready_reason()

    def delivery(self) -> dict[str, int]:
        return self.sender.delivery()

    def wait_delivered(self, timeout: float) -> bool:
        return self.sender.wait_delivered(timeout)

    def begin_group(self) -> None:
        self.sender.begin_group()

    def end_group(self) -> None:
        self.sender.end_group()

    def close(self) -> None:
        self.sender.close()
