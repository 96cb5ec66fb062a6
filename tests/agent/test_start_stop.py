"""A stop that comes while the agent is still starting (``docker stop`` or ``systemctl stop`` right after a start).

The signal handlers used to be installed after the agent was built: a
SIGTERM during the build killed the process with nothing closed (exit -15)
and a SIGINT ended it as a click abort (exit 1). Both now stop it as any
stop does: exit 0, what was opened closed, the spool kept. Real processes,
real sockets on 127.0.0.1: an "MQTT broker" that accepts and never answers
CONNACK, and a webhook token file that is a pipe nobody writes (the build
reads it, as a token on a hung network mount would be read), which holds the
build where the test can signal it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.agent.sinks.spool import Spool
from edgewatch.mqtt.connection import _safe
from tests.conftest import free_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until


class SilentBroker:
    """Accepts TCP connections on 127.0.0.1 and never answers (no CONNACK, no close)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.close()


def _agent(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=60)  # a hang check
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the agent did not stop: {err}")
    return err


def test_default_form_stops_cleanly_while_its_mqtt_source_waits_for_connack(tmp_path: Path,
                                                                             silent: SilentBroker) -> None:
    """The documented form, no optional flags: the stop comes while the source's broker has not answered."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    proc = _agent(["--model", str(model), "--source", f"mqtt://127.0.0.1:{silent.port}/plant/%23"])
    try:
        assert wait_until(lambda: silent.accepted, 60), "the source never connected"
        proc.send_signal(signal.SIGTERM)
        err = _finish(proc)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_the_agent_is_built_exits_0_and_keeps_the_spool(tmp_path: Path, silent: SilentBroker,
                                                                     signum: int) -> None:
    """The build is held reading the webhook's token file (a pipe); the MQTT sink before it has opened its
    spool, which holds 3 alerts of an earlier run. The stop must close that sink and keep the 3 alerts."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    spool_root = tmp_path / "spool"
    mqtt_spool = spool_root / _safe(f"127.0.0.1_{silent.port}_plant")
    earlier = Spool(mqtt_spool)
    for i in range(3):
        earlier.append(f'{{"id": "earlier-{i}", "event": "start"}}'.encode())
    earlier.close()
    token = tmp_path / "token"
    os.mkfifo(token)
    hook = f"http://127.0.0.1:{free_port()}/hook?token_file={token}"
    proc = _agent(["--model", str(model), "--source", f"mqtt://127.0.0.1:{silent.port}/plant/%23",
                   "--sink", f"mqtt://127.0.0.1:{silent.port}/plant", "--sink", hook,
                   "--spool-dir", str(spool_root)])
    writer = None
    try:
        def reader_waits() -> bool:  # the agent has the pipe open for reading: it is in the build, in read()
            nonlocal writer
            try:
                writer = os.open(token, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody reads it yet
                return proc.poll() is not None
            return True

        assert wait_until(reader_waits, 60) and proc.poll() is None, "the agent never read its token file"
        proc.send_signal(signum)
        err = _finish(proc)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        assert "while starting: stopped before reading anything" in err
        kept = Spool(mqtt_spool)
        assert [p for _, p in kept.pending()] == [f'{{"id": "earlier-{i}", "event": "start"}}'.encode()
                                                  for i in range(3)]
        kept.close()
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()


# -- a stop while the program imports, before the command runs -------------------------------------------------
# The moments are import-time markers (``PYTHONPROFILEIMPORTTIME``: a line on stderr as each module's import ends),
# so the signal lands at a known stage of the start, not after a guessed delay: the agent's package, NumPy,
# ONNX Runtime, the agent's loop, its assembly, and the last module imported before the command runs (the import
# statement's modules: importlib.import_module, which loads the command modules, prints no such line).
IMPORT_MOMENTS = ["edgewatch.agent", "numpy", "onnxruntime", "edgewatch.agent.engine", "edgewatch.agent.assemble",
                  "edgewatch.agent.ops.systemd"]
SCRIPT = Path(sys.executable).parent / "edgewatch"  # the console script the README runs


def _started_until(cmd: list[str], marker: str) -> tuple[subprocess.Popen, list[str], threading.Thread]:
    """``cmd`` started with import-time lines on; returns once the import of ``marker`` has ended in it."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == marker:
                seen.set()
        seen.set()  # the process ended first: the caller's assertion says so

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen.wait(60), f"no import of {marker} within 60 s"
    return proc, lines, reader


def _stopped(proc: subprocess.Popen, signum: int, lines: list[str], reader: threading.Thread) -> str:
    assert proc.poll() is None, "".join(lines)[-2000:]
    proc.send_signal(signum)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the agent did not stop: " + "".join(lines)[-2000:])
    reader.join(10)
    return "".join(line for line in lines if not line.startswith("import time:"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("marker", IMPORT_MOMENTS)
def test_default_form_stopped_while_it_imports_exits_0_without_a_traceback(tmp_path: Path, marker: str,
                                                                           signum: int) -> None:
    """``edgewatch agent run --model M --source stdin`` as the README runs it (the console script). Before, a
    SIGTERM here killed it (exit -15) and a SIGINT was a KeyboardInterrupt traceback or click's ``Aborted!``
    (exit 1); measured: every delay under 0.5 s after the start."""
    assert SCRIPT.exists(), f"the console script {SCRIPT} is not installed (pip install -e .)"
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    proc, lines, reader = _started_until([str(SCRIPT), "agent", "run", "--model", str(model), "--source", "stdin"],
                                         marker)
    err = _stopped(proc, signum, lines, reader)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err, err
    assert f"signal {int(signum)}" in err, err  # logged: while starting, or as the stop of a running agent


@pytest.mark.parametrize("marker", ["numpy", "paho.mqtt.client", "edgewatch.agent.ops.systemd"])
def test_with_flags_a_stop_while_it_imports_keeps_the_spool_and_frees_the_ports(tmp_path: Path, marker: str,
                                                                                silent: SilentBroker) -> None:
    """With an MQTT sink whose spool holds 2 alerts of an earlier run, ``--metrics`` and ``--log-json``: the stop
    is logged as JSON, exit 0, the alerts stay in the spool, and nothing is left listening on the metrics port."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    spool_root = tmp_path / "spool"
    mqtt_spool = spool_root / _safe(f"127.0.0.1_{silent.port}_plant")
    earlier = Spool(mqtt_spool)
    for i in range(2):
        earlier.append(f'{{"id": "earlier-{i}", "event": "start"}}'.encode())
    earlier.close()
    port = free_port()
    proc, lines, reader = _started_until(
        [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", "stdin",
         "--sink", f"mqtt://127.0.0.1:{silent.port}/plant", "--spool-dir", str(spool_root),
         "--metrics", f"127.0.0.1:{port}", "--log-json", "--agent-id", "early"], marker)
    err = _stopped(proc, signal.SIGTERM, lines, reader)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    logged = [_json(line) for line in err.splitlines() if line.startswith("{")]  # import lines may interleave
    assert any("signal 15" in entry.get("message", "") for entry in logged), err
    kept = Spool(mqtt_spool)
    assert [p for _, p in kept.pending()] == [f'{{"id": "earlier-{i}", "event": "start"}}'.encode() for i in range(2)]
    kept.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again


def _json(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:  # a log line another thread's import-time line cut into
        return {}


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 1)],
                         ids=["SIGTERM", "SIGINT"])
