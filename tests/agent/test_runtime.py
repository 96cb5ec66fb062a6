"""One model runtime: everything a file means at run time is built and checked in one place.

Each case of issue 12 item 2 is reproduced here: cards that cannot run are
refused at start (exit 3), on a watched file and over MQTT (model_refused
event and metric, the running model keeps scoring); CLI values that
contradict the file are usage errors (exit 2); odd thresholds load with a
warning; Agent.run closes its sinks however it ends; eval uses the runtime.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from click.testing import CliRunner

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.lifecycle.accept import Candidate, Gate, Origin, accept
from edgewatch.agent.model import ScoringModel, file_sha256
from edgewatch.agent.runtime import ModelRuntime, Overrides, load_runtime
from edgewatch.agent.sources import Item, Kind, ReplaySource, Source
from edgewatch.agent.lifecycle.file_watch import ModelFileWatcher
from edgewatch.cli import main
from edgewatch.contract import DriftReference, Quantization
from edgewatch.errors import BadModelFile, BadOverride
from edgewatch.mqtt.payloads import install_message
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FEATURES = ["a", "b", "c", "d"]


def _with_postprocess(path: Path, spec: dict) -> Path:
    props = make_card(window=5).to_props()
    props["edgewatch.postprocess"] = json.dumps(spec)
    return write_model(path, props=props)


def _short_drift_reference(path: Path) -> Path:
    ref = DriftReference(n=100, quantiles=[[0.0, 0.5, 1.0]] * 3, mean=[0.5] * 3, std=[0.3] * 3)
    return write_model(path, make_card(window=5, drift_reference=ref))


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    return {
        "unknown parameter": _with_postprocess(d / "shrot.onnx", {"kind": "likelihood", "params": {"shrot": 5}}),
        "unknown kind": _with_postprocess(d / "kalman.onnx", {"kind": "kalman", "params": {}}),
        "not a number": _with_postprocess(d / "nan.onnx", {"kind": "likelihood", "params": {"short": "ten"}}),
        "drift reference": _short_drift_reference(d / "drift.onnx"),
    }


REASONS = {"unknown parameter": "unknown parameters ['shrot']", "unknown kind": "unknown post-process kind 'kalman'",
           "not a number": "not finite numbers", "drift reference": "3 quantile rows for 4 features"}


@pytest.mark.parametrize("case", sorted(REASONS))
def test_card_that_cannot_run_is_refused_at_start_with_exit_3(bad_models, case: str, tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match=REASONS[case].replace("[", r"\[").replace("]", r"\]")):
        load_runtime(bad_models[case])
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 10)
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(bad_models[case]), "--source", f"replay:{csv}",
                                    "-q"])
    assert res.exit_code == 3, res.output
    assert REASONS[case] in res.output and "Traceback" not in res.output
    checked = CliRunner().invoke(main, ["agent", "check", str(bad_models[case])])  # says the same before a deploy
    assert checked.exit_code == 3 and REASONS[case] in checked.output, checked.output
    from edgewatch.commands.model_fleet import _check_model  # what 'edgewatch model publish' checks first

    with pytest.raises(BadModelFile, match=REASONS[case].replace("[", r"\[").replace("]", r"\]")):
        _check_model(bad_models[case], bad_models[case].read_bytes(), allow_unsigned=True, trust_keys=())


def test_contradicting_flags_are_usage_errors(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5, k=2, n=2))
    with pytest.raises(BadOverride, match="--k 3 contradicts the model file's n = 2"):
        load_runtime(model, Overrides(k=3))
    with pytest.raises(BadOverride, match="not a finite number"):
        load_runtime(model, Overrides(threshold=float("nan")))
    assert load_runtime(model, Overrides(k=3, n=4)).k == 3  # with --n too it is fine
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c,d\n0.5,0.5,0.5,0.5\n")
    for flags, said in ((["--k", "3"], "--k 3 contradicts the model file's n = 2: an episode needs 1 <= k <= n "
                                       "(give --n too)"),
                        (["--n", "1"], "--n 1 contradicts the model file's k = 2"),
                        (["--k", "3", "--n", "2"], "contradict each other"),
                        (["--n", "63"], "at most 62"),
                        (["--threshold", "nan"], "threshold nan is not a finite number"),
                        (["--threshold", "inf"], "threshold inf is not a finite number")):
        res = CliRunner().invoke(main, ["agent", "run", "--model", str(model), "--source", f"replay:{csv}",
                                        "-q", *flags])
        assert res.exit_code == 2, (flags, res.output)
        assert said in res.output and "Traceback" not in res.output, res.output


def test_thresholds_far_from_the_cards_statistics_load_with_a_warning(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgewatch.agent.runtime")
    for threshold, said in ((1e30, "far above every score"), (-1.0, "below the median score on normal data")):
        path = write_model(tmp_path / f"t{threshold}.onnx", make_card(window=5, threshold=threshold))
        rt = load_runtime(path)
        assert rt.threshold == threshold and len(rt.warnings) == 1 and said in rt.warnings[0]
        assert any(said in r.getMessage() for r in caplog.records)
    assert load_runtime(write_model(tmp_path / "ok.onnx", make_card(window=5, threshold=0.25))).warnings == []



def test_a_dynamic_int8_file_loads_with_a_warning_that_its_scores_depend_on_the_batch(tmp_path: Path) -> None:
    card = make_card(window=5, quantization=Quantization.DYNAMIC_INT8)
    rt = load_runtime(write_model(tmp_path / "dyn.onnx", card))
    assert len(rt.warnings) == 1 and "depends on the other windows of its batch" in rt.warnings[0]
    for q in (Quantization.NONE, Quantization.UNROLLED_INT8, Quantization.STATIC_QDQ_INT8):
        assert load_runtime(write_model(tmp_path / f"{q.value}.onnx", make_card(window=5, quantization=q))).warnings == []

class Recorder:
    """A sink that keeps events in memory and remembers being closed."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.closed = 0

    def send(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events]


