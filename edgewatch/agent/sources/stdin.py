"""``stdin`` or ``-``: one JSON message per line on standard input."""

from __future__ import annotations

import sys
import time

from edgewatch.agent.sources.base import Item, Kind, Source, SourceContext, SourceSpec
from edgewatch.agent.sources.registry import register


class StdinSource(Source):
    """One message per line on standard input (JSON array or object)."""

    name = "stdin"

    def __init__(self, stream=None) -> None:  # noqa: ANN001
        super().__init__()
        self.stream = stream or sys.stdin

    def run(self) -> None:
        for line in self.stream:
            if self.stopping:
                return
            line = line.strip()
            if line:
                self._put(Item(Kind.RAW, self.name, line, time.time()))


@register("stdin")
def build(spec: SourceSpec, ctx: SourceContext) -> StdinSource:
    spec.refuse_options()
    return StdinSource()
