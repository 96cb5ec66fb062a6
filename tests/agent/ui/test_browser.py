"""The live page in a real headless Chromium while the simulator injects a fault.

Simulator (websocket, two equipments) → agent in-process (WebSocketSource,
the square test model whose score is far over the threshold during an
overload and under it otherwise; its card holds each feature's training
range) → live page → Chromium. The bars' colours, the 1.0 line of
anomaly_score, the feature lanes with their training band and the
episode table's features are read from what the page drew.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import WebSocketSource
from edgewatch.data.faults import FEATURES, FaultSpec
from edgewatch.data.simulator import simulate_series
from edgewatch.data.simulator_server import ServerConfig, SimulatorServer
from edgewatch.plot.browser import HeadlessChromium, find_chromium
from tests.conftest import live_page
from tests.modelkit import make_card, write_model

pytestmark = [pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
              pytest.mark.timeout(180)]

RATE = 40.0
WINDOW = 10
FAULT_AT = 200  # messages: 5 s into the stream
GREEN, RED = "#2e9e44", "#d62728"

BARS_JS = """[...document.querySelectorAll('#scores rect.bar')]
  .map(r => [parseFloat(r.dataset.ts), r.getAttribute('fill'), r.dataset.over, parseFloat(r.dataset.anomaly)])"""
LANES_JS = """[...document.querySelectorAll('#signals g.lane')].map(g => {
  const r = g.querySelector('rect.range'); return [parseFloat(r.dataset.low), parseFloat(r.dataset.high),
  parseFloat(g.dataset.hi)]; })"""


def test_bars_are_green_before_the_fault_and_red_during_it(tmp_path: Path) -> None:
    nominal = simulate_series(2000, seed=4).values
    ranges = {f: [float(nominal[:, j].min()), float(nominal[:, j].max())] for j, f in enumerate(FEATURES)}
    card = make_card(window=WINDOW, features=list(FEATURES), threshold=0.15, stride=2, k=2, n=3,
                     training_range=ranges)
    model = ScoringModel(write_model(tmp_path / "square.onnx", card))
    truth_path = tmp_path / "truth.jsonl"
    config = ServerConfig(rate=RATE, streams=2, with_time=True, faults="schedule",
                          schedule=(FaultSpec.at("overload", FAULT_AT),), truth_path=truth_path, seed=4)
    with SimulatorServer(config) as sim:
        agent = Agent(model, [], AgentOptions(drift_every=0, agent_id="browser-test"))
        agent.add_source(WebSocketSource(sim.url))
        ui = live_page(agent, "127.0.0.1:0")
        runner = threading.Thread(target=agent.run, kwargs={"duration": 120}, daemon=True)
        runner.start()
        try:
            with HeadlessChromium(width=1200, height=820) as browser:
                browser.navigate(ui.url)
                browser.wait_for("document.querySelectorAll('#scores rect.bar').length > 0", timeout=30)
                first = browser.evaluate("document.querySelectorAll('#scores rect.bar').length")
                # live: more bars arrive without reloading
                browser.wait_for(f"document.querySelectorAll('#scores rect.bar').length > {first}", timeout=30)
                # until the overload has ended on both equipments and a few nominal bars followed it
                browser.wait_for("window.edgewatch.episodes.some(e => e.end !== null)", timeout=60)
                sim_truth = _wait_truth(truth_path)
                fault = sim_truth["eq-0"]
                browser.wait_for(f"[...document.querySelectorAll('#scores rect.bar')]"
                                 f".some(r => parseFloat(r.dataset.ts) > {fault['end_ts'] + 1.0})", timeout=30)
                assert browser.evaluate("window.edgewatch.stream") == "eq-0"
                _assert_colours(browser.evaluate(BARS_JS), fault)
                bands = browser.evaluate("[...document.querySelectorAll('#scores rect.episode')]"
                                         ".map(r => [parseFloat(r.dataset.start), r.dataset.end])")
                assert any(fault["start_ts"] <= s < fault["end_ts"] for s, _ in bands), bands
                line = browser.evaluate("(l => [l.dataset.threshold, l.dataset.score])"
                                        "(document.querySelector('#scores line.threshold'))")
                assert line == ["1", "0.15"]  # the 1.0 line of anomaly_score is the raw threshold 0.15
                assert browser.evaluate("document.querySelectorAll('#signals polyline.signal').length") == 4
                # one lane per feature with its training band; the overload (all features near 1) lies above it
                lanes = browser.evaluate(LANES_JS)
                assert [round(lo, 6) for lo, _, _ in lanes] == [round(ranges[f][0], 6) for f in FEATURES]
                assert all(top > high for _, high, top in lanes), lanes
                features = browser.evaluate("[...document.querySelectorAll('#episodes td.features')]"
                                            ".map(td => td.textContent)")
                assert features and all(re.search(r"(cpu|memory|traffic|fan) \d+%", f) for f in features), features
                shot = browser.screenshot(tmp_path / "live-page.png")
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

                # the picker lists both equipments; picking eq-1 shows only eq-1
                names = browser.evaluate("[...document.querySelectorAll('#stream option')].map(o => o.value)")
                assert names == ["eq-0", "eq-1"]
                browser.evaluate("(() => { const s = document.getElementById('stream'); s.value = 'eq-1';"
                                 " s.dispatchEvent(new Event('change')); return true; })()")
                other = sim_truth["eq-1"]
                # wait for the page to have *drawn* eq-1's history (the data arrives before the next frame)
                browser.wait_for(f"window.edgewatch.stream === 'eq-1' && window.edgewatch.w.t.length > 0"
                                 f" && window.edgewatch.w.t[0] < {fault['start_ts']}"
                                 f" && [...document.querySelectorAll('#scores rect.bar')]"
                                 f".filter(r => parseFloat(r.dataset.ts) >= {other['end_ts']}).length > 0",
                                 timeout=30)
                assert "stream=eq-1" in browser.evaluate("location.search")
                _assert_colours(browser.evaluate(BARS_JS), other)
        finally:
            agent.request_stop()
            runner.join(10)
            ui.stop()


def _wait_truth(path: Path) -> dict[str, dict]:
    """The fault records of both equipments (written by the simulator when each fault ends)."""
    def read() -> dict[str, dict]:
        if not path.exists():
            return {}
        return {r["stream"]: r for r in map(json.loads, path.read_text().splitlines()) if r}
    for _ in range(300):
        records = read()
        if len(records) == 2:
            return records
        threading.Event().wait(0.1)
    raise AssertionError(f"the simulator wrote no truth for both streams: {read()}")


def _assert_colours(bars: list[list], fault: dict) -> None:
    start, end = fault["start_ts"], fault["end_ts"]
    before = [fill for ts, fill, *_ in bars if ts < start]
    # windows entirely inside the overload (the window needs WINDOW messages to fill up)
    during = [fill for ts, fill, *_ in bars if start + (WINDOW + 2) / RATE <= ts < end]
    assert len(before) >= 10 and len(during) >= 10, (len(before), len(during))
    assert set(before) == {GREEN}, "bars before the fault must all be green"
    assert set(during) == {RED}, "bars during the fault must all be red"
    assert all((fill == RED) == (over == "1") == (anomaly > 1) for _, fill, over, anomaly in bars)
