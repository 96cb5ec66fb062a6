"""``--config agent.toml`` and ``--print-config``: the settings of ``edgewatch agent run`` as data.

:class:`AgentConfig` holds every setting of a run in typed sections
(``model``, ``sources``, ``sinks``, ``streams``, ``mqtt``, ``fleet``, ``ops``,
``learn``, ``ui``, ``run``); each field names the one flag it comes from.
A config file is read into flag names, so a file and the command line meet
in one key space and a flag given on the command line replaces that one
setting of the file, never a whole table. Two file forms are read:

* sections (what ``--print-config`` writes)::

      [model]
      path = "/var/lib/edgewatch/equipment-lstm-ae.onnx"
      stride = 3

      [sources]
      urls = ["ws://10.0.0.5:9000/"]

      [mqtt]
      username = "press-7"

* the first form, flag names as keys (dashes or underscores), where a
  table's name is a prefix (``[mqtt] username`` is ``mqtt-username``) and
  ``[[source]]`` tables are sources::

      model = "/var/lib/edgewatch/equipment-lstm-ae.onnx"
      source = ["ws://10.0.0.5:9000/"]
      agent-id = "press-7"

Unknown keys are refused with the known ones listed, so a misspelt
setting cannot be silently ignored. ``--print-config`` leaves the MQTT
password out, and the password of any URL (a printed config gets pasted
into tickets); give it in ``$EDGEWATCH_MQTT_PASSWORD`` or add it to the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import click

from edgewatch.agent.engine import DEFAULT_STREAM_TTL
from edgewatch.agent.ops.metrics import DEFAULT_METRICS_MAX_STREAMS
from edgewatch.agent.ops.server import DEFAULT_READY_GRACE, DEFAULT_READY_MAX_SILENCE
from edgewatch.agent.score_scale import MAX_SENSITIVITY, MIN_SENSITIVITY
from edgewatch.errors import BadInput

SECRETS = {"mqtt-password": "EDGEWATCH_MQTT_PASSWORD"}
MQTT_SCHEMES = ("mqtt", "mqtts")  # flags --print-config leaves out -> where to give them


class ConfigError(BadInput):
    """The config file cannot be read (exit 4)."""


class BadSetting(ConfigError):
    """A setting that does not exist, is given twice, or has a wrong value: a usage error (exit 2) at the CLI."""


# what a field's metadata may say besides its flag: the checks on its value and how its option is shown
SETTING_KEYS = {"help": "", "minimum": None, "maximum": None, "choices": (), "metavar": None, "short": None,
                "envvar": None, "path": None, "required": False}


def setting(flag: str, default: Any = None, **meta: Any) -> Any:
    """A config field: the flag it comes from, its default, and :data:`SETTING_KEYS` (its range, help...).

    ``path`` is ``"file"`` or ``"dir"`` for a field naming one; ``required``
    makes the option required on the command line (a config file may give it).
    """
    unknown = set(meta) - set(SETTING_KEYS)
    if unknown:
        raise TypeError(f"setting {flag!r}: unknown keys {sorted(unknown)}")
    return field(default=default, metadata={"flag": flag, **SETTING_KEYS, **meta})


@dataclass(frozen=True)
class ModelSettings:
    """Which model file runs, what may replace it, and run-time overrides of its card (None: the file's)."""

    path: Path | None = setting("model", path="file", required=True, help="edgewatch ONNX model file.")
    sha256: str | None = setting("model-sha256", help="Refuse the model file unless its sha256 matches (pins it: "
                                 "excludes --watch-model, --model-topic).")
    stride: int | None = setting("stride", minimum=1,
                                 help="Score every n-th point's window (default: the model file's, 3 for S0).")
    threshold: float | None = setting("threshold", help="Override the model file's calibrated threshold.")
    sensitivity: float = setting("sensitivity", 1.0, minimum=MIN_SENSITIVITY, maximum=MAX_SENSITIVITY,
                                 help="Multiplies anomaly_score (0 = typical normal data, 1 = the threshold; "
                                      "docs/operators.md); windows alert above 1, so 2 alerts at half the distance "
                                      "to the threshold, 0.5 at twice it. The same meaning for every model family.")
    k: int | None = setting("k", minimum=1,
                            help="Episode starts when k of the last n scored windows are over the threshold.")
    n: int | None = setting("n", minimum=1, help="See --k.")
    quiet_start: float = setting("quiet-start", 0.0, minimum=0, metavar="SECONDS",
                                 help="Hold each stream's episodes for its first SECONDS of its own time (the "
                                      "data's timestamps), while a detector that learns online learns it: "
                                      "counted in edgewatch_episodes_held_total, not sent. 86400 spares NAB's default "
                                      "its first-day false alarms and misses a first-day fault (docs/eval.md). "
                                      "Default 0: none held.")
    close_after: int | None = setting("close-after", minimum=1, metavar="M",
                                      help="Episode ends after M scored windows in a row under the threshold "
                                           "(default: the model file's; files without one close when none of the "
                                           "last N are over).")
    trust_keys: tuple[Path, ...] = setting("trust-key", (), path="file",
                                           help="Run only models signed by this public key (repeatable): at start, "
                                                "on --watch-model and from --model-topic, and none of a release "
                                                "older than one it has run (kept in SPOOL_DIR/models). Make keys "
                                                "with 'edgewatch model keygen'.")
    allow_unsigned: bool = setting("allow-unsigned-models", False,
                                   help="Without --trust-key, accept unsigned models from --model-topic (closed "
                                        "test brokers only: anyone who may publish there then decides what this "
                                        "agent alerts on).")
    max_mb: float = setting("max-model-mb", 64.0, minimum=0.01,
                            help="Largest model file accepted from --model-topic; bigger messages are refused "
                                 "before anything is written.")
    watch: bool = setting("watch-model", False, help="Poll the --model file and swap in a new version (replace it "
                                                     "atomically: write, then rename).")
    watch_interval: float = setting("watch-interval", 2.0, minimum=0.05, help="Seconds between polls of --watch-model.")


@dataclass(frozen=True)
class SourcesSettings:
    """Where measurements come from: URLs, or tables with ``url`` and the protocol's keys (docs/sources.md)."""

    urls: tuple[str | dict[str, Any], ...] = setting("source", (), required=True,
                                                     help="Where measurements come from (repeatable): "
                                                          "{source_schemes}.")
    idle_timeout: float = setting("idle-timeout", 10.0, help="Seconds of websocket silence before a ping; twice "
                                                             "that and it reconnects.")


@dataclass(frozen=True)
class SinksSettings:
    """Where events go, and where undelivered events wait."""

    urls: tuple[str | dict[str, Any], ...] = setting("sink", ("stdout",),
                                                     help="Where alert events go (repeatable): {sink_forms} "
                                                          "(docs/operators.md, \"Where the alerts go\").")
    spool_dir: Path = setting("spool-dir", Path("spool"), path="dir",
                              help="Where undelivered alerts of the MQTT, webhook and Alertmanager sinks wait on "
                                   "disk, one folder per sink (also Sparkplug's bdSeq and, with --model-topic or "
                                   "--trust-key, the model store: SPOOL_DIR/models).")
    spool_max_mb: float = setting("spool-max-mb", 64.0, minimum=0.1,
                                  help="Spool bound; when full the OLDEST undelivered alerts are dropped and counted.")
    spool_memory_mb: float = setting("spool-memory-mb", 4.0, minimum=0,
                                     help="Alerts kept in memory while the spool's disk refuses writes (full, "
                                          "read-only); past it new alerts are dropped and counted in "
                                          "edgewatch_spool_dropped.")


@dataclass(frozen=True)
class StreamsSettings:
    """How many streams are held at once (None: what fits the unit's memory) and for how long (0: forever)."""

    max: int | None = setting("max-streams", minimum=1,
                              help="Streams held at once; messages of further stream ids are bad input, "
                                   "too_many_streams. Default: what fits the unit's MemoryMax=512M with this model "
                                   "(10,000 for S0 at ~10 KiB each; ~2,000 with a likelihood post-process at ~124 "
                                   "KiB each).")
    ttl: float = setting("stream-ttl", DEFAULT_STREAM_TTL, minimum=0,
                         help="Seconds without a message after which a stream's state is dropped (its open episode "
                              "ended first), freeing its place; 0 keeps streams forever.")


@dataclass(frozen=True)
class MqttSettings:
    """Login and TLS for every broker the agent talks to (sinks, sources, the fleet broker)."""

    username: str | None = setting("mqtt-username", envvar="EDGEWATCH_MQTT_USERNAME", help="MQTT login name.")
    password: str | None = setting("mqtt-password", envvar="EDGEWATCH_MQTT_PASSWORD",
                                   help="MQTT password (better from $EDGEWATCH_MQTT_PASSWORD or the config file "
                                        "than the command line).")
    ca_file: str | None = setting("mqtt-ca-file", path="file",
                                  help="CA certificate(s) to verify the broker; turns TLS on.")
    cert_file: str | None = setting("mqtt-cert-file", path="file",
                                    help="Client certificate for brokers that require one; turns TLS on.")
    key_file: str | None = setting("mqtt-key-file", path="file", help="Key of --mqtt-cert-file.")
    tls_insecure: bool = setting("mqtt-tls-insecure", False, help="Do not verify the broker's certificate "
                                                                  "(testing only).")
    keepalive: int | None = setting("mqtt-keepalive", minimum=1, maximum=65535,
                                    help="MQTT keepalive in seconds (default 30): the broker declares the agent "
                                         "offline (last will) 1.5 keepalives after its last packet.")


@dataclass(frozen=True)
class FleetSettings:
    """This agent's name and its side of the fleet topics (docs/fleet.md)."""

    agent_id: str | None = setting("agent-id", help="Name of this agent in alerts and MQTT topics (default: "
                                                    "hostname).")  # None: the host name
    broker: str | None = setting("fleet-broker", metavar="mqtt[s]://HOST:PORT/PREFIX",
                                 help="Where this agent's fleet topics are (retained status, --model-topic, "
                                      "commands, shadow reports): PREFIX/AGENT-ID/... on this broker. Default: the "
                                      "first MQTT sink's URL; without either there is no fleet status.")
    model_topic: bool = setting("model-topic", False,
                                help="Take new model files from the retained MQTT topic PREFIX/AGENT-ID/model of "
                                     "the fleet broker (--fleet-broker, or the first MQTT sink).")
    status_interval: float = setting("status-interval", 10.0, minimum=0.1,
                                     help="Seconds between retained status publishes on PREFIX/AGENT-ID/status "
                                          "(docs/fleet.md).")
    ha_discovery: bool = setting("ha-discovery", False,
                                 help="Announce every stream to Home Assistant on the fleet broker: a problem "
                                      "binary sensor (ON during an alert episode) and an anomaly_score sensor, "
                                      "available while the agent's status is online (docs/agent.md).")
    ha_discovery_prefix: str = setting("ha-discovery-prefix", "homeassistant",
                                       help="Home Assistant's MQTT discovery prefix.")
    shadow_report_interval: float = setting("shadow-report-interval", 60.0, minimum=0.1,
                                            help="Seconds between shadow reports on PREFIX/AGENT-ID/shadow while a "
                                                 "model runs in shadow.")


@dataclass(frozen=True)
class OpsSettings:
    """Running as a service: metrics and health endpoints, logs."""

    metrics: str | None = setting("metrics", metavar="ADDR:PORT",
                                  help="Serve Prometheus /metrics and JSON /livez, /readyz (and /healthz) here, e.g. "
                                       "127.0.0.1:9108.")
    metrics_max_streams: int = setting("metrics-max-streams", DEFAULT_METRICS_MAX_STREAMS, minimum=0,
                                       help="Streams with their own series in /metrics (edgewatch_anomaly_score"
                                            "{{stream}}, ...); the others are summed up as stream=\"_other\" and "
                                            "counted in edgewatch_streams_aggregated.")
    ready_grace: float = setting("ready-grace", DEFAULT_READY_GRACE, minimum=0,
                                 help="Seconds after start in which no message yet reads as 'starting' (then "
                                      "'no_data'); /readyz is 503 either way until the first message.")
    ready_max_silence: float = setting("ready-max-silence", DEFAULT_READY_MAX_SILENCE, minimum=0,
                                       help="/readyz answers 503 'silent' when no message came for this many seconds "
                                            "(0: never).")
    log_json: bool = setting("log-json", False, help="Log one JSON object per line on stderr.")
    log_level: str = setting("log-level", "info", choices=("debug", "info", "warning", "error"),
                             help="Log verbosity (logs go to stderr, alerts to the sinks).")


@dataclass(frozen=True)
class LearnSettings:
    """Per-stream models learnt on the device (``--learn N``; None: off)."""

    rows: int | None = setting("learn", minimum=2, metavar="N",
                               help="Each stream learns its own pca model on its first N messages, then is scored "
                                    "with it (the --model file names the features, the window and, if it is a pca "
                                    "file, its settings).")
    state: Path = setting("learn-state", Path("edgewatch-learned"), path="dir",
                          help="Folder of the learned models and buffers, kept across restarts (no pickle).")


@dataclass(frozen=True)
class UiSettings:
    """The live page (None: not served)."""

    address: str | None = setting("ui", metavar="ADDR:PORT",
                                  help="Serve the live page (signals, green/red score bars, alerts) here, e.g. "
                                       "127.0.0.1:8080.")
    max_clients: int = setting("ui-max-clients", 16, minimum=1,
                               help="Live-page browsers served at once; more get HTTP 503, counted in "
                                    "edgewatch_ui_clients_refused_total.")


@dataclass(frozen=True)
class RunSettings:
    """When the run stops and what it leaves behind."""

    duration: float | None = setting("duration", help="Stop after this many seconds.")
    max_messages: int | None = setting("max-messages", help="Stop after this many messages.")
    summary_json: Path | None = setting("summary-json", path="file",
                                        help="Write the run's counters (messages, bad by reason, windows, events) "
                                             "to this file.")
    record_run: Path | None = setting("record-run", path="file",
                                      help="Record every message, scored window and event to this JSONL file (for "
                                           "edgewatch plot).")
    quiet: bool = setting("quiet", False, short="-q", help="No summary on stderr at the end.")


@dataclass(frozen=True)
class AgentConfig:
    """Every setting of one ``agent run``; built alike from flags and files, printable back as TOML."""

    model: ModelSettings = field(default_factory=ModelSettings)
    sources: SourcesSettings = field(default_factory=SourcesSettings)
    sinks: SinksSettings = field(default_factory=SinksSettings)
    streams: StreamsSettings = field(default_factory=StreamsSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    learn: LearnSettings = field(default_factory=LearnSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    run: RunSettings = field(default_factory=RunSettings)

    @classmethod
    def from_flags(cls, values: Mapping[str, Any], source: str = "flags") -> AgentConfig:
        """Build from settings keyed by flag name (``mqtt-username``); absent ones keep their defaults."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise BadSetting(f"{source}: unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
        sections: dict[str, dict[str, Any]] = {}
        for flag, value in values.items():
            spec = FIELDS[flag]
            sections.setdefault(spec.section, {})[spec.name] = spec.convert(value, source)
        return cls(**{s.name: SECTIONS[s.name](**sections.get(s.name, {})) for s in dataclasses.fields(cls)})

    @classmethod
    def from_toml(cls, path: str | Path) -> AgentConfig:
        """Build from a config file of either form (module docstring); ConfigError says what is wrong."""
        return cls.from_flags(read_config(path), source=str(path))

    @classmethod
    def from_command(cls, ctx: click.Context) -> AgentConfig:
        """The settings of a parsed ``agent run`` (flags, environment and ``--config`` merged by click)."""
        values = {}
        for param in ctx.command.params:
            flag = long_flag(param)
            if flag in FIELDS and param.name in ctx.params:
                values[flag] = ctx.params[param.name]
        return cls.from_flags(values, source="command line")

    def fleet_broker(self) -> str | None:
        """Where the fleet topics are: ``--fleet-broker``, else the first MQTT sink's URL (None: no fleet)."""
        if self.fleet.broker:
            return self.fleet.broker
        urls = (spec if isinstance(spec, str) else str(spec.get("url", "")) for spec in self.sinks.urls)
        return next((url for url in urls if url.split(":", 1)[0].lower() in MQTT_SCHEMES), None)

    def problems(self) -> list[str]:
        """What this combination of settings cannot do, each saying what to do instead; empty when fine."""
        m, f = self.model, self.fleet
        out = []
        if m.sha256 and (m.watch or f.model_topic):
            out.append("--model-sha256 pins the model, so it excludes --watch-model and --model-topic (to control "
                       "which models may replace it, sign them and give --trust-key)")
        if m.allow_unsigned and m.trust_keys:
            out.append("--allow-unsigned-models contradicts --trust-key: with trusted keys every model must be "
                       "signed")
        if f.broker and f.broker.split(":", 1)[0].lower() not in MQTT_SCHEMES:
            out.append(f"--fleet-broker {f.broker!r}: use mqtt://HOST:PORT/PREFIX or mqtts://HOST:PORT/PREFIX")
        if f.model_topic and self.fleet_broker() is None:
            out.append("--model-topic needs the fleet's MQTT broker: give --fleet-broker mqtt://HOST:PORT/PREFIX, "
                       "or an MQTT sink (--sink mqtt://HOST:PORT/PREFIX), whose broker it then is")
        if f.ha_discovery and self.fleet_broker() is None:
            out.append("--ha-discovery needs an MQTT broker: give --fleet-broker mqtt://HOST:PORT/PREFIX, or an "
                       "MQTT sink (--sink mqtt://HOST:PORT/PREFIX), whose broker it then is")
        return out

    def to_flags(self) -> dict[str, Any]:
        """Every setting keyed by flag name (the inverse of :meth:`from_flags`)."""
        return {flag: getattr(getattr(self, spec.section), spec.name) for flag, spec in FIELDS.items()}

    def to_toml(self, secrets: bool = False) -> str:
        """The TOML that reproduces this config (``--config`` reads it back to an equal one).

        Unset settings (None) are left out: they mean "the model file's" or
        "off". Without ``secrets`` the MQTT password is left out and a
        comment says so.
        """
        import tomli_w

        doc: dict[str, dict[str, Any]] = {}
        withheld = []
        in_urls: list[str] = []
        for flag, spec in FIELDS.items():
            value = getattr(getattr(self, spec.section), spec.name)
            if flag in SECRETS and not secrets:
                if value is not None:
                    withheld.append(flag)
                continue
            if value is not None:
                plain = _plain(value)
                if not secrets:
                    plain = _without_passwords(plain, flag, in_urls)
                doc.setdefault(spec.section, {})[spec.key] = plain
        head = ["# edgewatch agent run --config THIS-FILE reproduces the run that printed it."]
        head += [f"# {flag} is not written here: give it in ${SECRETS[flag]} or add it to this file."
                 for flag in withheld]
        head += [f"# the password in a --{flag} URL is not written here: give it in $EDGEWATCH_MQTT_PASSWORD or "
                 "add it to the URL in this file." for flag in dict.fromkeys(in_urls)]
        return "\n".join(head) + "\n\n" + tomli_w.dumps(doc)


def _without_passwords(value: Any, flag: str, found: list[str]) -> Any:
    """``value`` with the password of every URL in it left out (``mqtt://u:pw@h`` -> ``mqtt://u@h``).

    Why: a printed config gets pasted into tickets, and a password written
    into a source or sink URL is as secret as ``--mqtt-password``. ``found``
    gets ``flag`` once per URL whose password was left out.
    """
    if isinstance(value, list):
        return [_without_passwords(v, flag, found) for v in value]
    if isinstance(value, dict):
        return {k: _without_passwords(v, flag, found) if k == "url" else v for k, v in value.items()}
    if not isinstance(value, str) or "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.password is None:
        return value
    found.append(flag)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host))


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(AgentConfig)}  # type: ignore[misc]