def test_watched_file_that_cannot_run_is_refused_and_the_old_model_keeps_scoring(bad_models,
                                                                                 tmp_path: Path) -> None:
    live = write_model(tmp_path / "live.onnx", make_card(window=5, threshold=0.5))
    first = file_sha256(live)
    sink = Recorder()
    agent = Agent(ScoringModel(live), [sink], AgentOptions(stride=1, drift_every=0, k=3))
    csv = tmp_path / "loop.csv"
    csv.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.6\n" * 50 + "3,3,3,3\n" * 10 + "0.5,0.5,0.5,0.6\n" * 50)
    src = ReplaySource(csv, FEATURES, rate=3000, loop=True)
    agent.add_source(src)
    watcher = ModelFileWatcher(agent, live, Gate.for_agent(agent), interval=0.05)
    runner = threading.Thread(target=agent.run)
    runner.start()
    n_by_k = write_model(tmp_path / "n2.onnx", make_card(window=5, k=2, n=2))  # --k 3 > its n
    try:
        for bad in [*bad_models.values(), n_by_k]:
            tmp = live.with_name("live.new")
            tmp.write_bytes(bad.read_bytes())
            tmp.replace(live)
            before = watcher.refused
            watcher.check()
            assert watcher.refused == before + 1, bad.name
        windows = agent.summary.windows
        assert wait_until(lambda: agent.summary.windows > windows + 200)  # still scoring
        assert wait_until(lambda: "start" in sink.kinds())
    finally:
        watcher.close()
        agent.request_stop()
        runner.join(20)
    assert not runner.is_alive() and agent.model.sha256 == first
    refused = [e for e in sink.events if e["event"] == "model_refused"]
    assert len(refused) == 5 and all(e["running_sha256"] == first and e["origin"] == "file" for e in refused)
    assert "contradicts the model file's n = 2" in refused[-1]["reason"]
    assert agent.metrics.model_swaps.labels("refused")._value.get() == 5
    assert sink.kinds().count("start") == sink.kinds().count("end") and sink.closed == 1


