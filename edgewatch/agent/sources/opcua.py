"""``opcua://``: measurements from an OPC UA server's data-change subscription (``asyncua``, extra ``[opcua]``).

``opcua://[user:pass@]HOST:PORT/BROWSE/PATH?interval=SECONDS``: the object at
the browse path (``Objects/2:Pump1``: ``Objects``, then ``Pump1`` in namespace
2) holds variables whose browse names are the model's features, or the
names ``&columns=A,B,...`` gives for them in the model's order (a model
fitted on a historian's columns; :mod:`.feature_map`). Other layouts name
each feature's node in a TOML ``[[source]]`` table::

    [[source]]
    url = "opcua://10.0.0.7:4840"
    stream = "pump-1"
    interval = 0.5
    nodes = { cpu = "ns=2;s=Pump1.Cpu", memory = "ns=2;i=1002", traffic = "ns=2;s=T", fan = "ns=2;s=F" }
    security = "Basic256Sha256,SignAndEncrypt"   # or Basic256Sha256,Sign; default None
    certificate = "/etc/edgewatch/opcua-cert.der"
    private-key = "/etc/edgewatch/opcua-key.pem"
    server-certificate = "/etc/edgewatch/server-cert.der"   # optional
    username = "edge"   # and password, or user:pass@ in the URL
    application-uri = "urn:edgewatch:agent"   # as in the client certificate (the default)

One subscription with the given publishing interval; each notification
set the server publishes is one row of the object (a stream per object),
made by the row assembler of every source (:mod:`.rows`): a variable that
did not change keeps its last value, for as long as the subscription
lives unless ``max_age`` (seconds or ``10s``; a data-change subscription
only reports changes, so there is no default limit) says otherwise; a
NaN value is missing, held the same way. A value whose status is not
Good is ``bad_status`` (by status name in ``bad_status_by_name``) and is
not held; text that is no number ``not_number``, infinity ``non_finite``.

Reconnect: a lost connection (server restart, network, a server that
stops answering its keepalive) is dropped, and a new session and
subscription are made with jittered backoff, forever; the agent resets
the object's windows, because the values on both sides of a gap are not
one series.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from edgewatch.agent.sources.base import (Backoff, Item, Kind, Source, SourceConfigError, SourceContext,
                                          SourceSpec, row_assembler)
from edgewatch.agent.sources.feature_map import columns_example, feature_table, parse_columns
from edgewatch.agent.sources.feature_names import FeatureNames
from edgewatch.agent.sources.parsing import BadReason, Measurement
from edgewatch.agent.sources.registry import register
from edgewatch.agent.sources.rows import CLOCK_WARN_AFTER, MISSING, RowAssembler, cell_value
from edgewatch.errors import MissingExtra

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("edgewatch.agent.sources")

SETTINGS = frozenset({"interval", "nodes", "columns", "stream", "security", "certificate", "private_key",
                      "server_certificate", "username", "password", "timeout", "application_uri", "max_age"})
APPLICATION_URI = "urn:edgewatch:agent"  # what the client certificate's subject alternative name should carry


def require_asyncua():  # noqa: ANN201 - the asyncua module
    try:
        import asyncua
    except ImportError as exc:
        raise MissingExtra("asyncua", extra="opcua") from exc
    return asyncua


@dataclass(frozen=True)
class OpcUaSession:
    """How a source talks to its server: sampling interval, timeout, login, security, application URI."""

    interval: float = 1.0
    timeout: float = 4.0
    username: str | None = None
    password: str | None = None
    security: str | None = None  # "Basic256Sha256,Sign[AndEncrypt],CERT,KEY[,SERVER_CERT]"
    application_uri: str = APPLICATION_URI


class OpcUaSource(Source):
    """One OPC UA object (its feature variables) as one stream; see the module docstring."""

    def __init__(self, name: str, endpoint: str, features: list[str], browse_path: list[str] | None = None,
                 nodes: dict[str, str] | None = None, stream: str | None = None,
                 session: OpcUaSession | None = None, backoff: Backoff | None = None,
                 rows: RowAssembler | None = None, columns: list[str] | None = None) -> None:
        super().__init__()
        self.columns = columns  # the object's browse names for the features, in the model's order
        s = session or OpcUaSession()
        self.application_uri = s.application_uri
        self.name = name
        self.endpoint = endpoint
        self.features = list(features)
        self.browse_path = browse_path
        self.nodes = nodes
        self.interval = s.interval
        self.stream = stream or name
        self.username = s.username
        self.password = s.password
        self.security = s.security
        self.timeout = s.timeout
        self.backoff = backoff or Backoff(base=0.2, cap=10.0)
        self.connects = 0  # sessions with a working subscription
        self.measurements = 0
        self.per_session: list[int] = []  # measurements of each session, in order
        self.bad_status_by_name: dict[str, int] = {}
        self.last_error: str | None = None
        self.channel_security = ""  # the last session's policy and mode, e.g. "Basic256Sha256,SignAndEncrypt"
        self.rows = rows or RowAssembler(self.features, max_age=math.inf, source=self.name)
        self.rows.by_exception = True  # a subscription notifies changes only
        self._pending: dict[int, tuple[Any, float | None, str | None]] = {}
        self._flush_scheduled = False
        self._handles: dict[Any, int] = {}  # node -> feature index
        self._lost: asyncio.Event | None = None

    def run(self) -> None:
        import asyncio  # here, not at the top: the agent only pays for it with an OPC UA source

        require_asyncua()
        if not logging.getLogger("edgewatch").isEnabledFor(logging.DEBUG):
            # asyncua logs every lost connection with a traceback; this source says it once, plainly
            logging.getLogger("asyncua").setLevel(logging.CRITICAL)
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import asyncio

        while not self.stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, timeout, bad node, security: say why, retry
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if reason != self.last_error:
                    log.warning("OPC UA %s: %s; retrying with backoff", self.name, reason)
                self.last_error = reason
            if self.stopping:
                return
            await self._sleep(self.backoff.next_delay())

    async def _sleep(self, seconds: float) -> None:
        import asyncio

        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def new_client(self, name: str, timeout: float, **options: Any) -> Any:  # noqa: ANN401 - asyncua's Client
        """An asyncua client of this source's endpoint, identity and security, not yet connected: the agent's
        session and ``edgewatch agent tags`` log in alike, so a browse that works is a session that works."""
        from asyncua import Client

        client = Client(self.endpoint, timeout=timeout, **options)
        client.name = client.description = name
        client.application_uri = self.application_uri
        if self.username:
            client.set_user(self.username)
            if self.password:
                client.set_password(self.password)
        if self.security:
            await client.set_security_string(self.security)
        return client

    async def _session(self) -> None:
        import asyncio

        from asyncua import ua

        client = await self.new_client("edgewatch agent", self.timeout,
                                       watchdog_intervall=max(0.5, min(2.0, self.interval)))
        self._lost = lost = asyncio.Event()

        async def on_lost(_exc: Exception) -> None:
            lost.set()
        client.connection_lost_callback = on_lost
        await client.connect()
        policy = client.security_policy
        self.channel_security = (f"{type(policy).__name__.removeprefix('SecurityPolicy').strip('_') or 'None'},"
                                 f"{getattr(getattr(policy, 'Mode', None), 'name', 'None').strip('_')}")
        try:
            nodes = await self._resolve(client)
            self._handles = {node.nodeid: j for j, node in nodes}
            sub = await client.create_subscription(self.interval * 1000.0, self)
            handles = await sub.subscribe_data_change([node for _, node in nodes])
            refused = [(self.features[j], node.nodeid.to_string(), h.name)
                       for (j, node), h in zip(nodes, handles) if isinstance(h, ua.StatusCode)]
            if refused:  # a node id that names nothing would otherwise leave the rows missing_feature, unsaid
                raise SourceConfigError(
                    "the server refused to watch " + "; ".join(f"{f!r} at {nid} ({why})" for f, nid, why in refused)
                    + ": check each node id in the nodes table (the browse form, opcua://HOST:PORT/Objects/2:NAME, "
                      "lists an object's variables with their node ids when they do not match)")
            if self.connects:
                self._put(Item(Kind.RESET, self.name, None, time.time()))
            self.rows.reset(self.stream)  # a new session: a new series, its values and times its own
            self.connects += 1
            self.per_session.append(0)
            self.backoff.reset()
            self.last_error = None
            log.info("OPC UA %s: subscribed to %d variables every %gs (session %d)", self.name, len(nodes),
                     self.interval, self.connects)
            while not self.stopping and not lost.is_set():
                await asyncio.sleep(0.05)
            if lost.is_set() and not self.stopping:
                log.warning("OPC UA %s: connection lost; reconnecting and subscribing again", self.name)
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), timeout=2.0)
            except Exception:  # the server is gone: nothing to say goodbye to
                pass

    async def _resolve(self, client: Any) -> list[tuple[int, Any]]:
        if self.nodes is not None:
            return [(self.features.index(f), client.get_node(nid)) for f, nid in self.nodes.items()]
        obj = await client.nodes.root.get_child(self.browse_path)
        children = await obj.get_children()
        seen = [(await child.read_browse_name()).Name for child in children]
        if self.columns is not None:  # the user's names, exactly: no rule between them
            found = {j: children[seen.index(c)] for j, c in enumerate(self.columns) if c in seen}
            twice: dict[str, list[str]] = {}
        else:
            # an exact name wins; two other spellings of one feature are never a guess (browse order)
            picked, contested = FeatureNames(self.features, self.name).pick(seen)
            found = {j: children[i] for j, i in picked.items()}
            twice = {self.features[j]: sorted(seen[i] for i in at) for j, at in contested.items()}
        missing = [f for j, f in enumerate(self.features) if j not in found]
        if missing:
            which = f"; {twice} each match more than one variable" if twice else ""
            named = [self.columns[self.features.index(f)] for f in missing] if self.columns else missing
            ids = [f"{name} = {children[i].nodeid.to_string()}" for i, name in enumerate(seen)][:50]
            known = {self.features[j]: (self.columns[j] if self.columns else seen[children.index(node)])
                     for j, node in found.items()}
            raise SourceConfigError(
                f"the object at {'/'.join(self.browse_path or [])} has no variable(s) named {named}"
                + (f" (for the features {missing})" if self.columns else "") + f"{which}; its variables: "
                f"{', '.join(ids)}. Name the variable of each of the model's features {self.features}, in that "
                f"order: ?columns={columns_example(self.features, known)} (or map node ids in a [[source]] "
                "table: nodes = { \"FEATURE\" = \"ns=2;s=...\" })")
        return sorted(found.items())

    # -- asyncua's subscription handler (the event loop's thread) -----------------------

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        try:
            self._take(node, val, data)
        except Exception as exc:  # asyncua would log it (silenced) and go on: count it instead
            self.bad_reading(BadReason.BAD_REPLY, f"a notification raised {type(exc).__name__}: {exc}")

    def _take(self, node: Any, val: Any, data: Any) -> None:
        import asyncio

        j = self._handles.get(node.nodeid)
        if j is None:
            return
        dv = data.monitored_item.Value
        status = getattr(dv, "StatusCode", None)
        bad = None
        if status is not None and not status.is_good():
            bad = status.name
        ts = dv.SourceTimestamp or dv.ServerTimestamp
        if ts is not None and ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)  # OPC UA times are UTC
        self._pending[j] = (val, ts.timestamp() if ts is not None else None, bad)
        if not self._flush_scheduled:
            # the notifications of one publish are dispatched back to back: flush after the last
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def status_change_notification(self, status: Any) -> None:
        log.info("OPC UA %s: subscription status %s", self.name, getattr(status, "Status", status))
        if self._lost is not None:
            self._lost.set()

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self._flush_pending(pending)
        except Exception as exc:  # one odd value must not end the session: that measurement is counted
            self.bad_reading(BadReason.BAD_REPLY, f"a notification set raised {type(exc).__name__}: {exc}")

    def _flush_pending(self, pending: dict[int, tuple[Any, float | None, str | None]]) -> None:
        reason: BadReason | None = None
        ts = None
        cells: list[object] = [MISSING] * len(self.features)
        for j, (val, t, bad) in pending.items():
            if t is not None:
                ts = t if ts is None else max(ts, t)
            if bad is not None:
                self.bad_status_by_name[bad] = self.bad_status_by_name.get(bad, 0) + 1
                reason = reason or BadReason.BAD_STATUS
                self.rows.forget(self.stream, j)  # a bad value is not the variable's last good value
                continue
            v = cell_value(float(val) if isinstance(val, bool) else val)
            if type(v) is BadReason:
                reason = reason or v
                continue
            cells[j] = v
        now = time.time()
        # a server whose clock is off; not the session's first set, whose times are when each value last changed
        if ts is not None and abs(ts - now) >= CLOCK_WARN_AFTER and self.per_session and self.per_session[-1]:
            self.rows.check_clock(self.stream, ts, now)
        at = ts if ts is not None else now
        if reason is None:
            m = self.rows.row(self.stream, cells, at, ts)
        else:
            self.rows.hold(self.stream, cells, at)
            m = reason
        if type(m) is not Measurement:
            self._put(Item(Kind.BAD, self.name, m, time.time()))
            return
        self.measurements += 1
        if self.per_session:
            self.per_session[-1] += 1
        self._put(Item(Kind.MEASUREMENT, self.name, m, time.time()))


def parse_browse_path(path: str) -> list[str]:
    """``/Objects/2:Pump1`` -> ``["0:Objects", "2:Pump1"]`` (a level without ``ns:`` is namespace 0)."""
    out = []
    for level in [unquote(p) for p in path.strip("/").split("/") if p]:
        ns, sep, name = level.partition(":")
        if sep and ns.isdigit() and name:
            out.append(f"{int(ns)}:{name}")
        else:
            out.append(f"0:{level}")
    return out


@register("opcua")
def build(spec: SourceSpec, ctx: SourceContext) -> OpcUaSource:
    """``opcua://[user:pass@]host:port/Objects/2:Name?interval=S`` or a ``[[source]]`` table with ``nodes``."""
    require_asyncua()
    settings = spec.checked(SETTINGS)
    parts = urlsplit(spec.url)
    if not parts.hostname:
        raise SourceConfigError(f"bad OPC UA source {spec.name!r}: use opcua://host:port/Objects/2:Name")
    try:
        interval = float(settings.get("interval", 1.0))
        timeout = float(settings.get("timeout", 4.0))
    except (TypeError, ValueError):
        raise SourceConfigError(f"source {spec.name!r}: interval and timeout are seconds") from None
    if not (interval > 0 and timeout > 0):
        raise SourceConfigError(f"source {spec.name!r}: interval and timeout must be positive")
    nodes = settings.get("nodes")
    columns = parse_columns(spec.name, settings.get("columns"), ctx.features)
    browse = None
    if nodes is not None:
        if columns is not None:
            raise SourceConfigError(f"source {spec.name!r}: nodes or columns, not both (columns names an object's "
                                    "variables, nodes gives each feature's node id)")
        nodes = {f: str(v) for f, v in feature_table(spec.name, "nodes", nodes, ctx.features).items()}
    else:
        browse = parse_browse_path(parts.path)
        if not browse:
            raise SourceConfigError(f"source {spec.name!r} names no object: use opcua://host:port/Objects/2:Name "
                                    "or map nodes in a [[source]] table")
    security = settings.get("security")
    if security:
        policy, _, mode = str(security).partition(",")
        if policy != "Basic256Sha256" or mode not in ("Sign", "SignAndEncrypt"):
            raise SourceConfigError(f"source {spec.name!r}: security is Basic256Sha256,Sign or "
                                    f"Basic256Sha256,SignAndEncrypt (got {security!r})")
        files = [settings.get("certificate"), settings.get("private_key")]
        if not all(files):
            raise SourceConfigError(f"source {spec.name!r}: security {security} needs certificate and private-key")
        if settings.get("server_certificate"):
            files.append(settings["server_certificate"])
        for f in files:
            if not Path(str(f)).is_file():
                raise SourceConfigError(f"source {spec.name!r}: {f} does not exist")
        security = ",".join([policy, mode] + [str(f) for f in files])
    username = settings.get("username") or (unquote(parts.username) if parts.username else None)
    password = settings.get("password") or (unquote(parts.password) if parts.password else None)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    endpoint = f"opc.tcp://{host}:{parts.port or 4840}"
    stream = settings.get("stream")
    name = f"opcua://{host}:{parts.port or 4840}" + (parts.path if browse else f"/{stream}" if stream else "")
    rows = row_assembler(name, ctx.features, settings["max_age"]) if "max_age" in settings else None
    return OpcUaSource(name, endpoint, ctx.features, browse_path=browse, nodes=nodes, stream=stream,
                       session=OpcUaSession(interval, timeout, username, password, security or None,
                                            str(settings.get("application_uri", APPLICATION_URI))), rows=rows,
                       columns=columns)
