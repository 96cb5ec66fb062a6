"""``edgewatch agent run``: score live streams with a model file and send alerts."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from edgewatch import digests
from edgewatch.agent.broker import Connections
from edgewatch.agent.config import AgentConfig, load_into_context
from edgewatch.agent.engine import DEFAULT_STREAM_TTL, Agent, AgentOptions, RunSummary
from edgewatch.agent.metrics import DEFAULT_METRICS_MAX_STREAMS, AgentMetrics
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.ops import DEFAULT_READY_GRACE, DEFAULT_READY_MAX_SILENCE
from edgewatch.agent.model_store import ModelStore
from edgewatch.agent.releases import admit_at_start
from edgewatch.agent.runtime import ModelRuntime
from edgewatch.agent.score_scale import MAX_SENSITIVITY, MIN_SENSITIVITY
from edgewatch.agent.signing import TrustPolicy
from edgewatch.agent.sinks import make_sink
from edgewatch.agent.sources import make_source, schemes
from edgewatch.agent.sources.base import SourcesFailed
from edgewatch.errors import BadModelFile, BadOverride

log = logging.getLogger("edgewatch.agent")

class SourceParam(click.ParamType):
    """A --source URL, or from a config file a ``[[source]]`` table (url = ... plus protocol keys)."""

    name = "URL"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            return value
        self.fail(f"{value!r} is neither a URL nor a table with url = ...", param, ctx)


EPILOG = """\b
Examples:
  edgewatch agent run --model models/equipment-lstm-ae.onnx --source ws://127.0.0.1:8765/ --stride 3
  edgewatch agent run --model m.onnx --source replay:data.csv?rate=100 --sink jsonl:alerts.jsonl
  edgewatch agent run --model m.onnx --source ws://10.0.0.5:9000/ --sink mqtt://broker:1883/plant1
  edgewatch agent run --config /etc/edgewatch/agent.toml

\b
Sources: ws://HOST:PORT/PATH (reconnects forever), replay:FILE.csv[?rate=HZ&loop=1], stdin,
         mqtt[s]://HOST:PORT/TOPIC-FILTER (+ and # as %23; JSON or Sparkplug B),
         opcua://HOST:PORT/Objects/2:Name[?interval=S], modbus://HOST:PORT/UNIT?registers=...;
         in a config file also [[source]] tables (url = ... plus protocol keys), see docs/sources.md.
Sinks:   stdout, jsonl:FILE, mqtt://HOST:PORT/PREFIX or mqtts://... (alerts on PREFIX/AGENT-ID/alerts,
         drift on .../drift, other events on .../events, QoS 1, spooled to disk until the broker's
         PUBACK: at-least-once, dedupe by the alert "id"; retained JSON .../status, online/offline).
