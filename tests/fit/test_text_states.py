"""Text state columns (``Pump State`` = ``Run``/``Stop``) from ``edgewatch fit`` to a running agent.

The run/stop pump of tests/fit/test_plant_kinds.py (``_pump_motor``, same seeds) written three ways: with its
run signal as text, as a 0/1 number, and without it. Fitted in the default form; the agent runs as the README
runs it, torch blocked (``edgewatch agent run --source replay:TODAY``, stdin carrying ``"Pump State": "Run"``,
and a mosquitto with one topic per sensor).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import load_runtime
from edgewatch.contract import PREFIX, ModelCard
from edgewatch.errors import BadModelFile
from edgewatch.fit.pipeline import fit_model
from edgewatch.wire.onnx_read import ModelBytes
from tests.agent.test_without_torch import BLOCKER
from tests.fit.test_fit_drift import run
from tests.fit.test_plant_kinds import _episodes, _pump_motor, _write

STATE = "Pump State"
STATES_KEY = PREFIX + "states"


def _pump_file(path: Path, cols: dict[str, np.ndarray], state: str | None, fault: tuple[int, int] | None = None
               ) -> Path:
    """The pump's file with its run signal as ``state`` ("text": Run/Stop, "number": 1/0, None: left out);
    rows ``fault`` say ``Fault`` (a state the normal data never held)."""
    running = cols["amps"] > 20
    path = _write(path, cols, 1.0)
    if state is None:
        return path
    lines = path.read_text().splitlines()
    lines[0] += f",{STATE}"
    for i in range(1, len(lines)):
        text = ("Run" if running[i - 1] else "Stop") if state == "text" else ("1" if running[i - 1] else "0")
        if fault is not None and fault[0] <= i - 1 < fault[1]:
            text = "Fault"
        lines[i] += "," + text
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same normal data fitted with the state as text, as a number, and without it (each file named n.csv)."""
    out = {}
    for state in ("text", "number", None):
        d = tmp_path_factory.mktemp(f"state-{state}")
        normal = _pump_file(d / "n.csv", _pump_motor(np.random.default_rng(11), 4800), state)
        out[state] = (d, fit_model([normal], d / "m.onnx"))
    return out


def test_the_report_names_the_state_with_its_codes_and_the_card_carries_them(fitted: dict) -> None:
    d, report = fitted["text"]
    lines = report.lines()
    line = next(x for x in lines if STATE in x and x.startswith("  state"))
    assert line.startswith(f"  state     {STATE:24s} Run=1, Stop=0 (text in the file"), line
    assert not any("text, not a number" in x for x in lines)
    assert ScoringModel(d / "m.onnx").card.states == {STATE: {"Run": 1, "Stop": 0}}
    assert report.recipe.features == ["vib", "amps", STATE]


def test_the_operating_points_name_a_text_state_by_its_text_not_its_code(fitted: dict) -> None:
    """Before, the warning said ``rows 0-4662 (86% of the windows): Pump State 0.9953`` (an air handler's:
    ``AHU1 Occupancy 0.9982``): the reader had to know the codes, and the row span read as one stretch of rows
    of a point the pump comes back to all through the file."""
    lines = fitted["text"][1].lines()
    warning = next(x for x in lines if "distinct operating points" in x)
    assert f"{STATE} Run," in warning and f"{STATE} Stop," in warning, warning
    assert "86% of the windows, seen from row 0 to row 4662" in warning, warning
    blind = [x for x in lines if x.startswith("  - in point")]
    assert len(blind) == 2 and f"{STATE} Run)" in blind[0] and f"{STATE} Stop)" in blind[1], blind
    # a text state changes by a switch only: no "sustained change of Pump State smaller than 8.44e-07"
    assert not any(STATE in x.split("smaller than:")[1] for x in blind), blind
    number = next(x for x in fitted["number"][1].lines() if "distinct operating points" in x)
    assert f"{STATE} 0.99" in number, number  # a 0/1 column has no texts: its mean as before