@dataclass(frozen=True)
class FieldSpec:
    """One setting: its section, field, TOML key within the section, flag, type, default and metadata."""

    section: str
    name: str
    flag: str
    type: Any
    default: Any
    meta: Mapping[str, Any]

    @property
    def minimum(self) -> float | None:
        return self.meta["minimum"]

    @property
    def maximum(self) -> float | None:
        return self.meta["maximum"]

    @property
    def choices(self) -> tuple[str, ...]:
        return self.meta["choices"]

    @property
    def key(self) -> str:
        return self.name.replace("_", "-")

    @property
    def where(self) -> str:
        return f"[{self.section}] {self.key} (--{self.flag})"

    def convert(self, value: Any, source: str) -> Any:
        """``value`` as this field's type, checked against its range; ConfigError saying which setting."""
        try:
            out = _as(self.type, value)
        except (TypeError, ValueError) as exc:
            raise BadSetting(f"{source}: {self.where}: {exc}") from None
        if out is None:
            return None
        if self.choices and out not in self.choices:
            raise BadSetting(f"{source}: {self.where} is {out!r}; one of {list(self.choices)}")
        if (self.minimum is not None and out < self.minimum) or (self.maximum is not None and out > self.maximum):
            bounds = " and ".join(x for x in (f">= {self.minimum:g}" if self.minimum is not None else "",
                                              f"<= {self.maximum:g}" if self.maximum is not None else "") if x)
            raise BadSetting(f"{source}: {self.where} is {out!r}; it must be {bounds}")
        return out


