"""What each input form costs the agent, per message, in interleaved rounds (issue 26 item 4).

The same rows, 100 streams, window 10, stride 3, a one-operation model (the
agent's own cost, not the network's), sent as: JSON arrays with a stream
(``{"stream": ..., "values": [...]}``, the path the row assembler must not
slow), objects keyed by feature name (one in seven with one value null, held
from the row before), and one MQTT-style reading per feature (four messages
a row, assembled in the source's thread: counted here in the same process).
Messages per CPU-second of the whole path, median over the rounds.
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
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.sources.rows import RowAssembler
from edgewatch.bench.agent_load import CountingSink

from .conftest import QUICK

FEATURES = ["cpu", "memory", "traffic", "fan"]
ROWS = 6_000 if QUICK else 20_000
STREAMS = 100
BATCH = 1024


@pytest.fixture(scope="module")
def trivial_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.modelkit import make_card, write_model

    card = make_card(window=10, features=FEATURES, threshold=0.2, stride=3)
    return write_model(tmp_path_factory.mktemp("rows") / "trivial.onnx", card)


def _rows(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(0.5 + 0.1 * rng.standard_normal((ROWS, len(FEATURES))), 5)


def _array_items(x: np.ndarray) -> list[Item]:
    return [Item(Kind.RAW, "bench", json.dumps({"stream": f"eq-{i % STREAMS}", "values": row.tolist()}), 0.0)
            for i, row in enumerate(x)]


def _keyed_items(x: np.ndarray) -> list[Item]:
    out = []
    for i, row in enumerate(x):
        obj = {"stream": f"eq-{i % STREAMS}", "ts": 1_700_000_000 + i // STREAMS, **dict(zip(FEATURES, row.tolist()))}
        if i % 7 == 3 and i >= STREAMS:  # not on a stream's first row: nothing to hold yet
            obj["memory"] = None
        out.append(Item(Kind.RAW, "bench", json.dumps(obj), float(obj["ts"])))  # received when sent
    return out


def _readings(x: np.ndarray) -> list[tuple[str, str, bytes, float]]:
    """(stream, feature, payload, received): received when it was sent, as a live source receives it."""
    return [(f"eq-{i % STREAMS}", f, json.dumps({"value": v, "ts": 1_700_000_000 + i // STREAMS}).encode(),
             1_700_000_000.0 + i // STREAMS) for i, row in enumerate(x) for f, v in zip(FEATURES, row.tolist())]


def _cpu_per_message(model: Path, form: str, payload: list) -> float:
    agent = Agent(ScoringModel(model), [CountingSink()], AgentOptions(stride=3, drift_every=0, agent_id="bench"))
    c = time.process_time()
    if form == "per-feature":
        rows = RowAssembler(FEATURES)
        items: list[Item] = []
        for stream, feature, raw, received in payload:
            for m in rows.reading(raw, stream, feature, received):
                items.append(Item(Kind.MEASUREMENT if type(m) is Measurement else Kind.BAD, "bench", m, 0.0))
            if len(items) >= BATCH:
                agent.process(items)
                items = []
        agent.process(items)
    else:
        for lo in range(0, len(payload), BATCH):
            agent.process(payload[lo:lo + BATCH])
    cpu = time.process_time() - c
    assert agent.summary.bad == {} and agent.summary.messages == ROWS
    return cpu / len(payload)


def test_input_forms_cost(benchmark, trivial_model: Path) -> None:
    x = _rows()
    payloads = {"array": _array_items(x), "keyed": _keyed_items(x), "per-feature": _readings(x)}
    rounds = 5
    per_cpu_s: dict[str, list[float]] = {k: [] for k in payloads}

    def run() -> None:
        for _ in range(rounds):
            for form, payload in payloads.items():
                per_cpu_s[form].append(1.0 / _cpu_per_message(trivial_model, form, payload))

    benchmark.pedantic(run, rounds=1, iterations=1)
    med = {k: sorted(v)[len(v) // 2] for k, v in per_cpu_s.items()}
    benchmark.group = "input forms"
    benchmark.extra_info.update({"suite": "input_forms", "streams": STREAMS, "rows": ROWS, "rounds": rounds,
                                 "messages_per_cpu_s": med, "keyed_vs_array": med["keyed"] / med["array"],
                                 "rows_per_cpu_s_per_feature": med["per-feature"] / len(FEATURES)})
    assert all(len(v) == rounds for v in per_cpu_s.values())
