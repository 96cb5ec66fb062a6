"""A model swap with 2,500 open episodes: how fast their ends go through a spooling (MQTT) sink.

Each end is an alert the spool must keep. They were fsynced one at a time in
the agent's loop; now a loop iteration's alerts share one fsync
(tests/agent/sinks/test_grouped_sync.py counts them: 601 -> 3 for 300
streams). Measured on the disk under the pytest tmp dir and on a tmpfs
(/dev/shm, where an fsync costs almost nothing), so the two show what the
sync itself costs here. A slow disk (an SD card, 5-10 ms a sync) could not
be made here (no dm-delay); on one the gain is about (ends x sync time).
``ends_per_s`` is in each result's extra_info. The broker is down (nothing
listens on the port): every alert stays in the spool, as in an outage.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import DriftSettings, load_runtime
from edgewatch.agent.sinks import SinkContext, make_sink
from edgewatch.agent.sources import Item, Kind
from tests.conftest import free_port
from tests.modelkit import make_card, write_model

EPISODES = 2500


@pytest.fixture(params=["disk", "tmpfs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    if request.param == "disk":
        yield tmp_path
        return
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    path = shm / f"edgewatch-bench-{uuid.uuid4().hex}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_ends_at_a_swap_with_2500_open_episodes(benchmark, storage: Path, tmp_path: Path) -> None:
    card = make_card(window=2, threshold=0.5, k=1, n=1)
    first, second = write_model(tmp_path / "a.onnx", card), write_model(tmp_path / "b.onnx", card)
    sink = make_sink(f"mqtt://127.0.0.1:{free_port()}/plant",
                     SinkContext(agent_id="bench", spool_dir=storage / "spool", spool_max_bytes=512 * 2**20,
                                 connect=False))
    agent = Agent(ScoringModel(first), [sink], AgentOptions(drift_every=0, agent_id="bench", stream_ttl=0))
    hot = [Item(Kind.RAW, "bench", json.dumps({"stream": f"m{s}", "a": 3, "b": 3, "c": 3, "d": 3}), 0.0)
           for s in range(EPISODES)]
    models = [second, first]

    def open_episodes() -> None:
        agent.process(hot + hot)  # every stream over the threshold: one open episode each
        assert len(agent.runtime.tracker.open_slots()) == EPISODES
        agent.queue_model(load_runtime(models[0], drift_settings=DriftSettings(every=0)))
        models.reverse()

    def swap() -> None:
        agent.process([])  # the swap: every open episode ends, 2,500 end alerts into the spool

    try:
        benchmark.pedantic(swap, setup=open_episodes, rounds=3 if storage == tmp_path else 5, iterations=1)
        assert not agent.runtime.tracker.open_slots()
    finally:
        agent.close()
    benchmark.extra_info["episodes"] = EPISODES
    benchmark.extra_info["ends_per_s"] = round(EPISODES / benchmark.stats.stats.mean)
