"""The live page's data and its HTTP server.

:class:`LiveView` is an agent observer. On the agent's hot path it only
copies each batch into fixed-size NumPy rings per stream (one lock, no
JSON, no I/O), so a slow or absent browser never slows scoring down.
:class:`UiServer` runs a ``ThreadingHTTPServer`` in a background thread:
it serves the static page and, per connected browser, one server-sent
event stream that sends only the picked stream's new points, at most
``fps`` frames a second, so 100 streams at 20 Hz do not flood a browser.

Standard library and NumPy only: this runs inside the torch-free agent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgewatch.agent.watch.feature_ranges import feature_ranges
from edgewatch.agent.ops.address import parse_address
from edgewatch.errors import EdgewatchError

log = logging.getLogger("edgewatch.agent.ui")

STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@dataclass
class UiOptions:
    """How much the page keeps and how often it is fed.

    ``history`` and ``windows`` are per stream (points kept for a browser
    that connects late: 2400 points is two minutes at 20 Hz); ``fps`` caps
    the frames a browser receives, each frame carrying every point since
    the previous one.
    """

    history: int = 2400
    windows: int = 1200
    episodes: int = 32
    max_streams: int = 64  # streams traced for the page (~150 KiB each); later ones are listed as not shown
    max_clients: int = 16  # open event streams (one thread each); more are refused with 503 and counted
    socket_timeout: float = 10.0  # a connection that sends no request, or a browser that stops reading, is dropped
    fps: float = 10.0
    span_seconds: float = 60.0
    streams_every: float = 1.0
    keepalive: float = 10.0


class Ring:
    """The last ``capacity`` rows of a fixed-width float table, and how many were ever added.

    Readers ask for the rows after a cursor (a count of rows ever added);
    rows that were overwritten before they were read are skipped, which is
    what a live page wants when it falls behind.
    """

    __slots__ = ("data", "capacity", "total")

    def __init__(self, capacity: int, width: int) -> None:
        self.data = np.zeros((capacity, width), dtype=np.float64)
        self.capacity = capacity
        self.total = 0

    def extend(self, rows: np.ndarray) -> None:
        n = len(rows)
        if n == 0:
            return
        cap = self.capacity
        if n >= cap:
            rows = rows[-cap:]
            self.total += n - cap
            n = cap
        lo = self.total % cap
        first = min(n, cap - lo)
        self.data[lo:lo + first] = rows[:first]
        if first < n:
            self.data[: n - first] = rows[first:]
        self.total += n

    def since(self, cursor: int) -> np.ndarray:
        """Rows added after ``cursor`` (at most ``capacity``), oldest first, as a copy."""
        start = max(cursor, self.total - self.capacity, 0)
        n = self.total - start
        if n <= 0:
            return self.data[:0].copy()
        lo = start % self.capacity
        if lo + n <= self.capacity:
            return self.data[lo:lo + n].copy()
        return np.concatenate([self.data[lo:], self.data[: n - (self.capacity - lo)]])


class StreamTrace:
    """What the page shows of one stream: signal rows, scored windows, alert episodes."""

    __slots__ = ("rows", "windows", "episodes", "episode_version", "open_episode", "last_score", "last_anomaly",
                 "last_over")

    def __init__(self, options: UiOptions, n_features: int) -> None:
        self.rows = Ring(options.history, 2 + n_features)  # ts, seq, values...
        self.windows = Ring(options.windows, 5)  # ts, seq, score, over, anomaly_score
        self.episodes: list[Episode] = []
        self.episode_version = 0
        self.open_episode = False
        self.last_score = float("nan")
        self.last_anomaly = float("nan")
        self.last_over = False


@dataclass
class Episode:
    """An alert episode as the page lists it; ``features`` are the top features of its start event."""

    start: float | None
    end: float | None
    peak: float | None
    anomaly: float | None
    features: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "peak": self.peak, "anomaly": self.anomaly,
                "features": self.features}


class LiveView:
    """Keeps bounded recent data per stream for the live page (an agent subscriber).

    Thread-safe: the agent loop writes, HTTP threads read, both under one
    short lock.
    """

    def __init__(self, features: list[str], threshold: float, options: UiOptions | None = None,
                 title: str = "edgewatch", ranges: list[tuple[float, float] | None] | None = None) -> None:
        self.options = options or UiOptions()
        self.features = list(features)
        self.threshold = float(threshold)
        self.title = title
        self.ranges = list(ranges) if ranges is not None else [None] * len(self.features)
        self.model_info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._traces: dict[str, StreamTrace] = {}
        self._order: list[str] = []
        self.untraced = 0  # streams not shown because max_streams were traced already
        self.clients = 0  # event streams open now
        self.refused_clients = 0
        self.metrics: Any = None  # the agent's AgentMetrics (LiveView.of)

    @classmethod
    def of(cls, agent: Any, options: UiOptions | None = None) -> LiveView:
        """The page of ``agent``'s features, threshold and model; feed it with
        ``agent.subscribe(view.on_event, view.on_batch, view.on_forget)``."""
        view = cls(agent.features, agent.threshold, options, title=f"edgewatch · {agent.options.agent_id}",
                   ranges=feature_ranges(agent.card))
        view.model_info = {"family": agent.card.family, "window": agent.window, "stride": agent.stride,
                           "sha256": agent.model.sha256[:12], "sensitivity": agent.runtime.scale.sensitivity}
        view.metrics = agent.metrics
        return view

    # -- the agent side (hot path) -------------------------------------------------

    def _trace(self, stream: str) -> StreamTrace | None:
        """The stream's trace; None past ``max_streams`` (memory stays bounded whatever the stream ids)."""
        tr = self._traces.get(stream)
        if tr is None:
            if len(self._traces) >= self.options.max_streams:
                self.untraced += 1
                return None
            tr = StreamTrace(self.options, len(self.features))
            self._traces[stream] = tr
            self._order.append(stream)
        return tr

    def on_batch(self, view: Any) -> None:
        """Copy one batch into the rings; cheap and bounded whatever the batch size."""
        streams = view.streams
        n = len(streams)
        rows = None
        if n:
            rows = np.empty((n, 2 + view.values.shape[1]), dtype=np.float64)
            rows[:, 0] = view.ts
            rows[:, 1] = view.seq
            rows[:, 2:] = view.values
        scored = view.scored
        with self._lock:
            self.threshold = float(view.threshold)
            if n:
                first = streams[0]
                if streams.count(first) == n:
                    tr = self._trace(first)
                    if tr is not None:
                        tr.rows.extend(rows)
                else:
                    groups: dict[str, list[int]] = {}
                    for i, s in enumerate(streams):
                        groups.setdefault(s, []).append(i)
                    for s, idx in groups.items():
                        tr = self._trace(s)
                        if tr is not None:
                            tr.rows.extend(rows[idx])
            if scored:
                w = np.array([(sw.ts, sw.seq, sw.score, 1.0 if sw.over else 0.0, sw.anomaly) for sw in scored])
                if all(sw.stream == scored[0].stream for sw in scored):
                    tr = self._trace(scored[0].stream)
                    if tr is not None:
                        tr.windows.extend(w)
                        last = scored[-1]
                        tr.last_score, tr.last_anomaly, tr.last_over = last.score, last.anomaly, last.over
                else:
                    for i, sw in enumerate(scored):
                        tr = self._trace(sw.stream)
                        if tr is not None:
                            tr.windows.extend(w[i:i + 1])
                            tr.last_score, tr.last_anomaly, tr.last_over = sw.score, sw.anomaly, sw.over

    def on_event(self, event: dict[str, Any]) -> None:
        """Mark alert episodes (start opens a band, end closes it) with the features that started them."""
        kind = event.get("event")
        stream = event.get("stream")
        if kind not in ("start", "end") or not isinstance(stream, str):
            return
        ep = event.get("episode") or {}
        peak, anomaly = ep.get("peak_score"), event.get("anomaly_score")
        with self._lock:
            tr = self._trace(stream)
            if tr is None:
                return
            if kind == "start":
                features = [{"feature": f.get("feature"), "share": f.get("share")}
                            for f in event.get("top_features") or []]
                tr.episodes.append(Episode(ep.get("start_ts", event.get("ts")), None, peak, anomaly, features))
                del tr.episodes[: -self.options.episodes]
                tr.open_episode = True
            else:
                start = ep.get("start_ts")
                for rec in reversed(tr.episodes):
                    if rec.end is None and (start is None or rec.start == start):
                        rec.end, rec.peak, rec.anomaly = ep.get("end_ts", event.get("ts")), peak, anomaly
                        break
                else:  # the start fell out of the kept history: show the end anyway
                    tr.episodes.append(Episode(start, ep.get("end_ts", event.get("ts")), peak, anomaly, []))
                tr.open_episode = any(rec.end is None for rec in tr.episodes)
            tr.episode_version += 1

    def on_forget(self, streams: list[str]) -> None:
        """Drop the traces of streams the agent dropped (``--stream-ttl``): their places go to streams
        that send now, so a long run whose stream ids come and go never stops showing new ones."""
        with self._lock:
            for stream in streams:
                if self._traces.pop(stream, None) is not None:
                    self._order.remove(stream)

    # -- the HTTP side -------------------------------------------------------------

    def streams(self) -> list[dict[str, Any]]:
        """Name, counts and alert state of every stream, for the picker."""
        with self._lock:
            out = []
            for name in self._order:
                tr = self._traces[name]
                score, anomaly = tr.last_score, tr.last_anomaly
                out.append({"name": name, "messages": tr.rows.total, "windows": tr.windows.total,
                            "alert": tr.open_episode, "over": tr.last_over,
                            "score": None if score != score else round(score, 6),
                            "anomaly": None if anomaly != anomaly else round(anomaly, 4)})
            return out

    def first_stream(self) -> str | None:
        with self._lock:
            return self._order[0] if self._order else None

    def frame(self, stream: str, cursor: tuple[int, int, int]) -> tuple[dict[str, Any] | None, tuple[int, int, int]]:
        """New data of ``stream`` since ``cursor`` as a JSON-ready dict (None when nothing is new)."""
        with self._lock:
            tr = self._traces.get(stream)
            if tr is None:
                return None, cursor
            rows = tr.rows.since(cursor[0])
            wins = tr.windows.since(cursor[1])
            new_cursor = (tr.rows.total, tr.windows.total, tr.episode_version)
            episodes = [e.to_json() for e in tr.episodes] if tr.episode_version != cursor[2] else None
            threshold = self.threshold
        if not len(rows) and not len(wins) and episodes is None:
            return None, new_cursor
        out: dict[str, Any] = {
            "stream": stream,
            "threshold": threshold,
            "t": np.round(rows[:, 0], 3).tolist(),
            "q": rows[:, 1].astype(np.int64).tolist(),
            "v": np.round(rows[:, 2:].T, 5).tolist(),
            "w": {"t": np.round(wins[:, 0], 3).tolist(), "q": wins[:, 1].astype(np.int64).tolist(),
                  "s": [float(f"{s:.6g}") for s in wins[:, 2]], "o": wins[:, 3].astype(np.int8).tolist(),
                  "a": [None if a != a else float(f"{a:.5g}") for a in wins[:, 4]]},
        }
        if episodes is not None:
            out["episodes"] = episodes
        return out, new_cursor

    def open_client(self) -> bool:
        """Take one of the ``max_clients`` event-stream places; False (and counted) when none is free."""
        with self._lock:
            if self.clients >= self.options.max_clients:
                self.refused_clients += 1
                if self.metrics is not None:
                    self.metrics.ui_refused.inc()
                if self.refused_clients == 1 or self.refused_clients % 100 == 0:
                    log.warning("live page: refused an event stream, %d open already (max %d; %d refused so far)",
                                self.clients, self.options.max_clients, self.refused_clients)
                return False
            self.clients += 1
            if self.metrics is not None:
                self.metrics.ui_clients.set(self.clients)
            return True

    def close_client(self) -> None:
        with self._lock:
            self.clients -= 1
            if self.metrics is not None:
                self.metrics.ui_clients.set(self.clients)

    def meta(self) -> dict[str, Any]:
        with self._lock:
            threshold = self.threshold
        return {"title": self.title, "features": self.features, "ranges": self.ranges, "threshold": threshold,
                "span": self.options.span_seconds, "fps": self.options.fps, "model": self.model_info}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    @property
    def timeout(self) -> float:  # type: ignore[override] # read by StreamRequestHandler.setup
        """Idle connections (no request; an event stream nobody reads) must not hold a thread forever."""
        return self.server.view.options.socket_timeout

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - name from the base class
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if path in ("/", "/index.html"):
                self._static("index.html")
            elif path.startswith("/static/") and path[len("/static/"):] in STATIC_TYPES:
                self._static(path[len("/static/"):])
            elif path == "/api/meta":
                self._json(self.server.view.meta())
            elif path == "/api/streams":
                self._json({"streams": self.server.view.streams()})
            elif path == "/api/frame":
                stream = query.get("stream") or self.server.view.first_stream() or ""
                frame, _ = self.server.view.frame(stream, (0, 0, -1))
                self._json(frame or {"stream": stream})
            elif path == "/events":
                self._events(query.get("stream") or None)
            elif path == "/favicon.ico":
                self.send_response(HTTPStatus.NO_CONTENT)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(HTTPStatus.NOT_FOUND, "no such page; try /")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def _body(self, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _static(self, name: str) -> None:
        self._body(self.server.static[name], STATIC_TYPES[name])

    def _json(self, data: Any) -> None:
        self._body(json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), "application/json")

    def _send_event(self, kind: str, data: Any) -> None:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        self.wfile.write(f"event: {kind}\ndata: {text}\n\n".encode())
        self.wfile.flush()

    def _events(self, stream: str | None) -> None:
        """One browser's event stream, if fewer than ``max_clients`` are open (else 503, counted)."""
        view = self.server.view
        if not view.open_client():
            body = (f"too many live-page clients (at most {view.options.max_clients}); try again later\n").encode()
            self.send_response(HTTPStatus.SERVICE_UNAVAILABLE)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Retry-After", "10")
            self.end_headers()
            self.wfile.write(body)
            return
        try:
            self._stream_events(stream)
        finally:
            view.close_client()

    def _stream_events(self, stream: str | None) -> None:
        """Meta, then frames of the picked stream, stream lists now and then."""
        view = self.server.view
        opts = view.options
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        stop = self.server.stopping
        period = 1.0 / max(opts.fps, 0.1)
        self.wfile.write(b"retry: 1000\n\n")
        self._send_event("meta", view.meta())
        while stream is None and not stop.is_set():
            stream = view.first_stream()
            if stream is None:
                self._send_event("streams", {"streams": []})
                stop.wait(0.5)
        if stream is None:
            return
        self._send_event("select", {"stream": stream})
        cursor = (0, 0, -1)
        last_streams = last_sent = 0.0
        while not stop.is_set():
            t0 = time.monotonic()
            if t0 - last_streams >= opts.streams_every:
                self._send_event("streams", {"streams": view.streams()})
                last_streams = last_sent = t0
            frame, cursor = view.frame(stream, cursor)
            if frame is not None:
                self._send_event("frame", frame)
                last_sent = t0
            elif t0 - last_sent >= opts.keepalive:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                last_sent = t0
            stop.wait(max(0.0, period - (time.monotonic() - t0)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], view: LiveView) -> None:
        self.view = view
        self.stopping = threading.Event()
        files = resources.files("edgewatch.agent.ui") / "static"
        self.static = {name: (files / name).read_bytes() for name in STATIC_TYPES}
        super().__init__(address, _Handler)


class UiServer:
    """The page server in a background thread; ``stop()`` ends it and every open event stream."""

    def __init__(self, view: LiveView, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.view = view
        try:
            self._server = _Server((host, port), view)
        except OSError as exc:
            raise EdgewatchError(f"cannot serve the live page on {host}:{port} ({exc.strerror}); "
                                 "choose another --ui ADDR:PORT (port 0 picks a free one)") from exc
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ui-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> UiServer:
        self._thread.start()
        log.info("live page on %s", self.url)
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> UiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ui(view: LiveView, address: str) -> UiServer:
    """Serve ``view``'s page on ``address`` (``HOST:PORT``); the view gets its data from ``agent.subscribe``."""
    host, port = parse_address(address, "--ui")
    return UiServer(view, host, port).start()
