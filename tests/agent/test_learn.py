"""--learn: each stream learns its own pca model on its first rows, and keeps it across a restart.

SKAB's protocol (fit on an experiment's first 400 rows, score the rest) as a
live feature: the agent's episodes are those of an offline evaluation of the
stream's own model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgewatch.cli import main
from tests.eval.test_skab import write_skab_file


def _episodes(path: Path, rows: int) -> np.ndarray:
    flags = np.zeros(rows, dtype=np.int8)
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] == "end":
            flags[ev["episode"]["start_seq"]:ev["episode"]["end_seq"]] = 1
    return flags


def test_agent_learns_each_stream_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    from edgewatch.eval.skab_runner import agent_flags

    template = tmp_path / "template.onnx"
    res = CliRunner().invoke(main, ["train", "pca", "--data", str(write_skab_file(tmp_path / "a.csv", seed=6)),
                                    "--rows", "400", "-o", str(template)])
    assert res.exit_code == 0, res.output
    data = write_skab_file(tmp_path / "b.csv", seed=7)
    lines = data.read_text().splitlines()
    head, body = lines[0], lines[1:]
    (tmp_path / "b1.csv").write_text("\n".join([head] + body[:250]) + "\n")  # the stream stops mid-learning ...
    (tmp_path / "b2.csv").write_text("\n".join([head] + body[250:]) + "\n")  # ... and goes on after a restart

    def run(src: Path, state: Path, out: Path) -> None:
        r = CliRunner().invoke(main, ["agent", "run", "--model", str(template), "--learn", "400", "--learn-state",
                                      str(state), "--source", f"replay:{src}?sep=;&time=datetime&stream=pump",
                                      "--sink", f"jsonl:{out}"])
        assert r.exit_code == 0, r.output

    run(data, tmp_path / "s1", tmp_path / "whole.jsonl")
    learned = sorted((tmp_path / "s1").glob("*.onnx"))
    assert len(learned) == 1
    flags, _, _ = agent_flags(learned[0], np.loadtxt(data, delimiter=";", skiprows=1, usecols=range(1, 9)))
    whole = _episodes(tmp_path / "whole.jsonl", len(body))
    assert whole[:400].sum() == 0 and whole[400:].tolist() == flags[400:].tolist()  # its own model, as eval runs it
    assert whole[500:600].mean() > 0.9

    run(tmp_path / "b1.csv", tmp_path / "s2", tmp_path / "p1.jsonl")
    assert not list((tmp_path / "s2").glob("*.onnx")) and (tmp_path / "s2" / "buffers.npz").is_file()
    run(tmp_path / "b2.csv", tmp_path / "s2", tmp_path / "p2.jsonl")
    resumed = sorted((tmp_path / "s2").glob("*.onnx"))
    assert [p.read_bytes() for p in resumed] == [learned[0].read_bytes()]  # the same 400 rows, the same model

    run(data, tmp_path / "s1", tmp_path / "again.jsonl")  # restart with a learned model: scores from the start
    assert sorted((tmp_path / "s1").glob("*.onnx")) == learned
    assert _episodes(tmp_path / "again.jsonl", len(body)).tolist() == flags.tolist()


def test_streams_that_come_and_go_do_not_keep_their_learned_models_in_memory(tmp_path: Path) -> None:
    """--learn with --stream-ttl: 1,800 streams that learned and went idle held 490 MiB with none left, one ONNX
    Runtime session each (215 KiB here). A dropped stream's model now leaves memory and stays on disk; the
    stream, when it comes back, is scored with that same model again."""
    import time

    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.learn import StreamLearner
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.sinks import MemorySink
    from edgewatch.agent.sources import Item, Kind
    from tests.modelkit import make_card, write_model

    model = ScoringModel(write_model(tmp_path / "t.onnx", make_card(window=4, threshold=0.5)))
    options = AgentOptions(drift_every=0, stream_ttl=60.0)
    learner = StreamLearner(tmp_path / "state", model.card, rows=20, overrides=options.overrides())
    agent = Agent(model, [MemorySink()], options, learner=learner)
    rng = np.random.default_rng(3)

    def rows(streams: range, n: int) -> list[Item]:
        return [Item(Kind.RAW, "stdin", json.dumps({"values": rng.normal(0.5, 0.1, 4).tolist(), "stream": f"d{s}"}),
                     0.0) for _ in range(n) for s in streams]

    agent.process(rows(range(40), 25) + rows(range(40, 50), 10))  # 40 learn and score; 10 are still learning
    assert len(learner.models) == 40 and agent.summary.windows == 40 * (25 - 20)
    assert agent.evict_idle(now=time.monotonic() + 3600) == 50
    assert learner.runtimes == {} and learner.buffers == {}  # what 50 streams gone held: nothing
    files = sorted(p.name for p in (tmp_path / "state").glob("*.onnx"))
    agent.process(rows(range(1), 6))  # d0 comes back: a fresh window, then its own model from its file
    assert agent.summary.windows == 40 * 5 + (6 - 4 + 1)
    assert sorted(p.name for p in (tmp_path / "state").glob("*.onnx")) == files and list(learner.runtimes) == ["d0"]


def _wchar() -> int:
    """Bytes this process has handed to write() so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def test_learning_many_streams_writes_a_constant_amount_per_stream(tmp_path: Path) -> None:
    """The index was rewritten whole at each newly learned stream: the 300th stream wrote 300 entries. Now a
    stream's learning writes its model file and one journal line, the same for the first and the last."""
    from edgewatch.agent.learn import StreamLearner
    from tests.modelkit import make_card

    learner = StreamLearner(tmp_path / "state", make_card(window=2), rows=7)
    rng = np.random.default_rng(5)
    written = []
    for block in range(3):
        before = _wchar()
        for s in range(block * 100, block * 100 + 100):
            for _ in range(7):
                learner.observe(f"machine-{s:05d}", rng.normal(0.5, 0.1, 4).tolist())
        written.append(_wchar() - before)
    assert len(learner.models) == 300
    assert written[2] < 1.3 * written[0], written  # before: 1.7x (the index grown by 200 entries)
    assert len((tmp_path / "state" / "learned.jsonl").read_text().splitlines()) == 301  # a head line, then one a stream
    learner.save()
    assert not (tmp_path / "state" / "learned.jsonl").exists()  # folded into the index at the stop
    assert StreamLearner(tmp_path / "state", make_card(window=2), rows=7).models == learner.models


