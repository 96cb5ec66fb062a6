"""The run recorder: what the agent saw, written as JSONL and read back for plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.ops.recorder import RunRecorder
from edgewatch.agent.sources import Item, Kind
from edgewatch.data.faults import FEATURES, FaultSpec
from edgewatch.data.simulator import simulate_series
from edgewatch.errors import BadInput
from edgewatch.plot.run_file import read_run
from tests.modelkit import make_card, write_model

THRESHOLD = 0.15


@pytest.fixture
def model(tmp_path: Path) -> ScoringModel:
    card = make_card(window=10, features=list(FEATURES), threshold=THRESHOLD, stride=2, k=2, n=3)
    return ScoringModel(write_model(tmp_path / "square.onnx", card))


def feed(agent: Agent, values: np.ndarray, ts: np.ndarray, stream: str, batch: int = 37) -> None:
    """Push measurements through the agent's real loop body, in uneven batches."""
    items = [Item(Kind.MEASUREMENT, "test", Measurement(v.tolist(), float(t), stream), float(t))
             for v, t in zip(values, ts)]
    for lo in range(0, len(items), batch):
        agent.process(items[lo:lo + batch])


def test_recorded_run_reads_back_what_the_agent_saw(tmp_path: Path, model: ScoringModel) -> None:
    series = simulate_series(600, seed=3, faults=[FaultSpec.at("overload", 300)], start_ts=1000.0)
    agent = Agent(model, [], AgentOptions(drift_every=0, agent_id="rec"))
    seen: list = []

    class Collect:
        def on_batch(self, view) -> None:  # noqa: ANN001
            seen.extend(view.scored)

        def on_event(self, event) -> None:  # noqa: ANN001
            pass

    observer = Collect()
    agent.subscribe(observer.on_event, observer.on_batch)
    rec = RunRecorder.for_agent(agent, tmp_path / "run.jsonl")
    agent.subscribe(rec.on_event, rec.on_batch)
    feed(agent, series.values, series.timestamps, "eq-0")
    rec.close()

    run = read_run(tmp_path / "run.jsonl")
    assert run.header["run"] == 1 and run.header["window"] == 10 and run.header["stride"] == 2
    assert run.features == list(FEATURES) and run.threshold == THRESHOLD
    s = run.streams["eq-0"]
    assert len(s.t) == 600 and s.seq.tolist() == list(range(600))
    np.testing.assert_allclose(s.values, series.values, atol=1e-5)
    np.testing.assert_allclose(s.t, series.timestamps, atol=1e-6)
    assert len(s.wt) == len(seen) == agent.summary.windows
    np.testing.assert_allclose(s.scores, [w.score for w in seen], rtol=1e-5)
    assert s.over.tolist() == [w.over for w in seen]
    # the overload is one alert episode, and it lies on the fault
    assert len(s.episodes) == 1
    fault = series.truth[0]
    ep = s.episodes[0]
    assert fault.start_ts <= ep.start < fault.end_ts and ep.end > fault.start_ts
    assert not s.over[s.wt < fault.start_ts].any()
    assert s.over[(s.wt > fault.start_ts + 0.5) & (s.wt < fault.end_ts)].all()


def test_threshold_changes_and_many_streams_are_kept(tmp_path: Path, model: ScoringModel) -> None:
    agent = Agent(model, [], AgentOptions(drift_every=0))
    rec = RunRecorder.for_agent(agent, tmp_path / "run.jsonl")
    agent.subscribe(rec.on_event, rec.on_batch)
    rng = np.random.default_rng(0)
    values = rng.uniform(0.4, 0.6, size=(40, 4))
    ts = 10.0 + np.arange(40) / 20
    items = [Item(Kind.MEASUREMENT, "t", Measurement(v.tolist(), float(t), f"s{i % 3}"), float(t))
             for i, (v, t) in enumerate(zip(values, ts))]
    agent.process(items[:20])
    agent.threshold = 0.5
    agent.process(items[20:])
    rec.close()
    run = read_run(tmp_path / "run.jsonl")
    assert sorted(run.streams) == ["s0", "s1", "s2"]
    assert sum(len(s.t) for s in run.streams.values()) == 40
    assert [th for _, th in run.thresholds] == [THRESHOLD, 0.5]
    assert run.thresholds[1][0] > ts[19]


def test_record_is_flushed_while_running_and_survives_a_cut(tmp_path: Path, model: ScoringModel) -> None:
    path = tmp_path / "run.jsonl"
    agent = Agent(model, [], AgentOptions(drift_every=0))
    rec = RunRecorder.for_agent(agent, path, flush_seconds=0.0)
    agent.subscribe(rec.on_event, rec.on_batch)
    series = simulate_series(50, seed=1, start_ts=5.0)
    feed(agent, series.values, series.timestamps, "x")
    # readable before close: the flush interval bounds what a hard kill loses
    assert len(read_run(path).streams["x"].t) == 50
    rec.close()
    with open(path, "a") as fh:
        fh.write('{"m":"x","t":7.0,"q":5')  # an agent killed mid-line
    run = read_run(path)
    assert run.skipped_lines == 1 and len(run.streams["x"].t) == 50
    lines = path.read_text().splitlines()
    assert all(len(line) < 200 for line in lines[1:-1])  # compact lines


def test_not_a_run_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    p.write_text(json.dumps({"event": "start"}) + "\n")
    with pytest.raises(BadInput, match="--record-run"):
        read_run(p)


