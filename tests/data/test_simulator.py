"""The equipment simulator: signal, faults and truth, websocket server, CLI.

Real sockets on free ports, a real websocket-client reader, seeded data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import websocket
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.commands.simulate import simulate
from edgewatch.data.faults import (
    FAN_LEVELS,
    FEATURES,
    FaultSpec,
    FaultType,
    RandomFaults,
    ScheduledFaults,
    parse_fault,
)
from edgewatch.data.simulator import EquipmentStream, Simulator, simulate_series
from edgewatch.data.simulator_server import FaultMode, ServerConfig, SimulatorServer
from edgewatch.errors import BadInput

pytestmark = pytest.mark.timeout(60)

CPU, MEMORY, TRAFFIC, FAN = range(4)


def read(ws: websocket.WebSocket, n: int) -> list:
    return [json.loads(ws.recv()) for _ in range(n)]


def test_nominal_signal_is_seeded_bounded_and_cyclic() -> None:
    a = Simulator.nominal(3000, seed=3)
    assert a.shape == (3000, 4)
    assert np.array_equal(a, Simulator.nominal(3000, seed=3))
    assert not np.allclose(a, Simulator.nominal(3000, seed=4))
    assert a.min() >= 0.0 and a.max() <= 1.0
    # a load cycle: cpu one period later looks like cpu now, half a period later does not
    cpu = a[:, CPU] - a[:, CPU].mean()
    same = np.corrcoef(cpu[:-600], cpu[600:])[0, 1]
    opposite = np.corrcoef(cpu[:-300], cpu[300:])[0, 1]
    assert same > 0.8 and opposite < 0.0
    # the metrics move together
    assert np.corrcoef(a[:, CPU], a[:, TRAFFIC])[0, 1] > 0.9


def test_generation_does_not_depend_on_how_it_is_split() -> None:
    whole = Simulator.nominal(1000, seed=5)
    sim = Simulator(seed=5)
    parts = np.concatenate([sim.generate(k) for k in (1, 7, 400, 592)])
    assert np.array_equal(whole, parts)
    faults = [FaultSpec.at("noise_burst", 100, 50), FaultSpec.at("frozen", 300, 80)]
    series = simulate_series(1000, seed=5, faults=faults)
    stream = EquipmentStream("x", Simulator(5), ScheduledFaults(faults), block=64)
    assert np.array_equal(series.values, np.concatenate([stream.take(k) for k in (3, 120, 500, 377)]))


def test_step_metric_takes_few_discrete_levels() -> None:
    fan = Simulator.nominal(20_000, seed=1)[:, FAN]
    levels = np.unique(fan)
    assert 2 <= len(levels) <= 4 and set(levels) <= set(FAN_LEVELS)
    jumps = np.abs(np.diff(fan))
    assert jumps.max() >= 0.2 - 1e-9  # discontinuous: it jumps a whole level at once
    assert (jumps > 0).mean() < 0.02  # and holds each level for a while (about 100 messages)


def test_scheduled_faults_change_the_signal_as_specified() -> None:
    faults = [
        FaultSpec.at(FaultType.SPIKE, 200, 6, ["cpu"]),
        FaultSpec.at(FaultType.LEVEL_SHIFT, 400, 100, ["traffic"]),
        FaultSpec.at(FaultType.NOISE_BURST, 700, 100, ["memory"]),
        FaultSpec.at(FaultType.FROZEN, 1000, 150, ["cpu"]),
        FaultSpec.at(FaultType.OVERLOAD, 1300, 100),
        FaultSpec.at(FaultType.SLOW_DRIFT, 1600, 300, ["memory"]),
    ]
    s = simulate_series(2000, seed=2, faults=faults, rate=20.0, start_ts=1000.0)
    nominal = simulate_series(2000, seed=2).values
    assert [(r.fault, r.start_index, r.end_index) for r in s.truth] == [
        (f.type.value, f.start, f.end) for f in faults
    ]
    assert s.truth[0].start_ts == pytest.approx(1010.0) and s.truth[0].end_ts == pytest.approx(1010.3)
    assert s.labels.sum() == sum(f.end - f.start for f in faults)
    assert np.array_equal(s.values[s.labels == 0], nominal[s.labels == 0])
    d = np.abs(s.values - nominal)
    assert np.all(d[200:206, CPU] > 0.5)
    shifted = s.values[400:500, TRAFFIC]
    assert np.all(np.isclose(d[400:500, TRAFFIC], 0.3) | (shifted == 0.0) | (shifted == 1.0))  # or clipped
    assert np.std(s.values[700:800, MEMORY] - nominal[700:800, MEMORY]) > 0.08
    frozen = s.values[1000:1150, CPU]
    assert np.all(frozen == frozen[0]) and np.ptp(nominal[1000:1150, CPU]) > 0.1
    assert np.all(s.values[1300:1400, [CPU, TRAFFIC]] > 0.95) and np.all(s.values[1300:1400, FAN] == 1.0)
    assert nominal[:, CPU].max() < 0.9 and nominal[:, FAN].max() < 1.0  # overload is out of the nominal range
    drift = s.values[1600:1900, MEMORY] - nominal[1600:1900, MEMORY]
    assert abs(drift[-1]) > 0.35 and abs(drift[0]) < 0.01 and np.all(np.abs(np.diff(np.abs(drift))) < 0.01)


def test_random_faults_are_reproducible_and_separated() -> None:
    a = RandomFaults(every=300, seed=7).upto(100_000)
    b = RandomFaults(every=300, seed=7).upto(100_000)
    assert a == b and len(a) > 50
    assert {f.type for f in a} == set(FaultType)
    assert a[0].start >= 100
    assert all(nxt.start - cur.end >= 100 for cur, nxt in zip(a, a[1:]))
    plan = RandomFaults(every=300, seed=7)
    plan.upto(100_000)
    assert plan.upto(5_000) == [f for f in a if f.start < 5_000]  # drawn ahead, but not reported ahead


def test_stopping_reports_only_faults_that_began(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    config = ServerConfig(rate=400, seed=3, faults=FaultMode.RANDOM, fault_every=0.5, count=900, truth_path=truth)
    with SimulatorServer(config) as server:
        assert server.wait(20)
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert lines, "random faults every ~200 messages must show up in 900 messages"
    assert all(0 <= r["start_index"] < r["end_index"] <= 900 for r in lines)
    assert all(r["end_index"] == 900 for r in lines if r.get("truncated"))
    expected = [f for f in RandomFaults(every=200, seed=3000).upto(900)]
    assert [(r["fault"], r["start_index"]) for r in lines] == [(f.type.value, f.start) for f in expected]


def test_bad_fault_specs_are_refused_with_a_hint() -> None:
    assert parse_fault("frozen@30:10:cpu,traffic", rate=20) == FaultSpec(FaultType.FROZEN, 600, 800, ("cpu", "traffic"))
    assert parse_fault("overload@1", rate=20).end == 20 + 120
    for text in ("boom@3", "spike", "spike@3:1:disk"):
        with pytest.raises(BadInput):
            parse_fault(text, rate=20)
    with pytest.raises(BadInput, match="overlap"):
        ScheduledFaults([FaultSpec.at("spike", 10, 20), FaultSpec.at("frozen", 15, 30)])


def test_messages_are_json_arrays_of_four_values_in_unit_range() -> None:
    with SimulatorServer(ServerConfig(rate=400, seed=1)) as server:
        ws = websocket.create_connection(server.url, timeout=5)
        msgs = read(ws, 100)
        ws.close()
    for m in msgs:
        assert isinstance(m, list) and len(m) == 4
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in m)
    assert len({tuple(m) for m in msgs}) > 90


def test_rate_is_roughly_right() -> None:
    with SimulatorServer(ServerConfig(rate=20, with_time=True)) as server:
        ws = websocket.create_connection(server.url, timeout=5)
        first = json.loads(ws.recv())
        start, seqs = time.monotonic(), [first["seq"]]
        while time.monotonic() - start < 1.0:
            seqs.append(json.loads(ws.recv())["seq"])
        ws.close()
    assert 10 <= len(seqs) <= 40  # a sanity check on the scheduler, not a speed assert
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_send_time_stamps_messages_when_they_leave() -> None:
    """--send-time: ts is the sending moment (up to this process receiving it), not the schedule's slot."""
    with SimulatorServer(ServerConfig(rate=200, with_time=True, send_time=True)) as server:
        ws = websocket.create_connection(server.url, timeout=5)
        got = []
        for _ in range(100):
            msg = json.loads(ws.recv())
            got.append((msg["ts"], time.time(), msg["seq"]))
        ws.close()
    ts, received, seqs = (np.array(c) for c in zip(*got))
    assert np.all(ts <= received + 1e-3) and np.all(received - ts < 1.0)
    assert np.all(np.diff(ts) >= 0) and list(seqs) == list(range(seqs[0], seqs[0] + 100))
    # the schedule's clock would space them exactly 1/rate apart; send times share a tick's moment
    assert not np.allclose(np.diff(ts), 1 / 200, rtol=0, atol=1e-5)