def _as(kind: Any, value: Any) -> Any:
    """Coerce a flag's or a TOML file's value to the field's annotated type, strictly (no str -> int)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        for a in others:
            try:
                return _as(a, value)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"expected {' or '.join(_name(a) for a in others)}, got {value!r}")
    if origin is tuple:
        items = [value] if isinstance(value, (str, dict, Path)) else list(value)
        return tuple(_as(args[0], v) for v in items)
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if kind is Path:
        if not isinstance(value, (str, Path)):
            raise TypeError(f"expected a path, got {value!r}")
        return Path(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table, got {value!r}")
        return dict(value)
    raise TypeError(f"no conversion to {kind!r}")  # pragma: no cover - a field of a type added without one


def _name(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}.get(
        kind, "a table" if typing.get_origin(kind) is dict else str(kind))


def _plain(value: Any) -> Any:
    """A field's value as TOML-writable data."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _field_specs() -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f.metadata["flag"]] = FieldSpec(section, f.name, f.metadata["flag"], hints[f.name], f.default,
                                                f.metadata)
    return out


FIELDS: dict[str, FieldSpec] = _field_specs()  # by flag name
_BY_KEY: dict[tuple[str, str], str] = {(s.section, s.key): flag for flag, s in FIELDS.items()}


# -- reading files --------------------------------------------------------------------------------


