"""sd_notify and the watchdog: systemd learns when the agent is ready and restarts a wedged loop."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent

log = logging.getLogger(__name__)


class SystemdNotifier:
    """sd_notify over the NOTIFY_SOCKET datagram socket, without libsystemd.

    With ``WatchdogSec=`` in the unit, systemd sets WATCHDOG_USEC; we then send
    ``WATCHDOG=1`` at half that period, but only while the agent loop turns
    (its heartbeat is recent), so a wedged loop gets restarted.
    """

    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, state: str) -> bool:
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(state.encode(), addr)
            return True
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", state, exc)
            return False

    def start_watchdog(self, agent: Agent) -> None:
        if not (self.address and self.watchdog_s):
            return
        period = self.watchdog_s / 2

        def beat() -> None:
            while not self._stop.wait(period):
                if time.monotonic() - agent.heartbeat < self.watchdog_s:
                    self.notify("WATCHDOG=1")
                else:
                    log.error("agent loop has not turned for %.1fs; not feeding the watchdog",
                              time.monotonic() - agent.heartbeat)

        self._thread = threading.Thread(target=beat, name="sd-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
