"""``--metrics``: Prometheus ``/metrics`` and the health endpoints ``/livez``, ``/readyz`` (``/healthz``).

All standard library plus prometheus-client: an edge box needs nothing else.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edgewatch.agent.ops.address import parse_address
from edgewatch.agent.ops.metrics import DEFAULT_METRICS_MAX_STREAMS
from edgewatch.errors import EdgewatchError

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from edgewatch.agent.engine import Agent

log = logging.getLogger(__name__)


class OpsError(EdgewatchError):
    """The metrics address cannot be served (taken, not ours): give --metrics HOST:PORT with a free port."""


DEFAULT_READY_GRACE = 30.0
DEFAULT_READY_MAX_SILENCE = 60.0
STUCK_AFTER = 10.0  # seconds without a turn of the loop
SINK_REASONS = ("sink_unwritable", "spool_unwritable", "alerts_undeliverable")  # most serious first


def health(agent: Agent, ready_grace: float = DEFAULT_READY_GRACE,
           ready_max_silence: float = DEFAULT_READY_MAX_SILENCE) -> dict[str, Any]:
    """What the health endpoints answer: live (the loop turns) and ready (data comes in, alerts go out).

    ``status`` is the liveness (``ok``, ``stuck``, ``stopping``). ``ready``
    needs a live agent whose alerts can be kept and sent, that has received
    a message and, unless ``ready_max_silence`` is 0, one within that many
    seconds; ``ready_reason`` says why not, the first that applies of:
    ``stuck``, ``stopping``, ``sink_unwritable`` (a JSONL sink's disk refuses
    writes, or standard output's reader takes none: their events are dropped), ``spool_unwritable`` (the spool's disk refuses
    writes: alerts wait in memory, and past its bound are dropped),
    ``alerts_undeliverable`` (no broker for a while: alerts wait in the
    spool), ``starting`` (no message yet, within ``ready_grace`` of the
    start), ``no_data`` (none yet, after it), ``silent`` (none for
    ``ready_max_silence``), ``refused`` (messages arrive, but for
    ``ready_grace`` seconds every one was bad input: nothing reaches the
    model; ``ready_detail`` names the reasons counted so far, e.g. per-sensor
    topics read without a topic template are all ``wrong_arity``).
    """
    now = time.time()
    spools = [s.spool for s in agent.sinks if hasattr(s, "spool")]
    sink_reasons = [r for r in (s.not_ready_reason() for s in agent.sinks if hasattr(s, "not_ready_reason")) if r]
    last = agent.last_message_at
    loop_age = time.monotonic() - agent.heartbeat
    status = "stopping" if agent.stopping else ("ok" if loop_age < STUCK_AFTER else "stuck")
    uptime = now - agent.started_at
    if status != "ok":
        reason = status
    elif sink_reasons:
        reason = min(sink_reasons, key=SINK_REASONS.index)
    elif last is None:
        reason = "starting" if uptime < ready_grace else "no_data"
    elif ready_max_silence and now - last > ready_max_silence:
        reason = "silent"
    elif now - (agent.last_row_at or agent.started_at) > ready_grace:
        reason = "refused"
    else:
        reason = "ok"
    detail = None
    if reason == "refused":
        worst = sorted(agent.summary.bad.items(), key=lambda kv: -kv[1])[:3]
        since = "since the start" if agent.last_row_at is None else f"for {now - agent.last_row_at:.0f} s"
        detail = (f"messages arrive but every one was refused {since}; bad input so far: "
                  + ", ".join(f"{k} {n}" for k, n in worst) + " (see docs/sources.md for the forms each source takes)")
    return {
        "status": status,
        "live": status == "ok",
        "ready": reason == "ok",
        "ready_reason": reason,
        "ready_detail": detail,
        "agent": agent.options.agent_id,
        "model_sha256": agent.model.sha256,
        "model_family": agent.card.family,
        "uptime_s": round(uptime, 3),
        "last_message_age_s": None if last is None else round(now - last, 3),
        "loop_age_s": round(loop_age, 3),
        "messages": agent.summary.messages,
        "windows": agent.summary.windows,
        "streams": len(agent.streams),
        "spool_depth": sum(sp.depth for sp in spools),
        "spool_in_memory": sum(sp.in_memory for sp in spools),
        "spool_dropped": sum(sp.dropped for sp in spools),
        "spool_error": next((sp.write_error for sp in spools if sp.write_error), None),
    }


class OpsServer:
    """``/metrics`` (Prometheus text) and the health endpoints (JSON; 200 when the answer is yes, else 503).

    ``/metrics`` holds the agent-wide metrics and the per-stream series of
    at most ``max_streams`` streams (``--metrics-max-streams``; the others
    as ``stream="_other"``).

    ``/livez`` and ``/healthz``: is the loop turning (restart the agent when
    not). ``/readyz`` and ``/healthz?ready``: is it scoring data (see
    :func:`health`; alert on this, do not restart on it: a quiet sensor is
    not a broken agent).
    """

    def __init__(self, agent: Agent, addr: str, ready_grace: float = DEFAULT_READY_GRACE,
                 ready_max_silence: float = DEFAULT_READY_MAX_SILENCE,
                 max_streams: int = DEFAULT_METRICS_MAX_STREAMS) -> None:
        self.agent = agent
        host, port = parse_address(addr, "--metrics")
        from http.server import ThreadingHTTPServer  # here, not at the top: see AgentMetrics

        handler = _handler_for(agent, ready_grace, ready_max_silence)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise OpsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose another --metrics port"
                           ) from exc
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        agent.metrics.watch_streams(agent, max_streams)  # per-stream series, read when scraped
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ops-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /livez and /readyz", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(agent: Agent, ready_grace: float, ready_max_silence: float) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        timeout = 10.0  # a connection that sends no request is dropped: scrapers do not hold threads forever

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path, _, query = self.path.partition("?")
            if path == "/metrics":
                body, ctype, code = generate_latest(agent.metrics.registry), CONTENT_TYPE_LATEST, 200
            elif path in ("/healthz", "/health", "/livez", "/readyz"):
                h = health(agent, ready_grace, ready_max_silence)
                ready = path == "/readyz" or "ready" in query.split("&")
                body, ctype = json.dumps(h).encode(), "application/json"
                code = 200 if h["ready" if ready else "live"] else 503
            else:
                body, ctype, code = b"not found: try /metrics, /livez, /readyz or /healthz\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
            pass

    return Handler