def test_learned_models_survive_a_kill_9_while_streams_learn(tmp_path: Path) -> None:
    """The agent killed (-9) while streams learn one after another, the journal being appended to: the next
    start knows every stream the log said had learned, and each of its model files is there."""
    import re
    import signal
    import subprocess
    import sys
    import threading

    from edgewatch.agent.learn import StreamLearner
    from tests.modelkit import make_card, write_model
    from tests.waiting import wait_until

    template = make_card(window=2)
    model = write_model(tmp_path / "t.onnx", template)
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                             "--learn", "7", "--learn-state", str(state), "--source", "stdin", "--sink",
                             f"jsonl:{tmp_path / 'out.jsonl'}"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    learned: list[str] = []
    pattern = re.compile(r"stream (\S+): learned pca")

    def read_log() -> None:
        for line in proc.stderr:
            m = pattern.search(line)
            if m:
                learned.append(m.group(1))

    threading.Thread(target=read_log, daemon=True).start()
    rng = np.random.default_rng(11)

    def feed() -> None:
        try:
            for s in range(5000):
                for _ in range(7):
                    values = rng.normal(0.5, 0.1, 4).round(4).tolist()
                    proc.stdin.write(json.dumps({"stream": f"m{s}", "a": values[0], "b": values[1],
                                                 "c": values[2], "d": values[3]}) + "\n")
                proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    threading.Thread(target=feed, daemon=True).start()
    try:
        assert wait_until(lambda: len(learned) >= 200, 120), f"{len(learned)} learned"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        seen = list(learned)
    finally:
        if proc.poll() is None:
            proc.kill()
    again = StreamLearner(state, template, rows=7)
    assert set(seen) <= set(again.models), sorted(set(seen) - set(again.models))[:5]
    assert all((state / name).is_file() for name in again.models.values())
    assert again.runtime(seen[-1]) is not None  # and it loads


def test_a_journal_line_cut_short_is_dropped_and_the_next_ones_are_whole(tmp_path: Path) -> None:
    """A write cut short (the disk filled mid-line) leaves half a line at the journal's end: it is cut off at
    the next start, that stream learns again, and what is appended after it is read back."""
    from edgewatch.agent.learn import JOURNAL, StreamLearner
    from tests.modelkit import make_card

    card = make_card(window=2)
    learner = StreamLearner(tmp_path, card, rows=7)
    rng = np.random.default_rng(2)
    for s in ("p1", "p2"):
        for _ in range(7):
            learner.observe(s, rng.normal(0.5, 0.1, 4).tolist())
    journal = tmp_path / JOURNAL
    with open(journal, "ab") as fh:
        fh.write(b'{"stream": "p3", "mod')
    again = StreamLearner(tmp_path, card, rows=7)
    assert sorted(again.models) == ["p1", "p2"]
    for _ in range(7):
        again.observe("p3", rng.normal(0.5, 0.1, 4).tolist())
    assert sorted(StreamLearner(tmp_path, card, rows=7).models) == ["p1", "p2", "p3"]
    assert all(json.loads(line) for line in journal.read_text().splitlines())