def test_the_text_state_gives_the_file_of_the_0_1_column_plus_its_codes(fitted: dict) -> None:
    """The model sees the state as a 0/1 run signal: the same graph, card and report figures; the file only adds
    the codes (built into the card by the writer, which validates it once: the graph byte for byte)."""
    text = ModelBytes.parse((fitted["text"][0] / "m.onnx").read_bytes())
    number = ModelBytes.parse((fitted["number"][0] / "m.onnx").read_bytes())
    assert text.body() == number.body()
    props = {k: v for k, v, _ in number.metadata}
    assert {k: v for k, v, _ in text.metadata} == {
        **props, STATES_KEY: json.dumps({STATE: {"Run": 1, "Stop": 0}}, separators=(",", ":"))}
    assert ScoringModel(fitted["number"][0] / "m.onnx").card.states is None


def test_a_30_percent_rise_of_the_running_vibration_is_caught_with_the_text_state_as_with_the_number(
        fitted: dict) -> None:
    """Measured (seeds 11/111 and 11/112): each form keeps a pca per operating point (run, stop), no episode on a
    normal day, the +30 % vibration while running opened 2 s after its onset by each of the three."""
    for state, (d, report) in fitted.items():
        assert report.recipe.why["points"].startswith("a pca per operating point (2)"), (state, report.recipe.why)
        for seed in (111, 112):
            day = _pump_motor(np.random.default_rng(seed), 7200)
            risen = _pump_motor(np.random.default_rng(seed), 7200, rise_from=3600)
            for cols in (day, risen):
                cols[STATE] = (cols["amps"] > 20).astype(float)  # the code the agent reads "Run" as
            assert _episodes(d / "m.onnx", day, report.recipe.features, 1.0) == [], (state, seed)
            episodes = _episodes(d / "m.onnx", risen, report.recipe.features, 1.0)
            assert episodes and 3600 <= episodes[0].start_seq <= 3600 + report.recipe.n, (state, seed, episodes)


def test_a_text_column_of_many_names_stays_left_out_and_changes_nothing(tmp_path: Path, fitted: dict) -> None:
    cols = _pump_motor(np.random.default_rng(11), 4800)
    path = _pump_file(tmp_path / "n.csv", cols, "number")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",Note"] + [f"{x},round {i % 37} by {i % 11}"
                                                        for i, x in enumerate(lines[1:])]) + "\n")
    report = fit_model([path], tmp_path / "m.onnx")
    assert any(x.startswith("  left out  Note") and "text, not a number" in x for x in report.lines())
    assert (tmp_path / "m.onnx").read_bytes() == (fitted["number"][0] / "m.onnx").read_bytes()


def test_a_swap_to_a_model_that_codes_the_states_otherwise_is_refused(fitted: dict, tmp_path: Path) -> None:
    running = load_runtime(fitted["text"][0] / "m.onnx")
    other = load_runtime(fitted["number"][0] / "m.onnx")  # same features, no codes: "Run" would be refused
    with pytest.raises(BadModelFile, match="codes its state features' texts"):
        other.check_fits(running)
    running.check_fits(load_runtime(fitted["text"][0] / "m.onnx"))
    from edgewatch.agent.lifecycle.shadow import ShadowScorer

    with pytest.raises(BadModelFile, match="codes its state features' texts"):  # nor scored beside it in shadow
        ShadowScorer.check_fits(other, running)
    ShadowScorer.check_fits(load_runtime(fitted["text"][0] / "m.onnx"), running)