def test_retained_bad_model_on_the_broker_does_not_kill_a_restart(bad_models, broker, tmp_path: Path) -> None:
    import signal

    live = write_model(tmp_path / "live.onnx", make_card(window=5, threshold=0.5))
    topic = "rt/r1/model"
    publish.single(topic, install_message(bad_models["unknown parameter"]).to_payload(), qos=1, retain=True,
                   hostname=broker.host, port=broker.port)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 300)
    # 300 rows at 60 Hz: five seconds for the retained message to arrive, also on a loaded machine
    try:
        for run in range(2):  # a restart meets the same retained message
            out = tmp_path / f"events{run}.jsonl"
            summary = tmp_path / f"s{run}.json"
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(live),
                 "--source", f"replay:{csv}?rate=300&loop=1", "--sink", f"mqtt://{broker.host}:{broker.port}/rt",
                 "--sink", f"jsonl:{out}", "--agent-id", "r1", "--model-topic", "--allow-unsigned-models",
                 "--spool-dir", str(tmp_path / "spool"), "--summary-json", str(summary), "-q"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:  # the agent keeps running after the refusal; then it is stopped as a service would be
                assert wait_until(lambda: out.exists() and "model_refused" in out.read_text()), "nothing refused"
                assert proc.poll() is None, "the agent died"
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0, proc.stderr.read()[-2000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            kinds = [json.loads(line)["event"] for line in out.read_text().splitlines()]
            assert kinds == ["model_refused"], kinds
            assert json.loads(summary.read_text())["messages"] > 0
    finally:
        publish.single(topic, b"", qos=1, retain=True, hostname=broker.host, port=broker.port)
    assert "unknown parameters ['shrot']" in out.read_text()


class Boom:
    """An exit by exception from inside the loop: a KeyboardInterrupt (Python's SIGINT handler in a program
    that embeds the agent). An observer's own Exception no longer ends the run (tests/agent/test_no_crash.py)."""

    def on_batch(self, view) -> None:  # noqa: ANN001
        if any(s.over for s in view.scored):
            raise KeyboardInterrupt("interrupted in the loop")

    def on_event(self, event: dict) -> None:
        pass


def test_run_closes_sinks_and_ends_episodes_on_every_exit_path(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=2, threshold=0.5, k=1, n=1))
    sink = Recorder()
    agent = Agent(ScoringModel(model), [sink], AgentOptions(drift_every=0))
    observer = Boom()
    agent.subscribe(observer.on_event, observer.on_batch)
    agent.queue.put(Item(Kind.RAW, "s", "[3, 3, 3, 3]", time.time()))
    agent.queue.put(Item(Kind.RAW, "s", "[3, 3, 3, 3]", time.time()))

    class Quiet:  # a source that only waits to be stopped
        name = "quiet"
        _thread = None

        def start(self, q) -> None:  # noqa: ANN001
            pass

        def stop(self) -> None:
            pass

        def join(self, timeout: float | None = None) -> None:
            pass

    agent.add_source(Quiet())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt, match="interrupted in the loop"):
        agent.run(duration=5)
    assert sink.closed == 1 and sink.kinds() == ["start", "end"]
    assert sink.events[1]["reason"] == "agent stopped"


def test_eval_model_detector_runs_the_agents_runtime(bad_models, tmp_path: Path) -> None:
    from edgewatch.eval.runner import ModelDetector

    model = write_model(tmp_path / "one.onnx", make_card(window=4, features=["value"]))
    det = ModelDetector(model, stride=1)
    assert isinstance(det.runtime, ModelRuntime) and det.runtime.stride == 1
    import numpy as np

    x = np.r_[np.full(50, 0.5), np.full(5, 3.0), np.full(50, 0.5)]
    assert np.array_equal(det.score_series(x), det.score_series(x))  # fresh state per series
    with pytest.raises(BadModelFile, match="unknown parameters"):
        ModelDetector(bad_models["unknown parameter"])


