"""A local HTTP receiver for the webhook and Alertmanager sink tests, and an agent fed through its stdin."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import free_port
from tests.waiting import wait_until

# one scripted answer: an HTTP status, or ("sleep", seconds) to answer 200 only after the client gave up
Script = Callable[[int, dict], "int | tuple[str, float]"]


class Receiver:
    """Records every POST (path, headers, JSON body, the status it answered); ``script(n, body)`` answers."""

    def __init__(self, script: Script | None = None, port: int | None = None, pki: Path | None = None) -> None:
        self.port = port or free_port()
        self.pki = pki  # serve HTTPS with pki/server.pem (tests/agent/sinks/test_mqtt_tls.py's pki fixture)
        self.script = script or (lambda n, body: 200)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    n = len(receiver.requests)
                    record = {"path": self.path, "headers": dict(self.headers), "body": body, "status": None}
                    receiver.requests.append(record)
                answer = receiver.script(n, body)
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                record["status"] = answer
                try:
                    self.send_response(answer)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the client gave up (a timeout)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.pki is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.pki / "server.pem", self.pki / "server.key")
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def accepted(self) -> list[dict]:
        """Bodies answered 2xx, in the order they came."""
        with self._lock:
            return [r["body"] for r in self.requests if r["status"] is not None and 200 <= r["status"] < 300]


NORMAL, FAULT = [0.5, 0.5, 0.5, 0.5], [3.0, 3.0, 3.0, 3.0]


class FedAgent:
    """``edgewatch agent run --source stdin`` as a process; rows are written when the test says."""

    def __init__(self, model: Path, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                                      "--source", "stdin", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd)
        self.t = time.time() - 600  # measurement times, one second apart, ending about now

    def rows(self, values: list[float], count: int, stream: str = "pump-1") -> None:
        for _ in range(count):
            self.t += 1.0
            self.proc.stdin.write((json.dumps({"values": values, "stream": stream, "ts": self.t}) + "\n").encode())
        self.proc.stdin.flush()

    def while_sending(self, stream: str, predicate: Callable[[], object], timeout: float = 30.0) -> bool:
        """Wait for ``predicate`` while ``stream`` keeps sending a normal row every 0.1 s, so that of the
        streams only the silent ones pass their ``--stream-ttl``."""
        def step() -> object:
            self.rows(NORMAL, 1, stream=stream)
            return predicate()
        return wait_until(step, timeout, poll=0.1)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """End of input: the agent closes its episodes, drains its sinks and exits."""
        try:  # communicate() closes stdin: the end of input
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