def test_the_card_refuses_codes_of_no_feature_and_codes_that_are_no_numbers(fitted: dict) -> None:
    card = ScoringModel(fitted["number"][0] / "m.onnx").card
    props = card.to_props()
    assert STATES_KEY not in props  # a card without codes is written as before
    for states, why in [({"nope": {"Run": 1, "Stop": 0}}, "not features"),
                        ({STATE: {"Run": "x", "Stop": 0}}, "finite numbers"),
                        ({STATE: {"Run": 1}}, "two or more texts"),
                        ({STATE: {"Run": 1, "RUN": 0}}, "one text two codes")]:
        with pytest.raises(BadModelFile, match=why):
            ModelCard.from_props({**props, STATES_KEY: json.dumps(states)})
    good = ModelCard.from_props({**props, STATES_KEY: json.dumps({STATE: {"Run": 1, "Stop": 0}})})
    assert good.states == {STATE: {"Run": 1, "Stop": 0}}


def _agent_stdin(cwd: Path, model: str, lines: list[str]) -> tuple[list[dict], str]:
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "run", "--model", model, "--source", "stdin"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")], proc.stderr


def test_fit_then_the_agent_reads_run_and_stop_from_a_replay_and_from_stdin_with_torch_blocked(tmp_path: Path) -> None:
    """``edgewatch fit n.csv`` with no flags, then ``agent run --source replay:today.csv`` and ``--source stdin``
    with objects keyed by feature (``"Pump State": "Run"``, in any case, and an array ``[2.0, 45, "Run"]``): the
    +30 % vibration opens one episode from its onset, no earlier; a state never seen (``Fault``) is counted
    ``unknown_state`` and said in the log, never a crash, never scored as a known state."""
    _pump_file(tmp_path / "n.csv", _pump_motor(np.random.default_rng(11), 4800), "text")
    report = run(tmp_path, "fit", "n.csv", "-o", "m.onnx").stdout
    assert f"state     {STATE:24s} Run=1, Stop=0" in report, report
    check = run(tmp_path, "agent", "check", "m.onnx").stdout
    assert f"  state         {STATE}: Run=1, Stop=0 (text read as its code" in check, check
    risen = _pump_motor(np.random.default_rng(111), 7200, rise_from=3600)
    _pump_file(tmp_path / "today.csv", risen, "text")
    proc = run(tmp_path, "agent", "run", "--model", "m.onnx", "--source", "replay:today.csv")
    starts = [e for x in proc.stdout.splitlines() if x.startswith("{") for e in [json.loads(x)]
              if e["event"] == "start"]
    assert starts and 3600 <= starts[0]["seq"] <= 3610 and "bad 0," in proc.stderr, (starts, proc.stderr[-500:])

    _pump_file(tmp_path / "fault.csv", _pump_motor(np.random.default_rng(111), 7200), "text", fault=(2000, 2100))
    proc = run(tmp_path, "agent", "run", "--model", "m.onnx", "--source", "replay:fault.csv")
    assert "bad input by reason: unknown_state 100" in proc.stderr, proc.stderr[-1000:]
    assert "'Pump State' is 'Fault', a state the normal data of the model never held (its states: Run=1, " \
           "Stop=0)" in proc.stderr

    running = risen["amps"] > 20
    lines = []
    for i in range(len(running)):
        state = "Run" if running[i] else "Stop"
        lines.append(json.dumps({"vib": float(risen["vib"][i]), "amps": float(risen["amps"][i]),
                                 STATE: state.upper() if i % 3 else state, "ts": 1.77e9 + i}))
    lines[100] = json.dumps([float(risen["vib"][100]), float(risen["amps"][100]), "Run" if running[100] else "Stop"])
    lines[2000] = json.dumps({"vib": 2.0, "amps": 45.0, STATE: "Fault", "ts": 1.77e9 + 2000})
    events, log = _agent_stdin(tmp_path, "m.onnx", lines)
    starts = [e for e in events if e["event"] == "start"]
    assert starts and 3600 <= starts[0]["seq"] <= 3610, starts
    assert "bad input by reason: unknown_state 1" in log and "messages 7200" in log, log[-1000:]

    # the same lines for a model fitted on the 0/1 column (no codes in its file): text is not a number, as before
    _pump_file(tmp_path / "n01.csv", _pump_motor(np.random.default_rng(11), 4800), "number")
    run(tmp_path, "fit", "n01.csv", "-o", "m01.onnx")
    events, log = _agent_stdin(tmp_path, "m01.onnx", lines[:200])
    assert "bad input by reason: not_number 200" in log, log[-1000:]