def read_config(path: str | Path) -> dict[str, Any]:
    """The file's settings keyed by flag name (``mqtt-username``), from either form (module docstring)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    return flags_of_document(data, source=str(path))


def flags_of_document(data: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """A parsed TOML document's settings keyed by flag name; unknown keys and settings given twice refused."""
    out: dict[str, Any] = {}
    unknown: list[str] = []

    def put(flag: str | None, value: Any, where: str) -> None:
        if flag is None or flag not in FIELDS:
            unknown.append(where)
        elif flag in out:
            raise BadSetting(f"{source}: --{flag} is set twice (again by {where})")
        else:
            out[flag] = value

    for key, value in data.items():
        name = _norm(key)
        if isinstance(value, dict):
            for sub, v in value.items():
                put(_table_flag(name, _norm(sub)), v, f"[{key}] {sub}")
        else:  # the first form: a flag name (``[[source]]`` tables are the list of the flag ``source``)
            put(name, value, key)
    if unknown:
        raise BadSetting(f"{source}: unknown setting(s) {unknown}; known: {known_keys()}")
    return out


def _table_flag(table: str, key: str) -> str | None:
    """The flag of ``[table] key``: a section's own key, else the first form's ``table-key`` flag."""
    flag = _BY_KEY.get((table, key))
    if flag is not None:
        return flag
    prefixed = f"{table}-{key}"
    return prefixed if prefixed in FIELDS else None


