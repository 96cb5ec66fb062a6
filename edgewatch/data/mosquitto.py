"""A throwaway mosquitto broker on a free loopback port, for ``edgewatch demo --protocol mqtt``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgewatch.errors import EdgewatchError


class LocalBroker:
    """``mosquitto -c`` with a generated config in a temporary folder; ``stop()`` ends it and removes the folder."""

    def __init__(self) -> None:
        self.binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto")
                                                    else None)
        if self.binary is None:
            raise EdgewatchError("the MQTT demo needs a broker: install mosquitto (apt-get install mosquitto) "
                                 "or pass --broker mqtt://HOST:PORT")
        self.dir = Path(tempfile.mkdtemp(prefix="edgewatch-mosquitto-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 0",
                 f"log_dest file {self.dir / 'mosquitto.log'}"]
        if os.geteuid() == 0:
            lines.append("user root")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.dir / "mosquitto.conf")],  # type: ignore[list-item]
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EdgewatchError(f"mosquitto exited at start: {self.proc.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EdgewatchError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
