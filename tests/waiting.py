"""Waiting in tests for something another thread or process does (an agent, a broker, a server)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, poll: float = 0.02) -> bool:
    """True as soon as ``predicate()`` is; after ``timeout`` seconds, its last answer.

    The timeout only bounds how long a failing test waits: a passing one
    returns at the first poll that sees the condition, so keep it generous
    on this loaded, shared machine.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())