def _norm(key: str) -> str:
    return key.strip().lower().replace("_", "-")


def known_keys() -> list[str]:
    """The keys of the sectioned form, as ``section.key``, for error messages."""
    return [f"{s.section}.{s.key}" for s in FIELDS.values()]


def long_flag(param: click.Parameter) -> str | None:
    """``--mqtt-username`` -> ``mqtt-username``; None for arguments and options with no long form."""
    if not isinstance(param, click.Option):
        return None
    return next((opt[2:] for opt in param.opts if opt.startswith("--")), None)


# -- the command line ----------------------------------------------------------------------------


def to_default_map(command: click.Command, settings: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Map flag-named settings onto the command's parameter names (click's ``default_map``).

    Each setting becomes the default of its own option only, so a flag on
    the command line replaces that one setting and keeps the rest of the file.
    """
    by_flag: dict[str, click.Parameter] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("--"):
                by_flag[opt[2:]] = param
    unknown = sorted(k for k in settings if k not in by_flag or k in ("config", "print-config"))
    if unknown:
        raise BadSetting(f"{source}: unknown setting(s) {unknown}; known: {known_keys()}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        param = by_flag[key]
        if param.multiple and not isinstance(value, list):
            value = [value]
        if key in param.secondary_opts:  # e.g. no-model-topic = true
            value = not value
        out[param.name] = value  # type: ignore[index]
    return out


def load_into_context(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback for an eager ``--config``: the file's settings become the defaults."""
    if value:
        try:
            default_map = to_default_map(ctx.command, read_config(value), source=str(value))
        except BadSetting as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=_param) from exc
        ctx.default_map = {**(ctx.default_map or {}), **default_map}
    return value