def test_the_codes_are_chosen_over_every_file_and_a_state_alone_is_refused(tmp_path: Path) -> None:
    """``fit a.csv b.csv`` where only the second file holds ``Idle``: one code per text in both files (sorted, three
    texts: Idle=0, Run=1, Stop=2); a file whose only column is a state is refused with why."""
    from edgewatch.errors import BadInput
    from edgewatch.fit.normal_data import read_normal_data

    def write(name: str, states: list[str], start: int) -> Path:
        rows = ["time,flow,Pump State"] + [f"{1.7e9 + start + i:.0f},{1 + 0.01 * (i % 7)},{s}"
                                           for i, s in enumerate(states)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        return tmp_path / name

    a = write("a.csv", ["Run"] * 50 + ["Stop"] * 50, 0)
    b = write("b.csv", ["Idle"] * 50 + ["Run"] * 50, 100)
    data = read_normal_data([a, b])
    assert data.notes.states == {STATE: {"Idle": 0, "Run": 1, "Stop": 2}}
    assert data.features == ["flow", STATE] and not data.notes.text_columns
    assert data.values()[:, 1].tolist() == [1.0] * 50 + [2.0] * 50 + [0.0] * 50 + [1.0] * 50
    (tmp_path / "alone.csv").write_text("time,Pump State\n" + "".join(f"{1.7e9 + i:.0f},{'Run' if i % 9 else 'Stop'}\n"
                                                                    for i in range(100)))
    with pytest.raises(BadInput, match="only the text state column"):
        read_normal_data([tmp_path / "alone.csv"])


def test_an_alarm_that_toggles_every_few_rows_is_a_state_by_its_text_not_a_drifting_level() -> None:
    """A numeric 0/1 column is a state only when each value is held for stretches; a TRUE/FALSE text column is
    one by what it is, however often it changes."""
    from edgewatch.fit.screening import Use, screen_features

    rng = np.random.default_rng(5)
    alarm = (rng.random(3000) < np.linspace(0.2, 0.8, 3000)).astype(float)  # more often true as the data goes on
    flow = 10 + rng.normal(0, 0.1, 3000)
    x = np.stack([flow, alarm], axis=1)
    as_number = {c.name: c for c in screen_features(["flow", "Alarm"], [x])}
    assert not as_number["Alarm"].reason.startswith("a state"), as_number["Alarm"].reason
    as_text = {c.name: c for c in screen_features(["flow", "Alarm"], [x], texts={"Alarm": {"FALSE": 0, "TRUE": 1}})}
    assert as_text["Alarm"].use is Use.LEVEL and as_text["Alarm"].reason.startswith("FALSE=0, TRUE=1 (text in the "
                                                                                    "file"), as_text["Alarm"].reason


def test_a_mode_whose_sorted_codes_are_not_in_load_order_is_caught_as_with_its_numbers(tmp_path: Path) -> None:
    """The compressor station of tests/fit/test_plant_kinds.py (mode 1/2/3, load rising with it) with its mode
    written Low/Mid/High: sorted, High=0, Low=1, Mid=2, not the load's order. Measured (seeds 4 and 5, new days
    40 and 41): no false episode, flow -0.8 m3/min with current +1.2 A caught as with the numbers 1/2/3 (seed 4
    one model, 7 and 9 windows on; seed 5 a pca per point, at the onset)."""
    from tests.fit.test_plant_kinds import _compressor_station

    words = {1.0: "Low", 2.0: "Mid", 3.0: "High"}
    cols = _compressor_station(np.random.default_rng(5), 4000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    number = _write(tmp_path / "a" / "n.csv", cols, 10.0)
    lines = number.read_text().splitlines()
    text = tmp_path / "b" / "n.csv"
    text.write_text("\n".join([lines[0]] + [",".join([x.split(",")[0], words[cols["mode"][i]], *x.split(",")[2:]])
                                            for i, x in enumerate(lines[1:])]) + "\n")
    code = {1.0: 1.0, 2.0: 2.0, 3.0: 0.0}
    for path, coded in ((number, False), (text, True)):
        report = fit_model([path], path.with_suffix(".onnx"))
        if coded:
            assert report.notes.states == {"mode": {"High": 0, "Low": 1, "Mid": 2}}
        day = _compressor_station(np.random.default_rng(40), 8640)
        bad = _compressor_station(np.random.default_rng(40), 8640)
        bad["flow_m3min"][4000:] -= 0.8
        bad["current_A"][4000:] += 1.2
        for c in (day, bad):
            if coded:
                c["mode"] = np.array([code[m] for m in c["mode"]])
        assert _episodes(path.with_suffix(".onnx"), day, report.recipe.features, 10.0) == [], coded
        episodes = _episodes(path.with_suffix(".onnx"), bad, report.recipe.features, 10.0)
        assert episodes and all(e.start_seq >= 4000 for e in episodes), (coded, episodes)
        assert episodes[0].start_seq <= 4000 + report.recipe.n, (coded, episodes)


def test_fit_then_an_agent_process_reads_the_state_topic_from_mosquitto(tmp_path: Path, broker, collector) -> None:
    """``agent run --source mqtt://…/plant/{stream}/{feature}`` (torch blocked), one topic per sensor, the state's
    topic carrying the word as the plant sends it (``Run``, ``"STOP"``, ``{"value": "Run"}``): every row made,
    one ``Fault`` counted ``unknown_state``, nothing else refused."""
    import time

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.waiting import wait_until

    _pump_file(tmp_path / "n.csv", _pump_motor(np.random.default_rng(11), 4800), "text")
    run(tmp_path, "fit", "n.csv", "-o", "m.onnx")
    status = collector(broker, "edgewatch/states/#", client_id="states-status")
    # a root of its own: other tests leave retained plant/ topics on the session broker (unknown features here)
    source = f"mqtt://{broker.host}:{broker.port}/states-plant/{{stream}}/{{feature}}?max_age=60s"
    agent = subprocess.Popen([sys.executable, "-c", BLOCKER, "agent", "run", "--model", "m.onnx", "--source", source,
                              "--sink", f"mqtt://{broker.host}:{broker.port}/edgewatch", "--agent-id", "states",
                              "--max-messages", "61", "--summary-json", "summary.json"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="states-plant")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert wait_until(lambda: any(b'"online"' in p for p in status.on("/status")), 60), "the agent is not online"
        time.sleep(1.0)  # its subscription
        cols = _pump_motor(np.random.default_rng(111), 60)
        words = ["Run", '"STOP"', '{"value": "Run"}']
        infos = []
        for i in range(60):
            infos.append(pub.publish("states-plant/pump-1/vib", f"{cols['vib'][i]:.4f}", qos=1))
            infos.append(pub.publish("states-plant/pump-1/amps", f"{cols['amps'][i]:.3f}", qos=1))
            infos.append(pub.publish(f"states-plant/pump-1/{STATE}", words[i % 3], qos=1))
            if i == 30:
                infos.append(pub.publish(f"states-plant/pump-1/{STATE}", "Fault", qos=1))
        for info in infos:
            info.wait_for_publish(30)
        out, err = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
        pub.disconnect()
        pub.loop_stop()
    assert agent.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bad"] == {"unknown_state": 1}, (summary, err[-2000:])
    assert summary["messages"] == 61 and summary["windows"] >= 40, summary
    assert "'Pump State' is 'Fault', a state the normal data of the model never held" in err
