"""Messages per second from a real mosquitto on loopback into the agent, through the MQTT source.

The messages are published first, while the agent is away, into its
persistent QoS 1 session; then the agent starts and the clock runs from
its start until it has taken all of them. So the figure is the agent's
intake (paho's network loop, decoding, the queue, the agent loop with
the model), not the publisher's speed. QoS 1 as the source uses it: every
message is acknowledged (mosquitto's window: 100 in flight).
Payload forms: the JSON array, and Sparkplug B DDATA (alias-only metrics).
Models: a trivial one-operation model of the S0 shape (the intake's own
cost) and the S0 LSTM-AE in int8 (what the agent runs; there the model's
time dominates). Report both messages per wall second and per CPU second
of the agent's process: on a shared machine the wall figure is bounded by
the CPU the process gets.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import make_source
from edgewatch.wire.sparkplug import encode_metric, encode_payload
from edgewatch.bench.agent_load import CountingSink

from .conftest import QUICK

N_MESSAGES = 20_000 if QUICK else 60_000
FEATURES = ["cpu", "memory", "traffic", "fan"]


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from tests.conftest import MOSQUITTO, Broker

    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    broker = Broker(tmp_path_factory.mktemp("bench-mosquitto")).start()
    yield broker
    broker.stop()


def _messages(form: str, n: int) -> tuple[str, list[tuple[str, bytes]]]:
    if form == "json":
        return "bench/json/+", [(f"bench/json/eq{i % 4}", json.dumps([0.4 + (i % 7) * 0.01, 0.5, 0.3, 0.6]).encode())
                                for i in range(n)]
    births = [(f"spBv1.0/bench/DBIRTH/gw/eq{d}",
               encode_payload([encode_metric(f, 0.5, alias=j + 1) for j, f in enumerate(FEATURES)])) for d in range(4)]
    data = [(f"spBv1.0/bench/DDATA/gw/eq{i % 4}",
             encode_payload([encode_metric(None, 0.4 + (i % 7) * 0.01, alias=1 + i % 4)], timestamp=1_700_000_000_000 + i))
            for i in range(n - 4)]
    return "spBv1.0/bench/%23", births + data


def _publish_all(broker, messages: list[tuple[str, bytes]]) -> None:  # noqa: ANN001
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def intake(model_path: Path, broker, form: str, n: int, agent_id: str) -> dict:  # noqa: ANN001
    topic_filter, messages = _messages(form, n)
    url = f"mqtt://{broker.host}:{broker.port}/{topic_filter}"
    # first run: create the session (the subscription), then leave
    warm = Agent(ScoringModel(model_path), [CountingSink()], AgentOptions(agent_id=agent_id, drift_every=0))
    src = make_source(url, FEATURES, agent_id=agent_id)
    warm.add_source(src)
    runner = threading.Thread(target=warm.run)
    runner.start()
    deadline = time.monotonic() + 20
    while src.connects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    warm.request_stop()
    runner.join(10)
    _publish_all(broker, messages)
    agent = Agent(ScoringModel(model_path), [CountingSink()], AgentOptions(agent_id=agent_id, drift_every=0))
    agent.add_source(make_source(url, FEATURES, agent_id=agent_id))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    runner = threading.Thread(target=agent.run)
    runner.start()
    deadline = time.monotonic() + 120
    while agent.summary.messages < n and time.monotonic() < deadline:
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    agent.request_stop()
    runner.join(10)
    calls = sum(m.value for m in agent.metrics.batch_size.collect()[0].samples if m.name.endswith("_count"))
    return {"messages": agent.summary.messages, "windows_per_call": agent.summary.windows / max(1, calls), "bad": sum(agent.summary.bad.values()), "seconds": seconds,
            "messages_per_s": agent.summary.messages / seconds, "messages_per_cpu_s": agent.summary.messages / cpu,
            "windows": agent.summary.windows}


@pytest.fixture(scope="module")
def trivial_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-operation model of the S0 shape: the intake's own cost, without a network's."""
    from tests.modelkit import make_card, write_model

    card = make_card(window=10, features=FEATURES, threshold=0.2, stride=3)
    return write_model(tmp_path_factory.mktemp("trivial") / "trivial.onnx", card)


@pytest.mark.parametrize("model", ["trivial", "s0-int8"])
@pytest.mark.parametrize("form", ["json", "sparkplug"])
def test_mqtt_source_intake(benchmark, s0, trivial_model: Path, mosquitto, form: str, model: str) -> None:
    path = trivial_model if model == "trivial" else s0.shipped
    result = benchmark.pedantic(intake, args=(path, mosquitto, form, N_MESSAGES, f"bench-{form}-{model}"),
                                rounds=1, iterations=1)
    benchmark.group = "mqtt source intake"
    benchmark.extra_info.update({"suite": "mqtt_source", "form": form, "model": model, **result})
    assert result["messages"] == N_MESSAGES and result["bad"] == 0
