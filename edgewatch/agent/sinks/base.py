"""What a sink is, and what building one may use from the agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from edgewatch.agent.sinks.spool import DEFAULT_MAX_BYTES, DEFAULT_MEMORY_BYTES
from edgewatch.errors import EdgewatchError


class SinkConfigError(EdgewatchError):
    """A ``--sink`` that names no known sink, or that its sink cannot use (the message says which)."""


class Sink(Protocol):
    """Takes the agent's events (plain dicts, :mod:`edgewatch.agent.events`) in its loop thread.

    ``send`` must not raise for a delivery failure it can recover from (the
    MQTT sink spools to disk; a JSONL file on a full disk counts what it could
    not keep): the agent logs what a sink raises, with its traceback, as a bug.
    ``close`` flushes what it holds.
    """

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass
class SinkContext:
    """What sinks need from the agent to be built: its id, the spool's place and bounds, shared connections."""

    agent_id: str = "edgewatch"
    spool_dir: Path = Path("spool")
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    spool_memory_bytes: int = DEFAULT_MEMORY_BYTES
    metrics: Any = None  # AgentMetrics
    mqtt_options: dict[str, Any] = field(default_factory=dict)  # --mqtt-* flags (login, TLS)
    connections: Any = None  # edgewatch.mqtt.connection.Connections, shared with MQTT sources and the fleet
    # False: an MQTT sink leaves its connection unstarted; the assembly starts it once the fleet member has set
    # the status it shares, so the broker's first retained status is the full one, not a minimal one
    connect: bool = True


@dataclass(frozen=True)
class SinkSpec:
    """One ``--sink``: its URL and, from a TOML ``[[sink]]`` table, the keys beside ``url``."""

    url: str
    scheme: str
    options: dict[str, Any] = field(default_factory=dict)

    def settings(self, repeatable: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The URL's query keys, then the table's (dashes as underscores; the table wins).

        A key in ``repeatable`` (``header``) is a list of every value given in
        the query (``?header=A:1&header=B:2``); the others keep the last.
        """
        merged: dict[str, Any] = {}
        for key, value in parse_qsl(urlsplit(self.url).query, keep_blank_values=True):
            key = key.replace("-", "_")
            if key in repeatable:
                merged.setdefault(key, []).append(value)
            else:
                merged[key] = value
        merged.update({k.replace("-", "_"): v for k, v in self.options.items()})
        return merged
