"""Shared fixtures: a real mosquitto broker on a free loopback port.

``mosquitto`` is one broker for the whole session (started on first use).
Tests may ``stop()`` / ``start()`` / ``kill()`` it mid-test; the function
fixture ``broker`` makes sure it is running again when the next test starts.
``make_broker`` starts extra brokers with their own configuration lines
(TLS, passwords). Brokers persist retained messages and sessions, so a
persistent subscriber sees everything across a broker restart.

``make_prometheus`` (a Prometheus scraping given targets with given rule
files, one-second intervals) and ``alertmanager`` run the Debian packages
``prometheus`` and ``prometheus-alertmanager`` on free loopback ports;
each is stopped at the end of its test, and a test is skipped when the
package is missing (``make system-deps`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_RESTART_PORTS_HANDED: set[int] = set()


def restart_safe_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a server a test stops and starts again.

    Why not :func:`free_port`: its ports come from the ephemeral range, and
    while the server is down the kernel may give that port to any outgoing
    connection as its source port, even to a client retrying that very port
    (which then connects to itself); the restart then fails with "Address
    already in use". A port below the range is taken only by an explicit bind.
    Probed from an offset of the process id, so that two test sessions on
    one machine start apart; a port is handed out once per session.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first, span = 10000, max(1000, low - 10000)
    start = (os.getpid() * 7919) % span
    for i in range(span):
        port = first + (start + i) % span
        if port in _RESTART_PORTS_HANDED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _RESTART_PORTS_HANDED.add(port)
        return port
    return free_port()


class Broker:
    """One mosquitto process with a generated config; same port across restarts."""

    def __init__(self, workdir: Path, extra: list[str] | None = None, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or restart_safe_port()  # tests stop and start brokers on their port
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true", "persistence true",
                 f"persistence_location {self.dir}/", f"log_dest file {self.dir / 'mosquitto.log'}",
                 "max_queued_messages 0", "max_inflight_messages 100", "autosave_interval 1"]
        if os.geteuid() == 0:  # mosquitto drops root for user 'mosquitto', who could not write here
            lines.append("user root")
        if extra:
            lines = [ln for ln in lines if not (ln.startswith("allow_anonymous") and any(
                e.startswith("allow_anonymous") for e in extra))] + extra
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        if self.running:
            return self
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()[-500:]}"
                                   f"{self.log()[-1500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(mosquitto: Broker) -> Broker:
    """The session broker, running (a previous test may have stopped it)."""
    return mosquitto.start()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator:
    made: list[Broker] = []

    def make(extra: list[str] | None = None) -> Broker:
        if not os.path.exists(MOSQUITTO):
            pytest.skip("mosquitto is not installed")
        b = Broker(tmp_path / f"broker{len(made)}", extra)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()

@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator:
    """Factory: a tmpfs of ``size`` bytes mounted for this test (root only; skipped with the reason if
    mounting is not permitted), unmounted at the end."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill ({done.stderr.strip() or done.returncode}); "
                        "these tests need root (CI runs them as root)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of ``directory`` with one file, up to ``leave`` bytes (whole 4 KiB pages) free."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


