"""CPU per message through the whole agent with the default NAB detector, beside the files it replaced.

One stream of one-value JSON messages with a timestamp (a seeded daily
cycle with noise and a few shifts, so both post-process parts work),
stride 1, through :meth:`Agent.process`: parse, window, ONNX call,
post-process, episodes. The default (``models/nab-best.onnx``) passes each
value through its graph and keeps the subsequence distances of its
``novelty`` post-process per lag, updated row by row, on a span that steps
up to 1536 rows; its lengths follow the stream's interval and a count
stream is read through Anscombe's transform, so it is measured on a
5-minute stream, an hourly one (a top shape of 16 rows: the distances are
recomputed from scratch every 16 rows instead of 192) and a 5-minute
count stream. The ninth-round file (each rung's hold afresh), the
eighth-round file (levels counted from the range's minimum), the seventh-round file (the Gaussian likelihood tail), the
fifth-round file (every length in rows) and the
fourth-round one (one 384-row span, distances recomputed over the span on
every row) run beside it. The messages measured come after the longest
span speaks (row 1,935), so the figures are steady costs. All run in one
session, so their ratios are the figures to read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import Item, Kind
from edgewatch.bench.agent_load import CountingSink

from .conftest import QUICK

ROOT = Path(__file__).resolve().parents[1]
N_MESSAGES = 4_000 if QUICK else 20_000
WARM = 2_000  # past the longest span (1536 rows) and its likelihood's 400 learning rows


def _items(n: int, seed: int, step: float, counts: bool = False) -> list[Item]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, n)
    for at in rng.integers(0, n, 4):
        x[at:] += rng.normal(0, 8)
    x = np.round(np.abs(x)) if counts else np.round(x, 4)
    now, t0 = time.time(), 1.7e9
    return [Item(Kind.RAW, "bench", json.dumps({"ts": t0 + step * i, "values": [float(v)]}), now)
            for i, v in enumerate(x)]


def _cpu_us_per_message(path: Path, step: float = 300.0, counts: bool = False) -> float:
    opts = AgentOptions(agent_id="bench", stride=1, k=1, n=1, drift_every=0)
    agent = Agent(ScoringModel(path), [CountingSink()], opts)
    items = _items(WARM + N_MESSAGES, 0, step, counts)
    batch = opts.max_batch
    for lo in range(0, WARM, batch):
        agent.process(items[lo:min(lo + batch, WARM)])
    c0 = time.process_time()
    for lo in range(WARM, len(items), batch):
        agent.process(items[lo:lo + batch])
    return 1e6 * (time.process_time() - c0) / N_MESSAGES


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgewatch.eval.detectors import novelty_levels

    tmp = tmp_path_factory.mktemp("nab")
    return {"ninth_round": novelty_levels.write_model(tmp / "ninth-round.onnx", novelty_levels.ninth_round()),
            "eighth_round": novelty_levels.write_model(tmp / "eighth-round.onnx", novelty_levels.eighth_round()),
            "seventh_round": novelty_levels.write_model(tmp / "seventh-round.onnx", novelty_levels.seventh_round()),
            "fifth_round": novelty_levels.write_model(tmp / "fifth-round.onnx", novelty_levels.fifth_round()),
            "fourth_round": novelty_levels.write_model(tmp / "fourth-round.onnx", novelty_levels.fourth_round())}


def test_nab_detector_cost_per_message(benchmark, previous: dict[str, Path]) -> None:
    got: dict[str, float] = {}
    default = ROOT / "models" / "nab-best.onnx"

    def run() -> None:
        got["default"] = _cpu_us_per_message(default)
        got["default_hourly"] = _cpu_us_per_message(default, step=3600.0)
        got["default_counts"] = _cpu_us_per_message(default, counts=True)
        got["ninth_round"] = _cpu_us_per_message(previous["ninth_round"])
        got["ninth_round_hourly"] = _cpu_us_per_message(previous["ninth_round"], step=3600.0)
        got["eighth_round"] = _cpu_us_per_message(previous["eighth_round"])
        got["seventh_round"] = _cpu_us_per_message(previous["seventh_round"])
        got["fifth_round"] = _cpu_us_per_message(previous["fifth_round"])
        got["fourth_round"] = _cpu_us_per_message(previous["fourth_round"])

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.group = "NAB detector in the agent"
    benchmark.extra_info.update({"suite": "nab_detector", "messages": N_MESSAGES,
                                 **{f"{k}_cpu_us_per_message": v for k, v in got.items()},
                                 "ratio": got["default"] / got["fourth_round"],
                                 "ratio_to_ninth_round": got["default"] / got["ninth_round"],
                                 "ratio_to_eighth_round": got["default"] / got["eighth_round"],
                                 "ratio_to_seventh_round": got["default"] / got["seventh_round"],
                                 "ratio_to_fifth_round": got["default"] / got["fifth_round"]})
    assert all(v > 0 for v in got.values())