class SourceParam(click.ParamType):
    """A --source URL, or from a config file a ``[[source]]`` table (url = ... plus protocol keys)."""

    name = "URL"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, (dict, str)):
            return value
        self.fail(f"{value!r} is neither a URL nor a table with url = ...", param, ctx)


def click_options(**fill: str) -> list[click.Option]:
    """One click option per setting, in the order of the sections: flag, type, range, default, help.

    Why generated: the flags, the config file and ``--print-config`` are the
    same fields, so they cannot drift apart. ``fill`` completes the help
    texts' ``{placeholders}`` (the source schemes and sink forms, which their
    registries know).
    """
    return [_option(spec, fill) for spec in FIELDS.values()]


def _option(spec: FieldSpec, fill: Mapping[str, str]) -> click.Option:
    m = spec.meta
    names = [f"--{spec.flag}"] + ([m["short"]] if m["short"] else [])
    kind = spec.type
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    multiple = typing.get_origin(kind) is tuple
    if multiple:
        kind = typing.get_args(kind)[0]
    extra: dict[str, Any] = {}
    if kind is bool:
        extra["is_flag"] = True
    elif m["path"]:
        extra["type"] = click.Path(dir_okay=m["path"] != "file", file_okay=m["path"] != "dir",
                                   path_type=Path if kind is Path else None)
    elif m["choices"]:
        extra["type"] = click.Choice(list(m["choices"]))
    elif kind in (int, float):
        ranged = click.IntRange if kind is int else click.FloatRange
        extra["type"] = ranged(min=m["minimum"], max=m["maximum"]) if (m["minimum"], m["maximum"]) != (None, None) \
            else kind
    elif typing.get_origin(kind) in (typing.Union, types.UnionType):  # a URL or a table: --source
        extra["type"] = SourceParam()
    default = spec.default
    show = default not in (None, False, ())
    return click.Option(names, default=default, multiple=multiple, required=m["required"], metavar=m["metavar"],
                        envvar=m["envvar"], show_default=show, help=m["help"].format(**fill) if fill else m["help"],
                        **extra)
