"""Two agents with one ``--agent-id`` take each other's MQTT session over: said once, with the advice.

Before: each kicked the other off the broker about 4 times a second, and
each time logged only "connection lost (Unspecified error)" (149 times in
40 s, issue 24 item 6). The broker's log shows the takeovers for real here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgewatch.mqtt.connection import STABLE_SECONDS, TAKEOVER_SECONDS, TAKEOVER_SESSIONS, TakeoverWatch
from tests.modelkit import make_card, write_model

SAID = "another client is most likely connected with the same client id"


def test_the_rhythm_of_a_takeover_is_told_from_a_lost_connection() -> None:
    w = TakeoverWatch()
    t = 0.0
    verdicts = []
    for lasted in [0.2] * (TAKEOVER_SESSIONS + 4):
        w.began(t)
        t += lasted
        verdicts.append(w.ended(t))
    assert verdicts == [None] * (TAKEOVER_SESSIONS - 1) + ["takeover"] + [None] * 4 and w.taken_over
    w.began(t)
    assert w.ended(t + STABLE_SECONDS) == "stable" and not w.taken_over
    for _ in range(TAKEOVER_SESSIONS - 1):  # short sessions with the broker down in between: not a takeover
        w.began(t)
        assert w.ended(t + 0.1) is None
        w.attempt_failed()
    w.began(t)
    assert w.ended(t + TAKEOVER_SECONDS + 1) is None and w.short == 0


def test_two_agents_with_one_agent_id_are_told_so_once(broker, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=4, threshold=0.5))
    procs = []
    for i, agent_id in enumerate(["twin", "twin", "single"]):
        folder = tmp_path / f"agent{i}"
        folder.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", "stdin",
             "--sink", f"mqtt://{broker.host}:{broker.port}/plant", "--agent-id", agent_id],
            cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        time.sleep(15)
    finally:
        errs = [p.communicate(input="", timeout=60)[1] for p in procs]  # stdin's end stops each agent
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    kicked = broker.log().count("Client edgewatch-twin already connected, closing old connection")
    assert kicked >= 2 * TAKEOVER_SESSIONS, broker.log()[-3000:]  # the broker really took sessions over
    for err in errs[:2]:
        assert err.count(SAID) == 1, err[-3000:]
        assert "Give every agent a unique --agent-id" in err
        assert err.count("MQTT connection to") <= TAKEOVER_SESSIONS, err[-3000:]  # not one line per kick
        assert err.count("alerts wait in the spool") <= TAKEOVER_SESSIONS, err[-3000:]
    assert SAID not in errs[2] and "lost" not in errs[2]
