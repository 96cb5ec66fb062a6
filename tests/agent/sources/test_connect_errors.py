"""A source that cannot connect says why, at most once a minute (issue 12 item 6)."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from edgewatch.agent.sources.base import Backoff
from edgewatch.agent.sources.websocket import WebSocketSource
from tests.conftest import free_port


def test_websocket_connect_failures_are_logged_with_the_reason_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgewatch.agent.sources")
    src = WebSocketSource(f"ws://127.0.0.1:{free_port()}/", backoff=Backoff(base=0.01, cap=0.05))
    src.start(queue.Queue())
    deadline = time.monotonic() + 10
    while src.failed_connects < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    src.stop()
    src.join(5)
    assert src.failed_connects >= 5
    said = [r for r in caplog.records if r.levelno >= logging.WARNING and "cannot connect" in r.getMessage()]
    assert len(said) == 1 and "ConnectionRefusedError" in said[0].getMessage(), [r.getMessage() for r in said]