def _replay(path: Path, start: float, n: int = 40, hot: range = range(0)) -> Path:
    rows = [f"{start + i / 10:.1f}," + ",".join(["1.5" if i in hot else "0.5"] * 4) for i in range(n)]
    path.write_text("timestamp," + ",".join(FEATURES) + "\n" + "\n".join(rows) + "\n")
    return path


def test_a_restarted_agent_appends_its_run_and_plot_reads_every_run(tmp_path: Path) -> None:
    """The README's form, run twice on one --record-run file: nothing of the first run is lost."""
    model = write_model(tmp_path / "m.onnx", make_card(window=10, features=list(FEATURES), threshold=THRESHOLD,
                                                       stride=2, k=2, n=3))
    record = tmp_path / "run.jsonl"

    def agent(csv: Path) -> None:
        proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                               "--source", f"replay:{csv}", "--record-run", str(record)],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]

    agent(_replay(tmp_path / "a.csv", 1000.0, hot=range(20, 30)))
    with open(record, "a") as fh:
        fh.write('{"m":"x","t":1003.0,"q":5')  # the first agent was killed mid-line
    agent(_replay(tmp_path / "b.csv", 2000.0))
    run = read_run(record)
    assert run.runs == 2 and run.skipped_lines == 1
    stream = run.streams["replay:a.csv"], run.streams["replay:b.csv"]
    assert [len(s.t) for s in stream] == [40, 40] and run.restarts == [2000.0]
    assert len(stream[0].episodes) == 1 and not stream[1].episodes
    last = read_run(record, -1)
    assert last.runs == 1 and list(last.streams) == ["replay:b.csv"] and last.skipped_lines == 0
    assert list(read_run(record, 1).streams) == ["replay:a.csv"]
    with pytest.raises(BadInput, match="holds 2 run"):
        read_run(record, 3)
    plot = subprocess.run([sys.executable, "-m", "edgewatch.cli", "plot", str(record), "-o", str(tmp_path / "p.png"),
                           "--stream", "replay:a.csv"], capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0 and (tmp_path / "p.png").stat().st_size > 10_000, plot.stderr
    assert "skipped 1 unreadable line" in plot.stderr


def test_runs_of_other_features_are_read_one_at_a_time(tmp_path: Path, model: ScoringModel) -> None:
    path = tmp_path / "run.jsonl"
    RunRecorder(path, ["a", "b"], 0.1).close()
    RunRecorder(path, ["x", "y", "z"], 0.2).close()
    with pytest.raises(BadInput, match="--run N"):
        read_run(path)
    assert read_run(path, 2).features == ["x", "y", "z"] and read_run(path, 2).threshold == 0.2


def test_a_full_disk_under_the_run_record_does_not_stop_the_agent(tmp_path: Path, small_tmpfs) -> None:
    """``--record-run`` on a disk with 8 KiB left (a 256 KiB tmpfs): before, the first refused write left the
    loop and ended the agent (exit 1, a traceback, the alerts after it never sent). Now every alert reaches the
    JSONL sink on a disk with room, the record keeps whole lines, and the log counts what it could not record."""
    from tests.conftest import fill

    disk = small_tmpfs(256 * 1024)
    model = write_model(tmp_path / "m.onnx", make_card(window=10, features=list(FEATURES), threshold=THRESHOLD,
                                                       stride=2, k=2, n=3))
    csv = _replay(tmp_path / "r.csv", 1000.0, n=3000, hot=range(0))
    rows = csv.read_text().splitlines()
    csv.write_text("\n".join(rows[:1] + [r if (i // 20) % 5 else r.replace("0.5", "1.5") for i, r in
                                         enumerate(rows[1:])]) + "\n")  # 20 hot rows in every 100: 30 episodes
    fill(disk, leave=8192)
    record, alerts = disk / "run.jsonl", tmp_path / "alerts.jsonl"
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", f"replay:{csv}", "--record-run", str(record), "--sink", f"jsonl:{alerts}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    events = [json.loads(line)["event"] for line in alerts.read_text().splitlines()]
    assert events == ["start", "end"] * 30, events
    assert "line(s) could not be written to the run record" in proc.stderr
    assert proc.stderr.count("No space left on device") == 1  # once a minute, not once a batch
    lines = record.read_text().splitlines()
    assert lines and all(json.loads(line) for line in lines)  # whole lines only


def test_a_refused_flush_after_the_record_was_emptied_in_place_adds_no_nul_bytes(tmp_path: Path,
                                                                                  small_tmpfs) -> None:
    """The record emptied in place (logrotate's copytruncate, ``: > run.jsonl``), then a full disk: the refused
    flush cut the file back to the end the recorder remembered from before, growing it by a run of NUL bytes."""
    from tests.conftest import fill

    disk = small_tmpfs(1 << 20)
    path = disk / "run.jsonl"
    rec = RunRecorder(path, ["a"], 1.0, flush_seconds=3600)
    for i in range(200):
        rec.on_event({"event": "start", "n": i, "pad": "x" * 40})
    rec.flush()
    path.open("r+").truncate(0)
    filler = fill(disk)
    rec.on_event({"event": "end", "n": 200})
    rec.flush()
    assert rec.dropped_lines == 1
    assert path.stat().st_size == 0, path.read_bytes()[:40]
    filler.unlink()
    rec.on_event({"event": "end", "n": 201})
    rec.close()
    assert [json.loads(line)["e"]["n"] for line in path.read_text().splitlines()] == [201]