def test_live_stream_equals_the_offline_series_and_writes_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    rate, count = 250.0, 600
    schedule = (FaultSpec.at("overload", 100, 50), FaultSpec.at("frozen", 300, 100, ["traffic"]),
                FaultSpec.at("spike", 550, 100))  # the spike is cut by the end of the stream
    config = ServerConfig(rate=rate, seed=4, with_time=True, count=count, faults=FaultMode.SCHEDULE,
                          schedule=schedule, truth_path=truth)
    server = SimulatorServer(config)
    with server:
        ws = websocket.create_connection(server.url, timeout=5)
        got = [json.loads(ws.recv())]
        while got[-1]["seq"] < count - 1:
            got.append(json.loads(ws.recv()))
        assert server.wait(10)
        ws.close()
    offline = simulate_series(count, seed=4, faults=schedule).values
    first = got[0]["seq"]
    assert [m["seq"] for m in got] == list(range(first, count))
    assert np.allclose([m["values"] for m in got], offline[first:], atol=1e-5)
    assert np.allclose(np.diff([m["ts"] for m in got]), 1 / rate, rtol=0, atol=1e-5)
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert [(r["fault"], r["start_index"], r["end_index"], r.get("truncated", False)) for r in lines] == [
        ("overload", 100, 150, False), ("frozen", 300, 400, False), ("spike", 550, 600, True)]
    assert lines[1]["features"] == ["traffic"] and lines[1]["stream"] == "eq-0"
    assert lines[1]["end_ts"] - lines[1]["start_ts"] == pytest.approx(100 / rate, abs=1e-5)


