"""Where alert events go: stdout, a JSONL file, an MQTT broker.

A sink takes plain dict events (see :mod:`edgewatch.agent.events`) and must
not raise for a delivery failure it can recover from: the MQTT sink spools
to disk instead. ``close()`` flushes what it holds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any, Protocol

from edgewatch.wire.json import dumps
from edgewatch.errors import EdgewatchError

__all__ = ["Sink", "StdoutSink", "JsonlSink", "MemorySink", "make_sink"]


class Sink(Protocol):
    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """One JSON line per event on standard output, flushed at once."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, event: dict[str, Any]) -> None:
        self.stream.write(dumps(event) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class MemorySink:
    """Keeps every event in a list: for an agent embedded in Python code, benchmarks and tests."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


class JsonlSink:
    """Appends events to a file; each line is flushed and fsynced, so a crash loses none."""

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self.fsync = fsync

    def send(self, event: dict[str, Any]) -> None:
        self._fh.write(dumps(event) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def make_sink(spec: str, agent_id: str, spool_dir: Path | None = None, connections: Any = None,
              **mqtt_options: Any) -> Sink:
    """Build a sink from its command-line form: ``stdout``, ``jsonl:FILE`` or ``mqtt://host:port/prefix``.

    ``connections`` (:class:`~edgewatch.mqtt.connection.Connections`) lets an MQTT
    sink share its broker connection with MQTT sources and the model receiver.
    """
    if spec in ("stdout", "-"):
        return StdoutSink()
    if spec.startswith("jsonl:"):
        return JsonlSink(spec[len("jsonl:"):])
    if spec.startswith(("mqtt://", "mqtts://")):
        from edgewatch.agent.sinks.mqtt import MqttSink

        return MqttSink.from_url(spec, agent_id=agent_id, spool_dir=spool_dir, connections=connections,
                                 **mqtt_options)
    raise EdgewatchError(f"unknown sink {spec!r}: use stdout, jsonl:FILE or mqtt://host:port/prefix")
