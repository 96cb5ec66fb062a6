"""A sink that keeps every event in a list (no ``--sink`` form: for an agent embedded in Python code)."""

from __future__ import annotations

from typing import Any


class MemorySink:
    """Keeps every event in a list: for an agent embedded in Python code, benchmarks and tests."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass
