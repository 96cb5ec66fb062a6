"""``assemble(config) -> Assembly``: the one place where an agent is built from its settings and wired.

In this order: the start model through the same checks as every model
(:class:`~edgewatch.agent.lifecycle.accept.Gate`; with ``--model-topic`` the
model store's live model is resumed when it still passes them), one
:class:`~edgewatch.mqtt.connection.Connections` for every broker, the sinks
and sources from their registries, the agent, the operations endpoints and
systemd, the watched model file, the fleet (status, model topic, commands)
on the fleet broker, the live page and the run recorder. Every part that
receives the agent's events or batches is subscribed here, so this module
shows who gets what. What needs closing is one list, closed in reverse
order by :meth:`Assembly.close` (also when a later part cannot be built,
e.g. the ``--ui`` port is taken).

**The fleet broker** (``--fleet-broker mqtt[s]://HOST:PORT/PREFIX``,
``[fleet] broker``): where the agent's fleet topics
``PREFIX/AGENT-ID/{status,model,command,shadow}`` are. Default: the first
MQTT sink's URL, as before there was a choice; an agent with neither has no
fleet status, and ``--model-topic`` without either is a usage error. The
login and TLS settings (``[mqtt]``) apply to it as to every broker, and a
fleet broker that is also a sink's shares its connection and its status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewatch.agent.config import MQTT_SCHEMES, AgentConfig, BadSetting, MqttSettings
from edgewatch.agent.engine import Agent, AgentOptions, RunSummary
from edgewatch.agent.lifecycle.accept import Candidate, Gate, Origin, refuse
from edgewatch.agent.lifecycle.releases import admit_at_start
from edgewatch.agent.lifecycle.signing import TrustPolicy
from edgewatch.agent.lifecycle.store import ModelStore
from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.ops.recorder import RunRecorder
from edgewatch.agent.runtime import ModelRuntime
from edgewatch.agent.sinks import Sink, SinkContext, make_sink, scheme_of, url_of
from edgewatch.agent.sources import make_source
from edgewatch.errors import BadOverride, EdgewatchError
from edgewatch.mqtt.connection import Connections

if TYPE_CHECKING:
    from edgewatch.agent.ui.server import UiOptions, UiServer

log = logging.getLogger("edgewatch.agent")

Closer = Callable[[], None]


@dataclass
class Assembly:
    """An agent ready to run, what to close after it, and the addresses it serves (for the operator)."""

    agent: Agent
    config: AgentConfig
    closers: list[Closer] = field(default_factory=list)  # closed last first
    urls: dict[str, str] = field(default_factory=dict)  # "metrics", "live page" -> where

    def run(self) -> RunSummary:
        """Run until the sources end, ``--duration`` or ``--max-messages``, or a stop; then close everything."""
        try:
            return self.agent.run(duration=self.config.run.duration, max_messages=self.config.run.max_messages)
        finally:
            self.close()

    def close(self) -> None:
        """Close what was opened, last first, each once; one that fails does not keep the others open."""
        _close_all(self.closers)


def assemble(config: AgentConfig, extra_sinks: Sequence[Sink] = ()) -> Assembly:
    """Build and wire the agent of ``config`` (see the module docstring); ``extra_sinks`` go first (embedders).

    BadSetting for settings that contradict each other (a usage error),
    BadModelFile when the start model cannot run, BadOverride when a flag
    contradicts it; nothing is left open when it fails.
    """
    problems = config.problems()
    if problems:
        raise BadSetting("; ".join(problems))
    options = agent_options(config)
    closers: list[Closer] = []
    try:
        gate = _gate(config, options)
        runtime, refused = _start_runtime(config, gate)
        connections = Connections()  # one per broker, shared by the MQTT sinks, sources and the fleet
        closers.append(connections.close)
        metrics = AgentMetrics(exported=bool(config.ops.metrics))
        context = SinkContext(agent_id=options.agent_id, spool_dir=config.sinks.spool_dir,
                              spool_max_bytes=int(config.sinks.spool_max_mb * 2**20),
                              spool_memory_bytes=int(config.sinks.spool_memory_mb * 2**20), metrics=metrics,
                              mqtt_options=broker_options(config.mqtt), connections=connections, connect=False)
        learner = _learner(config, runtime, options)
        sinks = _sinks(config.sinks.urls, context)
        closers.append(lambda: _close_all([s.close for s in sinks]))  # a stop while the agent is built
        agent = Agent(runtime, [*extra_sinks, *sinks], options, metrics, learner=learner)
        closers[-1] = agent.close  # the agent owns the sinks now: it closes them once, counting delivery
        spools = [s.spool for s in sinks if hasattr(s, "spool")]
        if spools:  # every sink's spool, read when Prometheus scrapes (MQTT's sink alone set them before)
            metrics.spool_depth.set_function(lambda: sum(sp.depth for sp in spools))
            metrics.spool_dropped.set_function(lambda: sum(sp.dropped for sp in spools))
        for sink in sinks:  # a sink that follows every scored window (Sparkplug's anomaly_score) or dropped streams
            on_batch, on_forget = getattr(sink, "on_batch", None), getattr(sink, "on_forget", None)
            if on_batch is not None or on_forget is not None:
                agent.subscribe(on_batch=on_batch, on_forget=on_forget)
        if refused is not None:
            refuse(agent, refused[0], refused[1], Origin.STORE)
        for spec in config.sources.urls:
            agent.add_source(make_source(spec, runtime.card.features, idle_timeout=config.sources.idle_timeout,
                                         agent_id=options.agent_id, mqtt_options=context.mqtt_options,
                                         connections=connections, states=runtime.card.states))
        assembly = Assembly(agent, config, closers)
        _operations(assembly)
        if config.model.watch:
            from edgewatch.agent.lifecycle.file_watch import ModelFileWatcher

            closers.append(ModelFileWatcher(agent, agent.model.path, gate,
                                            interval=config.model.watch_interval).start().close)
        mqtt_sinks = [s for spec, s in zip(config.sinks.urls, sinks) if scheme_of(url_of(spec)) in MQTT_SCHEMES]
        _fleet(assembly, gate, context, mqtt_sinks)
        for sink in mqtt_sinks:  # now that the fleet member has set the status they publish on connect
            sink.connection.start()  # type: ignore[attr-defined]
        if config.ui.address:
            server = serve_page(agent, config.ui.address, config.ui.max_clients)
            assembly.urls["live page"] = server.url
            closers.append(server.stop)
        if config.run.record_run:
            closers.append(record_run(agent, config.run.record_run).close)
    except BaseException:
        _close_all(closers)
        raise
    log.info("model %s (%s, window %d, stride %d, threshold %.6g, sha256 %s); at most %d streams (~%.1f KiB "
             "each)", agent.model.path, agent.card.family, agent.window, agent.stride, agent.threshold,
             agent.model.sha256[:12], agent.max_streams, agent.runtime.stream_bytes() / 1024)
    log.info("%s", agent.runtime.scale.describe())
    return assembly


def agent_options(config: AgentConfig) -> AgentOptions:
    """The agent's run-time choices from the config (None: the model file's)."""
    m = config.model
    options = AgentOptions(stride=m.stride, threshold=m.threshold, k=m.k, n=m.n, close_after=m.close_after,
                           sensitivity=m.sensitivity, quiet_start=m.quiet_start, max_streams=config.streams.max,
                           stream_ttl=config.streams.ttl or None)
    if config.learn.rows:
        options.drift_every = 0  # each stream's normal is its own: the template's drift reference is not it
    if config.fleet.agent_id:
        options.agent_id = config.fleet.agent_id
    return options


def broker_options(mqtt: MqttSettings) -> dict:
    """The ``[mqtt]`` settings as broker options, only those given (so a URL's own login still works)."""
    given = {"username": mqtt.username, "password": mqtt.password, "ca_file": mqtt.ca_file,
             "cert_file": mqtt.cert_file, "key_file": mqtt.key_file, "keepalive": mqtt.keepalive}
    out = {k: v for k, v in given.items() if v}
    if mqtt.tls_insecure:
        out.update(tls_insecure=True, tls=True)
    return out


def serve_page(agent: Agent, address: str, max_clients: int = 16, options: UiOptions | None = None) -> UiServer:
    """The live page of ``agent`` on ``address``, subscribed to its events, batches and dropped streams
    (``options``, when given, instead of the defaults with ``max_clients``)."""
    from edgewatch.agent.ui.server import LiveView, UiOptions, start_ui

    view = LiveView.of(agent, options or UiOptions(max_clients=max_clients))
    agent.subscribe(view.on_event, view.on_batch, view.on_forget)
    return start_ui(view, address)


def record_run(agent: Agent, path: Path) -> RunRecorder:
    """A run record of ``agent`` in ``path`` (for ``edgewatch plot``), subscribed to its events and batches."""
    recorder = RunRecorder.for_agent(agent, path)
    agent.subscribe(recorder.on_event, recorder.on_batch)
    return recorder


# -- the parts --------------------------------------------------------------------------------


def _gate(config: AgentConfig, options: AgentOptions) -> Gate:
    """The checks every model passes here; with trusted keys or a model topic, the store that keeps models
    and the highest release run (no rollback by replay)."""
    m = config.model
    trust = TrustPolicy.from_files(m.trust_keys, allow_unsigned_remote=m.allow_unsigned)
    store = ModelStore(config.sinks.spool_dir / "models") if config.fleet.model_topic or trust.keys else None
    return Gate(trust, store, options.overrides(), options.drift_settings())


def _start_runtime(config: AgentConfig, gate: Gate) -> tuple[ModelRuntime, tuple[str, str] | None]:
    """The runtime to start with, and (reason, sha256) of a stored live model that could not run.

    ``--model`` passes its checks even when the store's model is resumed:
    it is what runs when the store's cannot. A stored model that cannot run
    is never a reason to stay down.
    """
    path = config.model.path
    assert path is not None  # required by the command; a config without it was refused by click
    # its release is checked only when it runs: an older --model is what a resumed newer model replaced
    checked = replace(gate, store=None).check(Candidate(path, Origin.START, sha256=config.model.sha256,
                                                        label=f"--model {path}"))
    refused = None
    live = gate.store.get("live") if gate.store is not None and config.fleet.model_topic else None
    if live is not None and live.sha256 != checked.sha256:
        try:
            admitted = gate.admit(Candidate(Path(live.path), Origin.STORE, sha256=live.sha256))
        except (EdgewatchError, OSError) as exc:
            refused = (f"stored live model cannot run: {exc}", live.sha256)
            log.error("not resuming model %s from the model store (%s); starting with --model", live.sha256[:12],
                      exc)
        else:
            log.info("resuming model %s (%s) from the model store %s; --model is the first start's model",
                     live.sha256[:12], live.note or "no note", gate.store.dir)  # type: ignore[union-attr]
            return admitted.runtime, None
    if checked.verified is not None and gate.store is not None:  # exit 3 when older than a release it has run
        admit_at_start(gate.store, checked.verified, checked.sha256, path)
    try:
        return gate.build(checked).runtime, refused
    except BadOverride as exc:
        raise BadOverride(f"{exc} (model file {path})") from None


def _sinks(urls: Sequence[str | Mapping[str, Any]], context: SinkContext) -> list[Sink]:
    built: list[Sink] = []
    try:
        for url in urls:
            built.append(make_sink(url, context))
    except BaseException:  # e.g. a spool directory that cannot be used: close the ones made before it
        _close_all([s.close for s in built])
        raise
    return built


def _learner(config: AgentConfig, runtime: ModelRuntime, options: AgentOptions):  # noqa: ANN202
    if not config.learn.rows:
        return None
    from edgewatch.agent.learn import StreamLearner

    return StreamLearner(config.learn.state, runtime.card, config.learn.rows, options.overrides())


def _operations(assembly: Assembly) -> None:
    """``--metrics`` (Prometheus and health) and, under systemd, READY and the watchdog."""
    agent, ops, closers = assembly.agent, assembly.config.ops, assembly.closers
    if ops.metrics:
        from edgewatch.agent.ops.server import OpsServer

        server = OpsServer(agent, ops.metrics, ready_grace=ops.ready_grace, ready_max_silence=ops.ready_max_silence,
                           max_streams=ops.metrics_max_streams)
        assembly.urls["metrics"] = server.url
        closers.append(server.close)
    from edgewatch.agent.ops.systemd import SystemdNotifier

    notifier = SystemdNotifier()
    if notifier.enabled:
        notifier.notify("READY=1\nSTATUS=scoring")
        notifier.start_watchdog(agent)

        def stopping() -> None:
            notifier.notify("STOPPING=1")
            notifier.close()
        closers.append(stopping)


def _fleet(assembly: Assembly, gate: Gate, context: SinkContext, mqtt_sinks: list[Sink]) -> None:
    """The agent's side of the fleet on the fleet broker: status, ``--model-topic``, commands, shadow reports,
    ``--ha-discovery``."""
    config, agent, closers = assembly.config, assembly.agent, assembly.closers
    url = config.fleet_broker()
    if url is None:
        return
    from edgewatch.agent.lifecycle.fleet_member import FleetMember
    from edgewatch.mqtt.connection import client_id_for, parse_broker_url
    from edgewatch.mqtt.topics import Topics

    agent_id = agent.options.agent_id
    broker, path = parse_broker_url(url, client_id=client_id_for(agent_id), **context.mqtt_options)
    connection = context.connections.acquire(broker)
    topics = Topics(path.strip("/") or "edgewatch", agent_id)
    status = connection.status_publisher(topics)  # an MQTT sink on these topics made it already: shared
    receiver = None
    if config.fleet.model_topic:
        from edgewatch.agent.lifecycle.receiver import MqttModelReceiver

        receiver = MqttModelReceiver(agent, connection, topics, gate, max_bytes=int(config.model.max_mb * 2**20))
        closers.append(receiver.close)
    # an MQTT sink on these very topics sends the events; else the member publishes the model events there
    covered = any(s.connection is connection and s.topics == topics for s in mqtt_sinks)  # type: ignore[attr-defined]
    member = FleetMember(agent, connection, topics, status, receiver,
                         (config.fleet.status_interval, config.fleet.shadow_report_interval),
                         spool_depth=lambda: sum(s.spool.depth for s in mqtt_sinks),  # type: ignore[attr-defined]
                         publish_events=not covered)
    agent.subscribe(on_event=member.on_event)
    closers.append(member.close)
    if config.fleet.ha_discovery:
        from edgewatch.agent.sinks.home_assistant import HomeAssistantDiscovery
        from edgewatch.mqtt.topics import HomeAssistantTopics

        ha = HomeAssistantDiscovery(connection, topics, HomeAssistantTopics(config.fleet.ha_discovery_prefix),
                                    agent.card.family)
        agent.subscribe(on_event=ha.on_event, on_batch=ha.on_batch, on_forget=ha.on_forget)
        closers.append(ha.close)
    connection.start()


def _close_all(closers: list[Closer]) -> None:
    while closers:
        close = closers.pop()
        try:
            close()
        except Exception:
            log.exception("closing %s failed", getattr(close, "__qualname__", close))