def test_another_command_stopped_while_it_imports_ends_as_python_ends_it(tmp_path: Path, signum: int,
                                                                         code: int) -> None:
    """The stop held during the imports is handed back to a command without its own handling (``fit``):
    delivered, not swallowed (it would otherwise fit to the end), and ended as before (killed; click's abort)."""
    from tests.plantkit import pump_rows, write_pump_csv

    csv = write_pump_csv(tmp_path / "n.csv", pump_rows(2000, seed=5))
    proc, lines, reader = _started_until([str(SCRIPT), "fit", str(csv), "-o", str(tmp_path / "m.onnx")], "numpy")
    err = _stopped(proc, signum, lines, reader)
    assert proc.returncode == code, err
    assert not (tmp_path / "m.onnx").exists()



@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 1)],
                         ids=["SIGTERM", "SIGINT"])
def test_eval_stopped_while_it_runs_ends_as_python_ends_it(tmp_path: Path, signum: int, code: int) -> None:
    """``eval`` is a plain click group: its commands ran holding the stop signals (only a lazy group naming a
    command handed them back), so a Ctrl-C or ``systemctl stop`` of ``eval nab`` waited for its end, here a read
    of a labels file that is a pipe nobody writes: for ever. Signalled once the command waits in that read."""
    nab = tmp_path / "nab"
    (nab / "data").mkdir(parents=True)
    (nab / "labels").mkdir()
    labels = nab / "labels" / "combined_windows.json"
    os.mkfifo(labels)
    proc = subprocess.Popen([str(SCRIPT), "eval", "nab", "--data", str(nab), "--detector", "null"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    writer = -1

    def reading() -> bool:  # the command has opened the pipe: it runs, and waits in its read
        nonlocal writer
        try:
            writer = os.open(labels, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return proc.poll() is not None
        return True

    try:
        assert wait_until(reading, 60) and proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signum)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("eval nab did not stop: the signal was held")
        assert proc.returncode == code, proc.communicate()[1]
    finally:
        if writer >= 0:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args, held", [(["agent", "run"], True), (["agent", "check", "m.onnx"], False),
                                        (["eval", "nab"], False), (["drift", "--reference", "a.csv"], False),
                                        (["drift", "demo"], False), (["fit", "n.csv"], False)])
