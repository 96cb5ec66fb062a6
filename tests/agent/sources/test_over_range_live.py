"""Live, an instrument's over-range mark (``+Over``) is no silence (docs/fit.md, eighth walk-through).

A belt scale that saturates writes ``+Over`` for as long as the surge lasts. ``fit`` and the replay hold its last
value however long; live, the mark was held only up to the sensor's limit (3 of its intervals) like a silent
sensor, and a surge of a minute skipped its rows as ``stale_feature``. Each test here failed before the mark
refreshed the held value's time (``rows.BEYOND``); a sensor that truly goes silent still goes stale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgewatch.agent.sources.parsing import BadReason, Measurement
from edgewatch.agent.sources.rows import RowAssembler
from tests.modelkit import make_card, write_model

FEATURES = ["load", "speed", "current"]
T0 = 1_700_000_000
SURGES = [(100, 160), (300, 320), (450, 455)]  # rows of +Over: 60 s, 20 s and 5 s, each longer than 3 intervals


def _rows(n: int = 600, seed: int = 5) -> list[list[str]]:
    """A belt scale (+Over during each surge), its speed and the motor's current, one row a second."""
    rng = np.random.default_rng(seed)
    load = 380 + rng.normal(0, 10, n)
    out = []
    for k in range(n):
        over = any(a <= k < b for a, b in SURGES)
        out.append(["+Over" if over else f"{load[k]:.1f}", f"{2.5 + rng.normal(0, 0.01):.3f}",
                    f"{42 + 0.085 * load[k] + rng.normal(0, 0.8):.2f}"])
    return out


def _agent(tmp_path: Path, model: Path, source: str, name: str, stdin: bytes | None = None
           ) -> tuple[list[list[float]], dict]:
    """The installed command: (the rows it scored, in order, from its --record-run file; its summary)."""
    record, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", source, "--record-run", str(record), "--summary-json", str(summary), "-q"],
                          input=stdin, capture_output=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    return [x["v"] for x in lines if "m" in x], json.loads(summary.read_text())


def test_a_surge_of_marks_on_stdin_is_held_whole_and_gives_the_replays_rows(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=10, features=FEATURES, threshold=1e9))
    rows = _rows()
    csv = tmp_path / "belt.csv"
    csv.write_text("timestamp," + ",".join(FEATURES) + "\n"
                   + "".join(f"{T0 + k}," + ",".join(r) + "\n" for k, r in enumerate(rows)))
    replayed, replay_summary = _agent(tmp_path, model, f"replay:{csv}", "replay")
    lines = "".join(json.dumps({"ts": T0 + k, **dict(zip(FEATURES, r))}) + "\n" for k, r in enumerate(rows))
    live, summary = _agent(tmp_path, model, "stdin", "live", lines.encode())
    assert len(replayed) == len(rows), replay_summary
    assert summary["bad"] == {}, summary  # before: {"stale_feature": 76}, the rows of each surge past its 3rd s
    assert live == replayed  # the same rows, the scale's last value held through each surge
    held = [v[0] for v in live[SURGES[0][0]:SURGES[0][1]]]
    assert held == [live[SURGES[0][0] - 1][0]] * len(held)


def test_a_sensor_that_goes_silent_still_goes_stale_and_a_blank_is_no_mark(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=10, features=FEATURES, threshold=1e9))
    rows = _rows(200)
    lines = []
    for k, r in enumerate(rows):
        line = {"ts": T0 + k, **dict(zip(FEATURES, r))}
        if 100 <= k < 120:
            line["load"] = "+Over"
        elif 150 <= k < 170:
            del line["load"]  # the scale stops reporting
        elif 180 <= k < 190:
            line["load"] = ""  # a gateway's failed read: a blank, not a mark
        lines.append(json.dumps(line) + "\n")
    live, summary = _agent(tmp_path, model, "stdin", "silent", "".join(lines).encode())
    # the silence and the blanks are held 3 s each (rows 150-152, 180-182), then stale; the marks never are
    assert summary["bad"] == {"stale_feature": 17 + 7}, summary
    assert len(live) == 200 - 24


def test_a_mark_on_its_own_topic_refreshes_the_held_value_and_a_silence_does_not() -> None:
    """The one-topic-per-sensor form (MQTT's ``plant/belt/load``), through the reading parser the source uses."""
    rows = RowAssembler(FEATURES, source="mqtt")
    made: list[Measurement | BadReason] = []
    for k in range(60):
        t = float(T0 + k)
        made += rows.reading(b'{"value": "+Over"}' if 20 <= k < 40 else b"400.5", "belt", "load", t)
        if not 45 <= k < 55:  # the current's transmitter goes silent for 10 s
            made += rows.reading(b"76.1", "belt", "current", t)
        made += rows.reading(b"2.5", "belt", "speed", t)
    stale = [m for m in made if m is BadReason.STALE_FEATURE]
    good = [m for m in made if type(m) is Measurement]
    assert len(stale) == 7, made[-40:]  # rows 48-54: the current's value past 3 s; none during the 20 s of marks
    assert all(m.values[0] == 400.5 for m in good)
    assert len(good) == 60 - 7  # every other tick made its row (the speed, last, completes it)


def test_marks_on_their_own_mqtt_topics_give_the_replays_rows(tmp_path: Path, broker) -> None:  # noqa: ANN001
    """The walk-through's form: one topic per sensor through mosquitto, ``{"value": "+Over", "ts": t}`` as
    recorded; the root is this test's own (other tests leave retained topics on the session broker)."""
    from tests.agent.sources.broker_agent import run_agent_on_broker

    model = write_model(tmp_path / "m.onnx", make_card(window=10, features=FEATURES, threshold=1e9))
    rows = _rows(300)
    csv = tmp_path / "belt.csv"
    csv.write_text("timestamp," + ",".join(FEATURES) + "\n"
                   + "".join(f"{T0 + k}," + ",".join(r) + "\n" for k, r in enumerate(rows)))
    replayed, _ = _agent(tmp_path, model, f"replay:{csv}", "replay")

    record, summary = tmp_path / "mqtt.jsonl", tmp_path / "mqtt.json"
    messages = [(f"marks/belt/{name}", json.dumps({"value": cell if cell == "+Over" else float(cell), "ts": T0 + k}))
                for k, r in enumerate(rows) for name, cell in zip(FEATURES, r)]
    done = run_agent_on_broker(
        broker, [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source",
                 f"mqtt://{broker.host}:{broker.port}/marks/{{stream}}/{{feature}}", "--record-run", str(record),
                 "--summary-json", str(summary), "-q"], messages, tmp_path, tmp_path / "agent.err")
    assert done.returncode == 0, done.stderr[-2000:]
    live = [json.loads(x)["v"] for x in record.read_text().splitlines() if '"m"' in x]
    assert json.loads(summary.read_text())["bad"] == {}  # before: {"stale_feature": 56}, the surges past their 3rd s
    assert live == replayed