class Collector:
    """Subscribes to ``topic`` (wildcards fine) with a persistent session, so nothing is missed
    while it or the broker is away; call ``close()`` at the end."""

    def __init__(self, host: str, port: int, topic: str, client_id: str, persistent: bool = True,
                 **login: Any) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        if login.get("username"):
            self.client.username_pw_set(login["username"], login.get("password"))
        if login.get("tls"):
            self.client.tls_set(**login["tls"])
        self.topic = topic
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("test subscriber could not connect")

    def _on_connect(self, client, userdata, flags, reason, props) -> None:  # noqa: ANN001
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)  # connected once the broker has it: see _on_subscribe

    def _on_subscribe(self, client, userdata, mid, reasons, props) -> None:  # noqa: ANN001
        # Why the SUBACK: paho writes the SUBSCRIBE only after on_connect returns, so a test that went on at
        # the connect could stop the broker before it had the subscription (the full-disk test does at once):
        # the persistent session then held none, and what the agent delivered before this subscriber came
        # back and subscribed again was lost to it
        if not any(getattr(r, "is_failure", False) for r in reasons):
            self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def events(self, suffix: str = "/alerts") -> list[dict]:
        return [json.loads(p) for p in self.on(suffix)]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector() -> Iterator:
    """Factory for :class:`Collector` subscribers, closed at the end of the test."""
    made: list[Collector] = []

    def make(broker: Broker, topic: str, client_id: str = "test-collector", **kw: Any) -> Collector:
        c = Collector(broker.host, broker.port, topic, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def live_page(agent: Any, address: str = "127.0.0.1:0", options: Any = None) -> Any:
    """The agent's live page served at ``address`` by ``assemble``'s own wiring."""
    from edgewatch.agent.assemble import serve_page

    return serve_page(agent, address, options=options)
# -- Prometheus and Alertmanager (Debian packages prometheus, prometheus-alertmanager) ---------------------------

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _http_json(url: str, body: Any = None, timeout: float = 5.0) -> Any:
    """GET (or POST ``body`` as JSON to) ``url`` and decode the JSON answer."""
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read()
    return json.loads(text) if text else None


class _Server:
    """A server process on a fixed free loopback port, ready when ``/-/ready`` answers 200; same port on restart."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def args(self) -> list[str]:  # pragma: no cover - each server says its own
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> _Server:
        import urllib.request

        if self.proc is not None and self.proc.poll() is None:
            return self
        self._log = open(self.dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready on {self.url} within {timeout}s: {self.log()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: no process outlives its test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        p = self.dir / f"{self.name}.log"
        return p.read_text(errors="replace") if p.exists() else ""


class Prometheus(_Server):
    """Prometheus scraping ``targets`` (``HOST:PORT``) and evaluating ``rule_files``, both every ``interval``."""

    name = "prometheus"

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path] = (), interval: str = "1s") -> None:
        missing = [str(p) for p in rule_files if not Path(p).is_file()]
        if missing:  # Prometheus reads a rule_files glob that matches nothing as no rules, silently
            raise FileNotFoundError(f"rule file(s) not found: {missing}")
        super().__init__(workdir)
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "edgewatch", "static_configs": [{"targets": list(targets)}]}],
        }, indent=1))

    def args(self) -> list[str]:
        return [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}", "--log.level=warn"]

    def api(self, path: str, **params: str) -> Any:
        """``/api/v1/<path>``'s ``data`` (RuntimeError with Prometheus's reason when it is not a success)."""
        from urllib.parse import urlencode

        try:
            got = _http_json(f"{self.url}/api/v1/{path}" + (f"?{urlencode(params)}" if params else ""))
        except Exception as exc:  # an HTTP 400 carries Prometheus's reason in its body
            body = exc.read().decode(errors="replace") if hasattr(exc, "read") else str(exc)
            raise RuntimeError(f"prometheus {path} {params}: {body}") from exc
        if got.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {got}")
        return got["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector."""
        return self.api("query", query=expr)["result"]

    def alerts(self) -> list[dict]:
        """The active (pending or firing) alerts of the rules."""
        return self.api("alerts")["alerts"]


class Alertmanager(_Server):
    """Alertmanager with one route to a receiver that sends nothing, clustering off, quick grouping."""

    name = "alertmanager"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.config = self.dir / "alertmanager.yml"
        self.config.write_text(json.dumps({
            "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "null"}],
        }, indent=1))

    def args(self) -> list[str]:
        return [ALERTMANAGER, f"--config.file={self.config}", f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}", "--cluster.listen-address=", "--log.level=warn"]

    def post(self, alerts: list[dict]) -> None:
        """``POST /api/v2/alerts``, as Prometheus and the agent's sink send them."""
        _http_json(self.url + "/api/v2/alerts", alerts)

    def alerts(self) -> list[dict]:
        """``GET /api/v2/alerts``: the alerts it holds that have not ended."""
        return _http_json(self.url + "/api/v2/alerts")


@pytest.fixture
def make_prometheus(tmp_path: Path) -> Iterator:
    """Factory: ``make_prometheus(targets, rule_files)`` starts a Prometheus; all are stopped after the test."""
    made: list[Prometheus] = []

    def make(targets: list[str], rule_files: list[Path] = (), interval: str = "1s") -> Prometheus:
        if PROMETHEUS is None:
            pytest.skip("prometheus is not installed (apt-get install prometheus; make system-deps)")
        p = Prometheus(tmp_path / f"prometheus{len(made)}", targets, rule_files, interval)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """A running Alertmanager on a free loopback port, stopped after the test (``restart()`` keeps the port)."""
    if ALERTMANAGER is None:
        pytest.skip("alertmanager is not installed (apt-get install prometheus-alertmanager; make system-deps)")
    am = Alertmanager(tmp_path / "alertmanager").start()
    yield am
    am.stop()