def test_only_agent_run_keeps_the_held_stop_signals(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                    held: bool) -> None:
    """The commands are resolved as the program resolves them, level by level: only ``agent run`` takes the
    signals held during the imports; every other command has Python's handling back before it runs (``drift``
    with options only runs the group itself, so it is handed back when the group is named)."""
    import click

    from edgewatch.cli import main
    from edgewatch.commands import groups
    from edgewatch.commands.early_signals import STOPS, EarlySignals

    early = EarlySignals()
    monkeypatch.setattr(groups, "EARLY", early)
    before = {s: signal.getsignal(s) for s in STOPS}
    try:
        early.install()
        group: click.Command = main
        rest = list(args)
        while isinstance(group, click.Group) and rest and not rest[0].startswith("-"):
            ctx = click.Context(group)
            _, group, rest = group.resolve_command(ctx, rest)
        assert early.holding is held
    finally:
        early.release()
        for s, handler in before.items():
            signal.signal(s, handler)

# -- SIGHUP: the terminal the agent runs in was closed ---------------------------------------------------------

def _hup_agent(tmp_path: Path, ignore_hup: bool) -> tuple[subprocess.Popen, Path]:
    """The README's form on stdin, plus a JSONL sink to read the events from; an episode opened before return."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    alerts = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([str(SCRIPT), "agent", "run", "--model", str(model), "--source", "stdin",
                             "--sink", "stdout", "--sink", f"jsonl:{alerts}", "--summary-json",
                             str(tmp_path / "summary.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if ignore_hup else None)
    for _ in range(20):
        proc.stdin.write(json.dumps({"values": [3.0] * 4, "stream": "press-1"}) + "\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    assert wait_until(lambda: alerts.exists() and '"start"' in alerts.read_text(), 60), "no episode opened"
    return proc, alerts


def test_sighup_stops_the_agent_cleanly_and_ends_the_open_episode(tmp_path: Path) -> None:
    """Before, SIGHUP killed it (exit -1) with the episode left open for ever and no summary."""
    proc, alerts = _hup_agent(tmp_path, ignore_hup=False)
    proc.send_signal(signal.SIGHUP)
    err = _finish(proc)
    assert proc.returncode == 0, err
    assert "signal 1: stopping" in err and "Traceback" not in err, err
    events = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "end"], events
    assert json.loads((tmp_path / "summary.json").read_text())["messages"] == 20


def test_sighup_ignored_from_the_start_stays_ignored_as_under_nohup(tmp_path: Path) -> None:
    proc, alerts = _hup_agent(tmp_path, ignore_hup=True)
    proc.send_signal(signal.SIGHUP)
    for _ in range(10):  # more input after the SIGHUP, then the end of input: it must all be read
        proc.stdin.write(json.dumps({"values": [0.5] * 4, "stream": "press-1"}) + "\n")  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    proc.stdin = None  # closed: communicate() must not flush it
    err = _finish(proc)
    assert proc.returncode == 0, err
    assert json.loads((tmp_path / "summary.json").read_text())["messages"] == 30, err
    assert "signal 1" not in err


def test_a_stop_the_build_swallowed_is_raised_again_before_the_agent_runs() -> None:
    """The stop is raised into the build wherever it is; code there may swallow it (an exception in a
    ``__del__`` is only printed, some libraries catch BaseException). Then the build went on and the agent ran,
    its stop lost: now attaching the agent raises it again (the command closes the assembly and exits 0)."""
    from edgewatch.commands.agent_run import StopSignals, StoppedWhileStarting
    from edgewatch.commands.early_signals import STOPS

    before = {s: signal.getsignal(s) for s in STOPS}
    try:
        signals = StopSignals()
        try:
            signals(signal.SIGTERM, None)
        except StoppedWhileStarting:
            pass  # swallowed, as a __del__ would
        with pytest.raises(StoppedWhileStarting) as again:
            signals.attach(object())
        assert again.value.signum == signal.SIGTERM and signals.agent is None
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
