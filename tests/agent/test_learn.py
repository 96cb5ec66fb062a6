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
