"""The alert spool at its bound over a long broker outage, through the installed command (docs/agent.md, "Spool
bound"): the oldest undelivered alerts are dropped and counted, the newest are kept and delivered in order when
the broker is back, and the log's advice names an option that exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.modelkit import make_card, write_model

EPISODES = 400  # ~800 events of ~700 bytes: several times a 0.1 MB spool


def _agent(model: Path, broker, stdin: bytes, cwd: Path) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", "stdin", "--sink", f"mqtt://{broker.host}:{broker.port}/plant",
                           "--agent-id", "far", "--spool-max-mb", "0.1"],
                          input=stdin, capture_output=True, cwd=cwd, timeout=180)


def test_a_full_spool_keeps_the_newest_alerts_in_order_and_says_how_to_keep_more(tmp_path: Path, make_broker,
                                                                                  collector) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))
    broker = make_broker()  # not started: the plant's link to it is down
    rows = []
    for e in range(EPISODES):
        rows += [{"values": [0.5] * 4, "stream": "pump", "ts": 1_700_000_000 + 10 * e + i} for i in range(6)]
        rows += [{"values": [2.5] * 4, "stream": "pump", "ts": 1_700_000_000 + 10 * e + i} for i in range(6, 10)]
    away = _agent(model, broker, "".join(json.dumps(r) + "\n" for r in rows).encode(), tmp_path)
    err = away.stderr.decode()
    assert away.returncode == 0, err[-3000:]
    dropped = [int(n) for n in re.findall(r"dropped the oldest (\d+) undelivered", err)]
    assert dropped and sum(dropped) > EPISODES // 2, err[-3000:]
    advised = set(re.findall(r"raise (--[a-z-]+)", err))
    options = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--help"],
                             capture_output=True, text=True, timeout=60).stdout
    assert advised and all(option in options for option in advised), advised

    broker.start()  # back: the next start delivers what the spool kept
    sub = collector(broker, "plant/far/alerts", client_id="c-far")
    back = _agent(model, broker, b"", tmp_path)
    assert back.returncode == 0, back.stderr.decode()[-3000:]
    assert sub.wait_for(lambda c: len(c.events()) >= 2 * EPISODES - sum(dropped), 60)
    events = sub.events()
    assert len(events) == 2 * EPISODES - sum(dropped)  # every one kept, once
    times = [e["ts"] for e in events]
    assert times == sorted(times)  # in order
    assert (events[-1]["event"], events[-1]["ts"]) == ("end", 1_700_000_000 + 10 * (EPISODES - 1) + 9)  # the newest
    assert events[0]["ts"] > 1_700_000_000 + 10 * (EPISODES // 2)  # the oldest went