def test_stop_and_start_again_on_the_same_port() -> None:
    server = SimulatorServer(ServerConfig(rate=200, with_time=True)).start()
    try:
        port = server.port
        ws = websocket.create_connection(server.url, timeout=5)
        before = read(ws, 5)[-1]["seq"]
        server.stop()
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            for _ in range(1000):  # drain what was in flight, then the close
                ws.recv()
        with pytest.raises(ConnectionError):
            websocket.create_connection(server.url, timeout=2)
        server.start()
        assert server.port == port
        ws = websocket.create_connection(server.url, timeout=5)
        after = read(ws, 3)[0]["seq"]
        ws.close()
        assert after > before  # the equipment goes on where it was
    finally:
        server.stop()


def test_several_streams_are_named_and_independent() -> None:
    with SimulatorServer(ServerConfig(rate=200, streams=3)) as server:
        ws = websocket.create_connection(server.url, timeout=5)
        msgs = read(ws, 30)
        ws.close()
    assert {m["stream"] for m in msgs} == {"eq-0", "eq-1", "eq-2"}
    by_stream = {m["stream"]: m["values"] for m in msgs}
    assert len({tuple(v) for v in by_stream.values()}) == 3


def test_record_writes_rows_and_header(tmp_path: Path) -> None:
    out, truth = tmp_path / "nominal.csv", tmp_path / "truth.jsonl"
    result = CliRunner().invoke(simulate, ["--record", str(out), "--count", "1500", "--start-time", "100",
                                           "--seed", "2", "--fault", "level_shift@20:5", "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "timestamp," + ",".join(FEATURES) == "timestamp,cpu,memory,traffic,fan"
    assert len(lines) == 1501
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert rows[0, 0] == 100.0 and np.allclose(np.diff(rows[:, 0]), 0.05)
    expected = simulate_series(1500, seed=2, faults=[parse_fault("level_shift@20:5", 20)]).values
    assert np.allclose(rows[:, 1:], expected, atol=1e-5)
    (record,) = [json.loads(line) for line in truth.read_text().splitlines()]
    assert (record["fault"], record["start_index"], record["end_index"]) == ("level_shift", 400, 500)


def test_cli_serves_and_prints_its_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch.cli", "simulate", "--port", "0", "--rate", "200", "--count", "400", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on ws://127.0.0.1:")
        ws = websocket.create_connection(line.split()[-1], timeout=5)
        msgs = read(ws, 10)
        ws.close()
        assert all(len(m) == 4 for m in msgs)
        assert proc.wait(timeout=20) == 0
        assert "sent 400 messages" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_every_fault_type_is_visible_to_a_simple_detector_trained_on_nominal_data() -> None:
    """A PCA reconstruction of 20-step windows, thresholded at the 99.9th nominal percentile,
    stands in for a real model: each fault type must cross it inside the fault (slow_drift late)."""
    w = 20

    def windows(x: np.ndarray) -> np.ndarray:
        return x[np.arange(len(x) - w + 1)[:, None] + np.arange(w)].reshape(-1, w * 4)

    train = windows(Simulator.nominal(12_000, seed=11))
    mean = train.mean(0)
    centred = train - mean
    basis = np.linalg.eigh(centred.T @ centred)[1][:, -12:]  # the 12 main directions

    def score(x: np.ndarray) -> np.ndarray:
        r = windows(x) - mean
        return ((r - r @ basis @ basis.T) ** 2).mean(1)

    threshold = np.quantile(score(Simulator.nominal(12_000, seed=12)), 0.999)
    assert (score(Simulator.nominal(6_000, seed=13)) > threshold).mean() < 0.01
    for kind in FaultType:
        for k in range(3):
            fault = FaultSpec.at(kind, 1000 + 53 * k)
            s = simulate_series(1800, seed=100 + k, faults=[fault])
            ends = np.arange(len(s.values) - w + 1) + w - 1
            inside = (ends >= fault.start) & (ends < fault.end)
            assert (score(s.values)[inside] > threshold).any(), f"{kind.value} (seed {100 + k}) not visible"


def test_record_with_a_schedule_file_and_with_random_faults(tmp_path: Path) -> None:
    schedule = tmp_path / "faults.txt"
    schedule.write_text("# the faults of this run\nspike@5\n\nfrozen@10:4:traffic  # stuck sensor\n")
    out, truth = tmp_path / "a.csv", tmp_path / "a.jsonl"
    runner = CliRunner()
    result = runner.invoke(simulate, ["--record", str(out), "--count", "400", "--schedule", str(schedule),
                                      "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    got = [(r["fault"], r["features"], r["start_index"], r["end_index"])
           for r in map(json.loads, truth.read_text().splitlines())]
    assert got == [("spike", ["cpu"], 100, 106), ("frozen", ["traffic"], 200, 280)]
    result = runner.invoke(simulate, ["--record", str(out), "--count", "3000", "--faults", "random",
                                      "--fault-every", "10", "--truth", str(truth), "--seed", "5"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(records) >= 3 and all(r["end_index"] <= 3000 for r in records)
    result = runner.invoke(main, ["simulate", "--record", str(out), "--fault", "spike@5", "--fault", "frozen@5.1"])
    assert result.exit_code == 4 and "overlap" in result.output  # BadInput, with the hint
