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
