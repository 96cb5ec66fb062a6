"""``jsonl:FILE``: events appended to a file, one JSON line each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgewatch.agent.sinks.base import SinkContext
from edgewatch.agent.sinks.registry import register
from edgewatch.wire.json import dumps


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


@register("jsonl", form="jsonl:FILE")
def _build(url: str, _context: SinkContext) -> JsonlSink:
    return JsonlSink(url[len("jsonl:"):])
