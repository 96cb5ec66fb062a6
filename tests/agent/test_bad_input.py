"""Garbage on the wire: counted by reason, logged once per reason, skipped; good messages all scored."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import Agent, AgentOptions, BatchView
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import Backoff, Item, Kind, WebSocketSource
from tests.modelkit import make_card, write_model

WINDOW = 5
GOOD = "[0.5,0.5,0.5,0.5]"


class ScriptedServer:
    """A real websocket server (the ``websockets`` library) that sends each client a fixed list of frames."""

    def __init__(self, frames: list[str | bytes]) -> None:
        self.frames = frames
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        async def handle(conn) -> None:  # noqa: ANN001
            for f in self.frames:
                await conn.send(f)
            await conn.wait_closed()

        async with serve(handle, "127.0.0.1", 0, compression=None, max_size=2**16) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def close(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScoringModel:
    return ScoringModel(write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=WINDOW, threshold=9.0)))


BAD_FRAMES: dict[str, list[str | bytes]] = {
    "not_json": ["hello", "[0.5, 0.5,"],
    "wrong_arity": ["[0.5,0.5,0.5]", "[0.5,0.5,0.5,0.5,0.5]"],
    "non_finite": ["[NaN,0.5,0.5,0.5]", "[0.5,Infinity,0.5,0.5]"],
    "not_number": ['["0.5",0.5,0.5,0.5]', "[[0.5],0.5,0.5,0.5]"],
    "too_large": ["[" + "0.5," * (10 * 2**20 // 4) + "0.5]", "x" * (10 * 2**20)],  # two 10 MB frames
    "binary": [b"\x00\x01\x02\x03", b"[0.5,0.5,0.5,0.5]"],  # binary frames are refused even when they hold JSON
    "wrong_type": ['"a string"', '{"values": "0.5"}'],
}


def test_websocket_garbage_end_to_end(model: ScoringModel, caplog: pytest.LogCaptureFixture) -> None:
    frames: list[str | bytes] = [GOOD] * 6
    for bad in BAD_FRAMES.values():
        frames += bad + [GOOD] * 3
    n_good = frames.count(GOOD)
    server = ScriptedServer(frames)
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0))
    src = WebSocketSource(server.url, backoff=Backoff(base=5, cap=5))
    agent.add_source(src)
    scored: list[int] = []

    class Count:
        def on_batch(self, view: BatchView) -> None:
            scored.append(len(view.streams))

        def on_event(self, event: dict) -> None:
            pass

    observer = Count()
    agent.subscribe(observer.on_event, observer.on_batch)
    with caplog.at_level(logging.WARNING, logger="edgewatch.agent"):
        try:
            agent.run(duration=30, max_messages=len(frames))
        finally:
            server.close()
    assert agent.summary.messages == len(frames)
    assert agent.summary.bad == {reason: 2 for reason in BAD_FRAMES}
    assert sum(scored) == n_good and agent.summary.windows == n_good - WINDOW + 1
    warned = [r.getMessage() for r in caplog.records if "skipped bad input" in r.getMessage()]
    assert sorted(m.split(":")[1].split("(")[0].strip() for m in warned) == sorted(BAD_FRAMES)  # once per reason
    assert src.connects == 1


# -- property: ≥ 10,000 generated messages through the agent --------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False)
good_msg = st.one_of(
    st.lists(finite, min_size=4, max_size=4).map(json.dumps),
    st.builds(lambda v, t: json.dumps({"values": v, "ts": t}), st.lists(finite, min_size=4, max_size=4),
              st.floats(1e9, 2e9)),
)
bad_msg = st.one_of(
    st.binary(max_size=40).map(lambda b: b"\xff" + b),  # never valid UTF-8
    st.text(max_size=40).map(lambda t: "#" + t),  # never JSON
    st.lists(finite, max_size=8).filter(lambda v: len(v) != 4).map(json.dumps),
    st.tuples(st.lists(finite, min_size=3, max_size=3), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]))
    .map(lambda p: "[" + ",".join(map(repr, p[0])) + "," + p[1] + "]"),
    st.lists(st.one_of(st.text(max_size=5), st.none(), st.booleans(), st.lists(finite, max_size=2)),
             min_size=4, max_size=4).map(json.dumps),
    st.dictionaries(st.sampled_from(["x", "y", "val"]), finite, max_size=3).map(json.dumps),
    st.just("[" * 3000),
)

EXAMPLES = 40
PER_EXAMPLE = 260
TOTAL: list[int] = []


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(st.one_of(good_msg.map(lambda m: (True, m)), bad_msg.map(lambda m: (False, m))),
                min_size=PER_EXAMPLE, max_size=PER_EXAMPLE), st.integers(1, 64))
def test_generated_garbage_never_crashes_and_every_good_message_is_scored(model: ScoringModel, msgs, batch: int
                                                                          ) -> None:
    raws = [m for _, m in msgs]
    n_good = sum(1 for is_good, _ in msgs if is_good)
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0))
    rows: list[int] = []

    class Count:
        def on_batch(self, view: BatchView) -> None:
            rows.append(len(view.streams))

        def on_event(self, event: dict) -> None:
            pass

    observer = Count()
    agent.subscribe(observer.on_event, observer.on_batch)
    items = [Item(Kind.RAW, "s", r, 0.0) for r in raws]
    for lo in range(0, len(items), batch):
        agent.process(items[lo:lo + batch])
    TOTAL.append(len(items))
    assert agent.summary.messages == len(items)
    assert sum(agent.summary.bad.values()) == len(items) - n_good
    assert sum(rows) == n_good
    assert agent.summary.windows == max(0, n_good - WINDOW + 1)


def test_property_run_covered_ten_thousand_messages() -> None:
    """Guard: the property test above really pushed at least 10,000 messages (it runs first in this file)."""
    if not TOTAL:
        pytest.skip("run together with the property test")
    assert sum(TOTAL) >= 10_000
