"""The fleet contract's pure parts: model messages, status reading, promotion rules, shadow comparison."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgewatch.agent.lifecycle.shadow import PromotionRule, ShadowScorer, format_report, parse_duration
from edgewatch.fleet.status import format_table, read_status
from edgewatch.mqtt import payloads
from edgewatch.mqtt.topics import Topics
from edgewatch.wire.json import dumps


def test_model_messages_round_trip_and_old_form(tmp_path) -> None:  # noqa: ANN001
    f = tmp_path / "m.onnx"
    f.write_bytes(b"\x08\x07abc")
    msg = payloads.install_message(f, note="v2", shadow=True, promote_if="alerts_differ<=1,after=5m")
    back = payloads.ModelMessage.from_payload(msg.to_payload())
    assert back == msg
    old = b'{"sha256": "%s", "name": "m.onnx", "onnx_b64": "CAdhYmM="}' % msg.sha256.encode()
    legacy = payloads.ModelMessage.from_payload(old)
    assert (legacy.action, legacy.id, legacy.data, legacy.shadow) == ("install", msg.sha256, f.read_bytes(), False)
    rb = payloads.ModelMessage.from_payload(payloads.action_message("rollback", note="bad").to_payload())
    assert rb.action == "rollback" and rb.data is None and rb.note == "bad" and rb.grant is None
    grant = {"format": "edgewatch-rollback/1", "agent": "a1", "sha256": "ab" * 32, "release": 7}
    signed = payloads.action_message("rollback", sha256="ab" * 32, grant=grant, message_id="m1")
    assert payloads.ModelMessage.from_payload(signed.to_payload()) == signed  # carried as it is, read by the agent
    assert b'"grant"' not in payloads.action_message("promote").to_payload()
    for bad, why in ((b'{"v": 2, "action": "install"}', "contract version 2"),
                     (b'{"action": "explode"}', "not one of"), (b"[1]", "not a JSON object"),
                     (b'{"sha256": "00"}', "onnx_b64"), (b'{"action": "rollback", "grant": "yes"}', "grant")):
        with pytest.raises(payloads.ContractError, match=why):
            payloads.ModelMessage.from_payload(bad)


def test_topics() -> None:
    assert Topics("plant/1", "a").topic("status") == "plant/1/a/status"
    assert Topics.every_agent("plant/1").agent_of("plant/1/a/status") == "a"
    assert Topics.every_agent("plant/1").agent_of("plant/2/a/status") is None
    assert Topics.every_agent("plant/1").agent_of("plant/1/a/b/status") is None


def test_status_reading_and_staleness() -> None:
    now = time.time()
    fresh = dumps({"v": 1, "agent": "a", "state": "online", "ts": now - 2, "interval_s": 5,
                   "stale_after_s": 35, "model": {"sha256": "ab" * 32, "note": "v3", "since": "t"},
                   "bad": 4, "messages_per_s": 12.5, "previous_model": {"sha256": "cd" * 32}}).encode()
    row = read_status("a", fresh, now)
    assert (row.state, row.model_sha256, row.note, row.bad) == ("online", "ab" * 32, "v3", 4)
    assert row.previous_sha256 == "cd" * 32  # what 'model rollback --key' signs for
    stale = read_status("a", fresh, now, now=now + 60)
    assert stale.state == "offline" and "no status for 62 s" in stale.reason
    will = read_status("b", payloads.offline_will("b"), now)
    assert will.state == "offline" and "last will" in will.reason and will.model_sha256 is None
    assert read_status("c", b"online", now).state == "online"  # an agent of the first versions
    assert read_status("d", b'{"v": 9, "state": "online"}', now).state == "unknown"
    table = format_table([row, will])
    assert "v3" in table and "abababababab" in table and "last will" in table


def test_promotion_rule() -> None:
    rule = PromotionRule.parse("alerts_differ<=2, after=1.5m")
    assert (rule.max_differ, rule.after_s) == (2, 90.0)
    assert rule.check(0, 60)[0] is False  # too early, however quiet
    assert rule.check(3, 100) == (False, "3 episode(s) differ, more than 2")
    ok, why = rule.check(2, 100)
    assert ok and "holds" in why
    for bad in ("alerts_differ<=2", "after=5m", "alerts_differ<2,after=1m", "after=5x,alerts_differ<=1",
                "alerts_differ<=1,after=1m,after=2m"):
        with pytest.raises(ValueError):
            PromotionRule.parse(bad)
    assert parse_duration("2h") == 7200.0 and parse_duration("10") == 10.0


class _Model:
    sha256 = "cd" * 32

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def score_many(self, x: np.ndarray):  # noqa: ANN201
        from edgewatch.agent.model import ScoreBatch

        s = x.reshape(len(x), -1).mean(axis=1) * self.factor
        return ScoreBatch(s.astype(np.float32), np.zeros((len(x), 1), np.float32))


class _Runtime:
    def __init__(self, factor: float, threshold: float) -> None:
        from edgewatch.agent.episodes import EpisodeTracker
        from edgewatch.agent.postprocess import make_postprocessor
        from edgewatch.contract import PostProcess

        self.model = _Model(factor)
        self.sha256 = self.model.sha256
        self.post = make_postprocessor(PostProcess())
        self.tracker = EpisodeTracker(1, 1)
        self.threshold = threshold


def test_shadow_scorer_compares_episodes_and_scores() -> None:
    t = 1000.0
    shadow = ShadowScorer(_Runtime(2.0, 1.0), live_threshold=1.0, note="v2",
                          rule=PromotionRule.parse("alerts_differ<=0,after=0s"), started=t)
    streams = ["s0", "s1"]
    for step, (x0, x1) in enumerate([(0.2, 0.2), (0.8, 0.2), (0.8, 0.2), (0.2, 0.2)]):
        x = np.array([[x0], [x1]], np.float32).reshape(2, 1, 1)
        live = np.array([x0 * 2.5, x1], np.float64)  # live over on s0 at 0.8 (2.0), not at 0.2 (0.5)
        shadow.score(x, np.array([0, 1]), [(0, t + step, step), (1, t + step, step)], live, streams)
    assert shadow.windows == 8 and shadow.over_shadow == 2 and shadow.over_live == 2
    # the live agent's own alerts for s0 steps 1..3, and one on s1 that the shadow never saw
    for ev in ({"event": "start", "stream": "s0", "ts": t + 1, "score": 2.0},
               {"event": "end", "stream": "s0", "ts": t + 3, "score": 2.0},
               {"event": "start", "stream": "s1", "ts": t + 2, "score": 1.5},
               {"event": "end", "stream": "s1", "ts": t + 2.5, "score": 1.5}):
        shadow.on_live_event(ev)
    report = shadow.report("ab" * 32, now=t + 10)
    assert report["live"]["episodes"] == 2 and report["shadow"]["episodes"] == 1
    assert report["alerts_differ"] == 1 and [e["stream"] for e in report["only_live"]] == ["s1"]
    assert report["only_shadow"] == []
    assert report["score_correlation"] == pytest.approx(
        np.corrcoef([0.5, 0.2, 2.0, 0.2, 2.0, 0.2, 0.5, 0.2], [0.4, 0.4, 1.6, 0.4, 1.6, 0.4, 0.4, 0.4])[0, 1])
    assert report["promote_if"]["holds"] is False and "more than 0" in report["promote_if"]["why"]
    text = format_report(report)
    assert "1 differ" in text and "only live   s1" in text, text
    json.dumps(report, allow_nan=False)  # always serializable (no NaN)


def test_publish_checks_the_file_before_it_connects(tmp_path) -> None:  # noqa: ANN001
    """No broker listens on the URL: every refusal here happens before a connection is tried."""
    from click.testing import CliRunner

    from edgewatch.agent.lifecycle.signing import generate_keypair, load_private_key, sign_bytes
    from edgewatch.cli import main
    from tests.modelkit import make_card, write_model

    generate_keypair(tmp_path / "k")
    generate_keypair(tmp_path / "other")
    raw = write_model(tmp_path / "m.onnx", make_card(window=5))
    signed = tmp_path / "s.onnx"
    signed.write_bytes(sign_bytes(raw.read_bytes(), load_private_key(tmp_path / "k")))
    edited = tmp_path / "e.onnx"
    edited.write_bytes(signed.read_bytes().replace(b"0.25", b"0.99"))
    url = "mqtt://127.0.0.1:9/plant"
    runner = CliRunner()
    cases = [
        ([str(raw)], 3, "is not signed"),
        ([str(signed), "--trust-key", str(tmp_path / "other.pub")], 3, "not a trusted key"),
        ([str(edited)], 3, "changed after it was signed"),
        ([str(signed), "--promote-if", "alerts_differ<=1,after=1m"], 2, "needs --shadow"),
        ([str(signed), "--shadow", "--promote-if", "alerts_differ<=1"], 2, "lacks after"),
    ]
    for args, code, reason in cases:
        res = runner.invoke(main, ["model", "publish", *args, "--broker", url])
        assert res.exit_code == code and reason in res.output, (args, res.output)
    res = runner.invoke(main, ["model", "publish", str(signed), "--broker", url, "--connect-timeout", "0.5"])
    assert res.exit_code == 1 and "cannot reach the MQTT broker" in res.output, res.output