def test_a_stored_live_model_that_cannot_run_falls_back_to_the_model_flag(bad_models, broker,
                                                                          tmp_path: Path) -> None:
    from edgewatch.agent.lifecycle.store import ModelStore, StoredModel

    live = write_model(tmp_path / "live.onnx", make_card(window=5, threshold=0.5))
    bad = bad_models["drift reference"]
    store = ModelStore(tmp_path / "spool" / "models")
    sha = file_sha256(bad)
    store.slots["live"] = StoredModel(sha, str(store.put(sha, bad.read_bytes())), note="from an older agent")
    store.save()
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 50)
    out = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(live), "--source", f"replay:{csv}",
         "--sink", f"mqtt://{broker.host}:{broker.port}/st", "--sink", f"jsonl:{out}", "--agent-id", "st1",
         "--model-topic", "--allow-unsigned-models", "--spool-dir", str(tmp_path / "spool"), "-q"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["event"], e["origin"], e["sha256"]) for e in events] == [("model_refused", "store", sha)]
    assert "3 quantile rows for 4 features" in events[0]["reason"]
    assert events[0]["running_sha256"] == file_sha256(live)


def test_a_swapped_in_model_carries_its_threshold_warning_in_the_model_event(tmp_path: Path) -> None:
    live = write_model(tmp_path / "live.onnx", make_card(window=5, threshold=0.25))
    odd = write_model(tmp_path / "odd.onnx", make_card(window=5, threshold=1e30))
    sink = Recorder()
    agent = Agent(ScoringModel(live), [sink], AgentOptions(drift_every=0))
    accept(agent, Candidate(odd, Origin.FILE), Gate.for_agent(agent))
    agent.process([Item(Kind.RAW, "s", "[0.5, 0.5, 0.5, 0.5]", time.time())])
    event = next(e for e in sink.events if e["event"] == "model_swapped")
    assert event["sha256"] == file_sha256(odd) and "far above every score" in event["warnings"][0]
    assert agent.threshold == 1e30


def test_sigterm_stops_an_agent_whose_stdin_stays_open(tmp_path: Path) -> None:
    """A service's stop while the process feeding stdin is still there (the README's stdin form, no
    options): the stdin reader is blocked in a read no stop can interrupt, and the agent used to wait for
    it forever. The reader now waits for data a quarter second at a time and sees the stop; the agent
    closes the open episode and exits cleanly."""
    import signal

    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5))
    proc = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                             "--source", "stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        proc.stdin.write("[3, 3, 3, 3]\n" * 20)  # every window far over the threshold: an episode opens
        proc.stdin.flush()
        assert wait_until(lambda: any('"start"' in line for line in lines), 60), "no episode opened"
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)  # a hang check: our end of the stdin pipe is still open
        except subprocess.TimeoutExpired:
            pytest.fail("the agent did not stop on SIGTERM while its stdin stayed open")
        reader.join(10)
        err = proc.stderr.read()
        assert proc.returncode == 0, err
        assert "did not end within" not in err  # stdin ended by itself, not by the loop's grace
        ends = [json.loads(line) for line in lines if '"end"' in line]
        assert len(ends) == 1 and ends[0]["reason"] == "agent stopped", lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class _StuckSource(Source):
    """A source whose reader never returns, whatever the stop says (a read nothing can interrupt)."""

    name = "stuck"

    def run(self) -> None:
        threading.Event().wait()


def test_a_stop_does_not_wait_for_ever_for_a_source_stuck_in_a_read(tmp_path: Path) -> None:
    """The loop's grace: a source that cannot see the stop is left behind (its thread is a daemon), the
    others' messages are scored, the log names it, and the run ends."""
    from edgewatch.agent.engine import SOURCE_STOP_GRACE

    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 50)
    agent = Agent(ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5))), [],
                  AgentOptions(drift_every=0))
    agent.add_source(ReplaySource(csv, ["a", "b", "c", "d"]))
    agent.add_source(_StuckSource())
    done: list = []
    runner = threading.Thread(target=lambda: done.append(agent.run()), daemon=True)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("edgewatch.agent").addHandler(handler)
    try:
        runner.start()
        assert wait_until(lambda: agent.summary.messages == 50, 60)
        agent.request_stop()
        runner.join(SOURCE_STOP_GRACE + 60)  # a hang check
        assert done, "the run never ended"
        assert done[0].ended_by == "stop" and done[0].messages == 50
        assert any("source(s) stuck did not end within" in r for r in records), records
    finally:
        logging.getLogger("edgewatch.agent").removeHandler(handler)
