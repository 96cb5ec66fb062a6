"""CPU per message through the whole agent with the default NAB detector, beside the file it replaced.

One stream of bare one-value JSON arrays (a seeded daily cycle with noise
and a few shifts, so both post-process parts work), stride 1, through
:meth:`Agent.process`: parse, window, ONNX call, post-process, episodes.
The default (``models/nab-best.onnx``) passes each value through its graph
and computes the subsequence distance in its ``novelty`` post-process; the
third-round file computed it in a 384-row graph. Both run in one session,
so their ratio is the figure to read.
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
WARM = 1_000  # past the 384-row history and the likelihood's 100 learning rows


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
def third_round(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgewatch.eval.detectors import levels, novelty

    cfg = novelty.NoveltyConfig(scales=[(384, 32), (384, 16)])
    cfg.likelihood = {**cfg.likelihood, "hold": 100}
    return novelty.write_model(tmp_path_factory.mktemp("nab") / "third-round.onnx", cfg,
                               levels=levels.LevelsConfig(params={"bins": 8, "range_rows": 384, "rest": 100,
                                                                  "cap": 4096}))


def test_nab_detector_cost_per_message(benchmark, third_round: Path) -> None:
    got: dict[str, float] = {}

    def run() -> None:
        got["default"] = _cpu_us_per_message(ROOT / "models" / "nab-best.onnx")
        got["third_round"] = _cpu_us_per_message(third_round)

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.group = "NAB detector in the agent"
    benchmark.extra_info.update({"suite": "nab_detector", "messages": N_MESSAGES,
                                 "default_cpu_us_per_message": got["default"],
                                 "third_round_cpu_us_per_message": got["third_round"],
                                 "ratio": got["default"] / got["third_round"]})
    assert got["default"] > 0 and got["third_round"] > 0
