"""``stdout``: one JSON line per event on standard output (logs go to stderr)."""

from __future__ import annotations

import sys
from typing import IO, Any

from edgewatch.agent.sinks.base import SinkContext, SinkSpec
from edgewatch.agent.sinks.registry import no_options, register
from edgewatch.wire.json import dumps


class StdoutSink:
    """One JSON line per event on standard output, flushed at once."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, event: dict[str, Any]) -> None:
        self.stream.write(dumps(event) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


@register("stdout", form="stdout")
def _build(spec: SinkSpec, _context: SinkContext) -> StdoutSink:
    no_options(spec)
    return StdoutSink()