Fleet (status, model publish/rollback/shadow/promote, topics): docs/fleet.md.
Exit codes: 0 stopped cleanly (end of input, --duration, SIGTERM/SIGINT), 1 failure (also: every
source ended and one of them unexpectedly, e.g. a source that died 5 times in 10 minutes),
2 usage error, 3 bad model file (not edgewatch, corrupt, sha256 mismatch, not signed by a
--trust-key or changed after signing, a release older than one it has run),
4 bad input file (replay CSV does not fit the model, bad config file), 6 missing optional dependency.
On live streams a message of the wrong arity is bad input: counted, skipped, never fatal.
"""


@click.command("run", epilog=EPILOG)
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=load_into_context,
              help="TOML file with the same settings as the flags (see --print-config); a flag on the command "
                   "line replaces that one setting of the file.")
@click.option("--print-config", is_flag=True,
              help="Print this run's settings (flags and --config merged) as TOML and exit without running; "
                   "--config with that file reproduces the run (the MQTT password is left out).")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="edgewatch ONNX model file.")
@click.option("--model-sha256", default=None,
              help="Refuse the model file unless its sha256 matches (pins it: excludes --watch-model, --model-topic).")
@click.option("--trust-key", "trust_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Run only models signed by this public key (repeatable): at start, on --watch-model and "
                   "from --model-topic, and none of a release older than one it has run (kept in "
                   "SPOOL_DIR/models). Make keys with 'edgewatch model keygen'.")
@click.option("--allow-unsigned-models", is_flag=True,
              help="Without --trust-key, accept unsigned models from --model-topic (closed test brokers only: "
                   "anyone who may publish there then decides what this agent alerts on).")
@click.option("--max-model-mb", type=click.FloatRange(min=0.01), default=64.0, show_default=True,
              help="Largest model file accepted from --model-topic; bigger messages are refused before "
                   "anything is written.")
@click.option("--source", "sources", multiple=True, required=True, type=SourceParam(),
              help="Where measurements come from (repeatable): " + ", ".join(schemes()) + ".")
@click.option("--sink", "sinks", multiple=True, default=("stdout",), show_default=True,
              help="Where alert events go (repeatable).")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Score every n-th point's window (default: the model file's, 3 for S0).")
@click.option("--threshold", type=float, default=None,
              help="Override the model file's calibrated threshold, in the model's own score units.")
@click.option("--sensitivity", type=click.FloatRange(min=MIN_SENSITIVITY, max=MAX_SENSITIVITY), default=1.0,
              show_default=True,
              help="Multiplies anomaly_score (0 = typical normal data, 1 = the threshold; docs/operators.md); "
                   "windows alert above 1, so 2 alerts at half the distance to the threshold, 0.5 at twice it. "
                   "The same meaning for every model family.")
@click.option("--k", "k", type=click.IntRange(min=1), default=None,
              help="Episode starts when k of the last n scored windows are over the threshold.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None, help="See --k.")
@click.option("--close-after", "close_after", type=click.IntRange(min=1), default=None, metavar="M",
              help="Episode ends after M scored windows in a row under the threshold (default: the model "
                   "file's; files without one close when none of the last N are over).")
@click.option("--agent-id", default=None, help="Name of this agent in alerts and MQTT topics (default: hostname).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--max-messages", type=int, default=None, help="Stop after this many messages.")
@click.option("--idle-timeout", type=float, default=10.0, show_default=True,
              help="Seconds of websocket silence before a ping; twice that and it reconnects.")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("spool"),
              show_default=True, help="Where undelivered MQTT alerts wait on disk.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's counters (messages, bad by reason, windows, events) to this file.")
@click.option("--ui", "ui", default=None, metavar="ADDR:PORT",
              help="Serve the live page (signals, green/red score bars, alerts) here, e.g. 127.0.0.1:8080.")
@click.option("--record-run", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record every message, scored window and event to this JSONL file (for edgewatch plot).")
@click.option("--mqtt-username", default=None, envvar="EDGEWATCH_MQTT_USERNAME", help="MQTT login name.")
@click.option("--mqtt-password", default=None, envvar="EDGEWATCH_MQTT_PASSWORD",
              help="MQTT password (better from $EDGEWATCH_MQTT_PASSWORD or the config file than the command line).")
@click.option("--mqtt-ca-file", default=None, type=click.Path(dir_okay=False),
              help="CA certificate(s) to verify the broker; turns TLS on.")
@click.option("--mqtt-cert-file", default=None, type=click.Path(dir_okay=False),
              help="Client certificate for brokers that require one; turns TLS on.")
@click.option("--mqtt-key-file", default=None, type=click.Path(dir_okay=False), help="Key of --mqtt-cert-file.")
@click.option("--mqtt-tls-insecure", is_flag=True, help="Do not verify the broker's certificate (testing only).")
@click.option("--spool-max-mb", type=click.FloatRange(min=0.1), default=64.0, show_default=True,
              help="Spool bound; when full the OLDEST undelivered alerts are dropped and counted.")
@click.option("--spool-memory-mb", type=click.FloatRange(min=0), default=4.0, show_default=True,
              help="Alerts kept in memory while the spool's disk refuses writes (full, read-only); past it "
                   "new alerts are dropped and counted in edgewatch_spool_dropped.")
@click.option("--metrics", "metrics_addr", default=None, metavar="ADDR:PORT",
              help="Serve Prometheus /metrics and JSON /livez, /readyz (and /healthz) here, e.g. 127.0.0.1:9108.")
@click.option("--metrics-max-streams", type=click.IntRange(min=0), default=DEFAULT_METRICS_MAX_STREAMS,
              show_default=True,
              help="Streams with their own series in /metrics (edgewatch_anomaly_score{stream}, ...); the "
                   'others are summed up as stream="_other" and counted in edgewatch_streams_aggregated.')
@click.option("--ready-grace", type=click.FloatRange(min=0), default=DEFAULT_READY_GRACE, show_default=True,
              help="Seconds after start in which no message yet reads as 'starting' (then 'no_data'); /readyz "
                   "is 503 either way until the first message.")
@click.option("--ready-max-silence", type=click.FloatRange(min=0), default=DEFAULT_READY_MAX_SILENCE,
              show_default=True, help="/readyz answers 503 'silent' when no message came for this many seconds "
                                      "(0: never).")
@click.option("--max-streams", type=click.IntRange(min=1), default=None,
              help="Streams held at once; messages of further stream ids are bad input, too_many_streams. "
                   "Default: what fits the unit's MemoryMax=512M with this model (10,000 for S0 at ~10 KiB "
                   "each; ~2,000 with a likelihood post-process at ~124 KiB each).")
@click.option("--stream-ttl", type=click.FloatRange(min=0), default=DEFAULT_STREAM_TTL, show_default=True,
              help="Seconds without a message after which a stream's state is dropped (its open episode ended "
                   "first), freeing its place; 0 keeps streams forever.")
@click.option("--ui-max-clients", type=click.IntRange(min=1), default=16, show_default=True,
              help="Live-page browsers served at once; more get HTTP 503, counted in "
                   "edgewatch_ui_clients_refused_total.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line on stderr.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Log verbosity (logs go to stderr, alerts to the sinks).")
@click.option("--watch-model", is_flag=True,
              help="Poll the --model file and swap in a new version (replace it atomically: write, then rename).")
@click.option("--watch-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between polls of --watch-model.")
@click.option("--model-topic", is_flag=True,
              help="Take new model files from the retained MQTT topic PREFIX/AGENT-ID/model (needs an MQTT sink).")
@click.option("--status-interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds between retained status publishes on PREFIX/AGENT-ID/status (docs/fleet.md).")
@click.option("--shadow-report-interval", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds between shadow reports on PREFIX/AGENT-ID/shadow while a model runs in shadow.")
@click.option("--mqtt-keepalive", type=click.IntRange(min=1, max=65535), default=None,
              help="MQTT keepalive in seconds (default 30): the broker declares the agent offline (last will) "
                   "1.5 keepalives after its last packet.")
@click.option("--learn", "learn_rows", type=click.IntRange(min=2), default=None, metavar="N",
              help="Each stream learns its own pca model on its first N messages, then is scored with it (the "
                   "--model file names the features, the window and, if it is a pca file, its settings).")
@click.option("--learn-state", type=click.Path(file_okay=False, path_type=Path), default=Path("edgewatch-learned"),
              show_default=True, help="Folder of the learned models and buffers, kept across restarts (no pickle).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr at the end.")
def command(model_path: Path, model_sha256: str | None, sources: tuple[str, ...], sinks: tuple[str, ...],
            stride: int | None, threshold: float | None, k: int | None, n: int | None, close_after: int | None,
            agent_id: str | None,
            duration: float | None, max_messages: int | None, idle_timeout: float, spool_dir: Path,
            summary_json: Path | None, quiet: bool,
            ui: str | None = None, record_run: Path | None = None, mqtt_username: str | None = None,
            mqtt_password: str | None = None, mqtt_ca_file: str | None = None, mqtt_cert_file: str | None = None,
            mqtt_key_file: str | None = None, mqtt_tls_insecure: bool = False, spool_max_mb: float = 64.0,
            metrics_addr: str | None = None, log_json: bool = False, log_level: str = "info",
            watch_model: bool = False, watch_interval: float = 2.0, model_topic: bool = False,
            trust_keys: tuple[Path, ...] = (), allow_unsigned_models: bool = False,
            max_model_mb: float = 64.0, status_interval: float = 10.0, shadow_report_interval: float = 60.0,
            mqtt_keepalive: int | None = None, learn_rows: int | None = None,
            learn_state: Path = Path("edgewatch-learned"), ready_grace: float = DEFAULT_READY_GRACE,
            ready_max_silence: float = DEFAULT_READY_MAX_SILENCE, max_streams: int | None = None,
            stream_ttl: float = DEFAULT_STREAM_TTL, ui_max_clients: int = 16, spool_memory_mb: float = 4.0,
            print_config: bool = False, sensitivity: float = 1.0,
            metrics_max_streams: int = DEFAULT_METRICS_MAX_STREAMS) -> None:
    """Score live streams with a model file and send an alert per anomalous episode.

    Every --stride-th measurement of a stream, its last WINDOW measurements are
    scored; an episode opens when K of the last N scored windows exceed the
    threshold and closes after M scored windows in a row under it (the model
    file's --close-after; N when it has none). Runs without torch.
    """
    from edgewatch.agent.ops import setup_logging

    if print_config:
        click.echo(AgentConfig.from_command(click.get_current_context()).to_toml(), nl=False)
        return
    setup_logging(log_json, log_level)
    if model_sha256 and (watch_model or model_topic):
        raise click.UsageError("--model-sha256 pins the model, so it excludes --watch-model and --model-topic "
                               "(to control which models may replace it, sign them and give --trust-key)")
    if allow_unsigned_models and trust_keys:
        raise click.UsageError("--allow-unsigned-models contradicts --trust-key: with trusted keys every model "
                               "must be signed")
    trust = TrustPolicy.from_files(trust_keys, allow_unsigned_remote=allow_unsigned_models)
    data, verified = trust.check_file(model_path, origin="start")
    actual = digests.sha256(data).hexdigest()
    if model_sha256 and model_sha256.lower() != actual:
        raise BadModelFile(f"model file {model_path} has sha256 {actual}, expected {model_sha256.lower()}: "
                           "refusing to load it")
    if verified is not None:
        log.info("model %s %s", model_path, verified.describe())
    store = None
    resumed = None
    if model_topic or trust.keys:  # with --trust-key it also keeps the highest release run (no rollback by replay)
        store = ModelStore(spool_dir / "models")
    if model_topic:
        resumed = resume_live(store, trust, actual)
    options = AgentOptions(stride=stride, threshold=threshold, k=k, n=n, close_after=close_after,
                           sensitivity=sensitivity, max_streams=max_streams,
                           stream_ttl=stream_ttl or None)
    if learn_rows:
        options.drift_every = 0  # each stream's normal is its own: the template's drift reference is not it
    if agent_id:
        options.agent_id = agent_id
    refused_at_start: tuple[str, str] | None = None  # a stored model that cannot run here: (reason, sha256)
    runtime = None
    if resumed is not None:
        try:
            runtime = start_runtime(resumed[0], options, resumed[1])
            model_path = resumed[0]
        except (BadModelFile, click.UsageError) as exc:  # never a reason to stay down: --model is there
            sha = digests.sha256(resumed[1]).hexdigest()
            refused_at_start = (f"stored live model cannot run: {exc}", sha)
            log.error("not resuming model %s from the model store (%s); starting with --model", sha[:12], exc)
    if runtime is None:
        if verified is not None and store is not None:  # exit 3 when older than a release it has run
            admit_at_start(store, verified, actual, model_path)
        runtime = start_runtime(model_path, options, data)
    model = runtime.model
    metrics = AgentMetrics(exported=bool(metrics_addr))
    mqtt_options = mqtt_options_from_flags(mqtt_username, mqtt_password, mqtt_ca_file, mqtt_cert_file,
                                           mqtt_key_file, mqtt_tls_insecure)
    if mqtt_keepalive:
        mqtt_options["keepalive"] = mqtt_keepalive
    built_sinks: list = []
    closers: list[Callable[[], None]] = []
    connections = Connections()  # one per broker, shared by MQTT sinks, sources and the model receiver
    try:
        for spec in sinks:
            built_sinks.append(make_sink(spec, agent_id=options.agent_id, spool_dir=spool_dir,
                                         spool_max_bytes=int(spool_max_mb * 2**20), metrics=metrics,
                                         spool_memory_bytes=int(spool_memory_mb * 2**20),
                                         connections=connections,
                                         **(mqtt_options if spec.startswith(("mqtt://", "mqtts://")) else {})))
        learner = None
        if learn_rows:
            from edgewatch.agent.learn import StreamLearner

            learner = StreamLearner(learn_state, runtime.card, learn_rows, options.overrides())
        agent = Agent(runtime, built_sinks, options, metrics=metrics, learner=learner)
        if refused_at_start is not None:
            agent.refuse_model(refused_at_start[0], sha256=refused_at_start[1], origin="store")
        for spec in sources:
            agent.add_source(make_source(spec, model.card.features, idle_timeout=idle_timeout,
                                         agent_id=options.agent_id, mqtt_options=mqtt_options,
                                         connections=connections))
        closers = attach_operations(agent, metrics_addr, watch_model, watch_interval, model_topic, spool_dir,
                                    trust=trust, max_model_bytes=int(max_model_mb * 2**20), store=store,
                                    status_interval=status_interval, shadow_interval=shadow_report_interval,
                                    ready=(ready_grace, ready_max_silence),
                                    metrics_max_streams=metrics_max_streams)
        close_page_and_record = attach_page_and_record(agent, ui, record_run,  # --ui, --record-run
                                                       ui_max_clients=ui_max_clients)
    except BaseException:  # e.g. the --ui port is taken: still flush and close what was opened
        for sink in built_sinks:
            sink.close()
        for close in closers:
            close()
        connections.close()
        raise
    card = model.card
    log.info("model %s (%s, window %d, stride %d, threshold %.6g, sha256 %s); at most %d streams (~%.1f KiB "
             "each)", model_path, card.family, card.window, agent.stride, agent.threshold, model.sha256[:12],
             agent.max_streams, runtime.stream_bytes() / 1024)
    log.info("%s", runtime.scale.describe())

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping (draining queued messages, flushing sinks)", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        summary = agent.run(duration=duration, max_messages=max_messages)
    finally:
        for close in reversed(closers):
            close()
        connections.close()
    close_page_and_record()
    if summary_json:
        summary_json.write_text(json.dumps(summary_dict(summary), indent=2))
    if not quiet:
        print_summary(summary)
    if summary.ended_by == "sources" and summary.source_failures:
        raise SourcesFailed(summary.source_failures, len(sources))


def start_runtime(model_path: Path, options: AgentOptions, data: bytes) -> ModelRuntime:
    """The runtime of the --model file, built from its checked bytes ``data``; a flag that contradicts the
    file is a usage error (exit 2), a card that cannot run a bad model file (exit 3)."""
    model = ScoringModel(model_path, data=data)  # the file loaded is the file checked
    try:
        return ModelRuntime.build(model, options.overrides(), options.drift_settings())
    except BadOverride as exc:
        raise click.UsageError(f"{exc} (model file {model_path})") from None


def mqtt_options_from_flags(username: str | None, password: str | None, ca_file: str | None,
                            cert_file: str | None, key_file: str | None, tls_insecure: bool) -> dict:
    """The --mqtt-* flags as MqttSink options (only those given, so URL credentials still work)."""
    opts = {"username": username, "password": password, "ca_file": ca_file, "cert_file": cert_file,
            "key_file": key_file}
    out = {k: v for k, v in opts.items() if v}
    if tls_insecure:
        out["tls_insecure"] = True
        out["tls"] = True
    return out


def resume_live(store: ModelStore, trust: TrustPolicy, start_sha256: str) -> tuple[Path, bytes] | None:
    """The live model of the agent's model store, if it is another than --model's and still passes
    the trust policy (a model that came over MQTT); None: start with --model."""
    live = store.get("live")
    if live is None or live.sha256 == start_sha256:
        return None
    try:
        data, _ = trust.check_file(live.path, origin="mqtt")
    except BadModelFile as exc:
        log.warning("not resuming model %s from %s (%s); starting with --model", live.sha256[:12], store.dir, exc)
        return None
    if digests.sha256(data).hexdigest() != live.sha256:
        log.warning("model store file %s changed; starting with --model", live.path)
        return None
    log.info("resuming model %s (%s) from the model store %s; --model is the first start's model",
             live.sha256[:12], live.note or "no note", store.dir)
    return Path(live.path), data


def attach_operations(agent: Agent, metrics_addr: str | None, watch_model: bool, watch_interval: float,
                      model_topic: bool, spool_dir: Path, trust: TrustPolicy | None = None,
                      max_model_bytes: int | None = None, store: ModelStore | None = None,
                      status_interval: float = 10.0, shadow_interval: float = 60.0,
                      ready: tuple[float, float] = (DEFAULT_READY_GRACE, DEFAULT_READY_MAX_SILENCE),
                      metrics_max_streams: int = DEFAULT_METRICS_MAX_STREAMS) -> list[Callable[[], None]]:
    """Start /metrics + health, systemd notify/watchdog, model swaps, the fleet status; returns what stops them."""
    from edgewatch.agent.ops import OpsServer, SystemdNotifier

    closers: list[Callable[[], None]] = []
    if metrics_addr:
        ops = OpsServer(agent, metrics_addr, ready_grace=ready[0], ready_max_silence=ready[1],
                        max_streams=metrics_max_streams)
        click.echo(f"metrics on {ops.url}/metrics, health on {ops.url}/livez and {ops.url}/readyz", err=True)
        closers.append(ops.close)
    if watch_model:
        from edgewatch.agent.swap import ModelFileWatcher

        closers.append(ModelFileWatcher(agent, agent.model.path, interval=watch_interval, trust=trust,
                                        store=store).start().close)
    # no MQTT sink was made unless its module (and paho) got imported: do not import them for nothing
    mqtt_module = sys.modules.get("edgewatch.agent.mqtt")
    mqtt = [s for s in agent.sinks if isinstance(s, mqtt_module.MqttSink)] if mqtt_module else []
    receiver = None
    if model_topic:
        from edgewatch.agent.swap import MAX_MODEL_BYTES, MqttModelReceiver

        if not mqtt:
            raise click.UsageError("--model-topic needs an MQTT sink (--sink mqtt://host:port/prefix)")
        receiver = MqttModelReceiver(agent, mqtt[0], spool_dir / "models", trust=trust,
                                     max_bytes=max_model_bytes or MAX_MODEL_BYTES, store=store)
        closers.append(receiver.close)
    if mqtt:
        from edgewatch.agent.fleet import FleetMember

        member = FleetMember(agent, mqtt[0], receiver, status_interval=status_interval,
                             shadow_interval=shadow_interval)
        closers.append(member.close)
    notifier = SystemdNotifier()
    if notifier.enabled:
        notifier.notify("READY=1\nSTATUS=scoring")
        notifier.start_watchdog(agent)

        def stopping() -> None:
            notifier.notify("STOPPING=1")
            notifier.close()
        closers.append(stopping)
    return closers


def attach_page_and_record(agent: Agent, ui: str | None, record_run: Path | None,
                           ui_max_clients: int = 16) -> Callable[[], None]:
    """Start the live page (--ui) and the run recorder (--record-run); returns what stops them."""
    closers: list[Callable[[], None]] = []
    if ui:
        from edgewatch.agent.ui.server import UiOptions, start_ui

        server = start_ui(agent, ui, UiOptions(max_clients=ui_max_clients))
        click.echo(f"live page on {server.url}", err=True)
        closers.append(server.stop)
    if record_run:
        from edgewatch.agent.recorder import RunRecorder

        closers.append(RunRecorder.for_agent(agent, record_run).close)

    def close() -> None:
        for c in closers:
            c()
    return close


def summary_dict(summary: RunSummary) -> dict:
    return {"messages": summary.messages, "bad": summary.bad, "windows": summary.windows,
            "events": summary.events, "streams": summary.streams, "seconds": round(summary.seconds, 3),
            "nonfinite_scores": summary.nonfinite_scores, "evicted_streams": summary.evicted_streams,
            "source_restarts": summary.source_restarts, "source_failures": summary.source_failures,
            "ended_by": summary.ended_by, "delivery": summary.delivery}


def print_summary(summary: RunSummary) -> None:
    bad = sum(summary.bad.values())
    rate = summary.messages / summary.seconds if summary.seconds else 0.0
    lines = [f"messages {summary.messages} ({rate:.0f}/s) from {summary.streams} stream(s), "
             f"bad {bad}, windows scored {summary.windows}, events {summary.events or {}}"]
    if bad:
        lines.append("bad input by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.bad.items())))
    if summary.source_restarts:
        lines.append(f"source restarts {summary.source_restarts}")
    if summary.delivery:
        d = summary.delivery
        lines.append(f"MQTT events: sent {d['sent']}, delivered {d['delivered']}, dropped {d['dropped']}, "
                     f"waiting in the spool {d['waiting']}")
    click.echo("\n".join(lines), err=True)
    sys.stderr.flush()
