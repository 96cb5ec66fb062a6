"""CPU per message through the whole agent with the default NAB detector, beside the file it replaced.

One stream of bare one-value JSON arrays (a seeded daily cycle with noise
and a few shifts, so both post-process parts work), stride 1, through
:meth:`Agent.process`: parse, window, ONNX call, post-process, episodes.
The default (``models/nab-best.onnx``) passes each value through its graph
and keeps the subsequence distances of its ``novelty`` post-process per
lag, updated row by row, on a span that steps up to 1536 rows; the
fourth-round file recomputed them over a 384-row span on every row. The
messages measured come after the default's longest span speaks (row
1,935), so the figure is its steady cost. Both run in one session, so
their ratio is the figure to read.
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


def _items(n: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, n)
    for at in rng.integers(0, n, 4):
        x[at:] += rng.normal(0, 8)
    now = time.time()
    return [Item(Kind.RAW, "bench", json.dumps([round(float(v), 4)]), now) for v in x]


def _cpu_us_per_message(path: Path) -> float:
    opts = AgentOptions(agent_id="bench", stride=1, k=1, n=1, drift_every=0)
    agent = Agent(ScoringModel(path), [CountingSink()], opts)
    items = _items(WARM + N_MESSAGES, 0)
    batch = opts.max_batch
    for lo in range(0, WARM, batch):
        agent.process(items[lo:min(lo + batch, WARM)])
    c0 = time.process_time()
    for lo in range(WARM, len(items), batch):
        agent.process(items[lo:lo + batch])
    return 1e6 * (time.process_time() - c0) / N_MESSAGES


@pytest.fixture(scope="module")
def fourth_round(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgewatch.eval.detectors import novelty_levels

    return novelty_levels.write_model(tmp_path_factory.mktemp("nab") / "fourth-round.onnx",
                                      novelty_levels.fourth_round())


def test_nab_detector_cost_per_message(benchmark, fourth_round: Path) -> None:
    got: dict[str, float] = {}

    def run() -> None:
        got["default"] = _cpu_us_per_message(ROOT / "models" / "nab-best.onnx")
        got["fourth_round"] = _cpu_us_per_message(fourth_round)

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.group = "NAB detector in the agent"
    benchmark.extra_info.update({"suite": "nab_detector", "messages": N_MESSAGES,
                                 "default_cpu_us_per_message": got["default"],
                                 "fourth_round_cpu_us_per_message": got["fourth_round"],
                                 "ratio": got["default"] / got["fourth_round"]})
    assert got["default"] > 0 and got["fourth_round"] > 0
