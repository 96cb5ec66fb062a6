"""A quiet start: a stream's episodes held for its first seconds of its own time, counted, never sent.

The rules are checked against the plain tracker (what is held is what it
would have sent; after the quiet start it behaves as a fresh one), then the
agent is run as the README runs it, on a replayed daily cycle with NAB's
default detector: its first-day false episode goes, the later ones stay.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgewatch.agent.assemble import agent_options
from edgewatch.agent.config import AgentConfig, read_config
from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.episodes import EpisodeTracker
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.sinks.stdout import StdoutSink
from edgewatch.agent.runtime import Overrides, load_runtime
from edgewatch.agent.sources import ReplaySource
from edgewatch.errors import BadOverride

ROOT = Path(__file__).resolve().parents[2]
NAB_DEFAULT = ROOT / "models" / "nab-best.onnx"
DAY = 86400.0

rules = st.tuples(st.integers(1, 4), st.integers(0, 3), st.integers(1, 6)).map(
    lambda t: (t[0], t[0] + t[1], t[2]))  # k, n >= k, m
patterns = st.lists(st.booleans(), min_size=1, max_size=80)


def _starts_and_ends(tracker: EpisodeTracker, pattern: list[bool], t0: int = 0) -> list[tuple[int, str, int]]:
    """(window, kind, episode start) of every transition, window i at time t0 + i seconds."""
    return [(t0 + i, t.kind, t.episode.start_seq) for i, o in enumerate(pattern)
            if (t := tracker.update(0, o, float(o), float(t0 + i), t0 + i))]


@settings(max_examples=200, deadline=None)
@given(rules, patterns)
def test_what_is_held_is_what_would_have_been_sent(rule: tuple[int, int, int], pattern: list[bool]) -> None:
    k, n, m = rule
    plain = _starts_and_ends(EpisodeTracker(k, n, m), pattern)
    quiet = EpisodeTracker(k, n, m, quiet_start=len(pattern))  # every window inside it
    assert _starts_and_ends(quiet, pattern) == []
    assert quiet.take_held() == sum(kind == "start" for _, kind, _ in plain)
    assert quiet.take_held() == 0  # taken once


@settings(max_examples=200, deadline=None)
@given(rules, patterns, patterns)
def test_after_the_quiet_start_the_tracker_is_a_fresh_one(rule: tuple[int, int, int], first: list[bool],
                                                          then: list[bool]) -> None:
    """What the quiet start saw does not count towards the first episode after it."""
    k, n, m = rule
    quiet = EpisodeTracker(k, n, m, quiet_start=len(first))
    assert _starts_and_ends(quiet, first) == []
    assert _starts_and_ends(quiet, then, t0=len(first)) == _starts_and_ends(EpisodeTracker(k, n, m), then,
                                                                              t0=len(first))


@settings(max_examples=100, deadline=None)
@given(rules, st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=120),
       st.integers(1, 60))
@example(rule=(1, 1, 3), windows=[(0, True), (0, False), (0, False), (0, False), (0, True)], quiet=60)
def test_update_many_is_update_one_by_one(rule: tuple[int, int, int], windows: list[tuple[int, bool]],
                                          quiet: int) -> None:
    """Three streams starting at different times: the batch path skips no window the quiet start needs
    (the example: a held episode ends after m > n quiet windows, and the next one is counted)."""
    k, n, m = rule
    one, many = EpisodeTracker(k, n, m, quiet_start=quiet), EpisodeTracker(k, n, m, quiet_start=quiet)
    slots, over = [s for s, _ in windows], [o for _, o in windows]
    ts = [float(i) for i in range(len(windows))]
    want = [(i, t.kind, t.slot) for i, (s, o) in enumerate(windows) if (t := one.update(s, o, 1.0, ts[i], i))]
    got = [(i, t.kind, t.slot) for i, t in many.update_many(slots, over, [1.0] * len(windows), ts,
                                                             list(range(len(windows))))]
    assert got == want and one.take_held() == many.take_held()


def test_a_reset_stream_is_quiet_again_an_open_episode_is_left_to_close() -> None:
    tracker = EpisodeTracker(1, 1, 1, quiet_start=10)
    assert tracker.update(0, True, 1.0, 0.0, 0) is None and tracker.take_held() == 1
    tracker.update(0, False, 0.0, 20.0, 1)
    assert tracker.update(0, True, 1.0, 21.0, 2).kind == "start"
    tracker.reset(0)  # its source reconnected with an episode open: the quiet windows still end it
    assert tracker.update(0, False, 0.0, 22.0, 3).kind == "end"
    tracker.reset(0)  # no episode open: the stream's detector learns it again
    assert tracker.update(0, True, 1.0, 23.0, 4) is None and tracker.take_held() == 1
    assert tracker.update(0, True, 1.0, 40.0, 5).kind == "start"


def test_off_by_default_and_refused_when_not_a_duration() -> None:
    assert EpisodeTracker().quiet_start == 0 and AgentConfig().model.quiet_start == 0
    tracker = EpisodeTracker(1, 1)
    assert tracker.update(0, True, 1.0, 0.0, 0).kind == "start"
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="quiet start"):
            EpisodeTracker(1, 1, quiet_start=bad)
        with pytest.raises(BadOverride, match="--quiet-start"):  # the agent's options say which setting
            load_runtime(NAB_DEFAULT, Overrides(quiet_start=bad))


# -- the agent, as the README runs it ----------------------------------------------------------------------

def _daily_cycle(path: Path, seed: int = 1) -> Path:
    """Three days at 5 minutes, 20 at night and 80 from 9 to 18 h, a little noise: nothing anomalous."""
    rng = np.random.default_rng(seed)
    n = 3 * 288
    hour = (np.arange(n) * 5 / 60) % 24
    x = np.where((hour >= 9) & (hour < 18), 80.0, 20.0) + rng.normal(0, 1.0, n)
    t = 1.7e9 + 300 * np.arange(n)
    path.write_text("timestamp,value\n" + "".join(f"{a:.0f},{b:.3f}\n" for a, b in zip(t.tolist(), x.tolist())))
    return path


def _run(cwd: Path, *flags: str) -> tuple[list[dict], dict, str]:
    data = _daily_cycle(cwd / "day.csv")
    alerts, summary = cwd / "alerts.jsonl", cwd / "summary.json"
    alerts.unlink(missing_ok=True)
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(NAB_DEFAULT),
                          "--source", f"replay:{data}", "--sink", f"jsonl:{alerts}", "--summary-json",
                          str(summary), *flags], capture_output=True, text=True, timeout=120, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in alerts.read_text().splitlines()] if alerts.exists() else []
    return events, json.loads(summary.read_text()), run.stderr


def _start_days(events: list[dict]) -> list[tuple[int, int]]:
    t0 = 1.7e9
    return [(int((e["ts"] - t0) // DAY), e["seq"]) for e in events if e["event"] == "start"]


def test_the_first_days_false_episode_is_held_the_later_ones_are_sent(tmp_path: Path) -> None:
    default_events, default_summary, default_err = _run(tmp_path)
    default_starts = _start_days(default_events)
    # the default form: NAB's default raises a false episode 9 h into the stream (the cycle's first rise)
    assert (0, 108) in default_starts, default_starts
    assert default_summary["episodes_held"] == 0 and "quiet start" not in default_err
    events, summary, err = _run(tmp_path, "--quiet-start", str(DAY))
    starts = _start_days(events)
    assert starts == [s for s in default_starts if s[0] >= 1], (starts, default_starts)
    assert summary["episodes_held"] == sum(day == 0 for day, _ in default_starts) >= 1
    assert f"not sent: {summary['episodes_held']}" in err
    ends = [e for e in events if e["event"] == "end"]
    assert len(ends) == len(starts)  # nothing held is ever ended either


def test_the_held_episodes_are_counted_in_the_metrics_and_the_config_file_says_it(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(f'[model]\npath = "{NAB_DEFAULT}"\nquiet-start = 86400.0\n')
    options = agent_options(AgentConfig.from_flags(read_config(tmp_path / "agent.toml")))
    assert options.quiet_start == DAY and options.overrides().quiet_start == DAY
    metrics = AgentMetrics(exported=True)
    agent = Agent(ScoringModel(NAB_DEFAULT), [StdoutSink(io.StringIO())], options, metrics=metrics)
    agent.add_source(ReplaySource(_daily_cycle(tmp_path / "day.csv"), ["value"]))
    agent.run(duration=60)
    held = metrics.registry.get_sample_value("edgewatch_episodes_held_total")
    assert held == agent.summary.episodes_held >= 1


def test_eval_nab_quiet_start_scores_what_the_agent_sends(tmp_path: Path) -> None:
    """``eval nab --quiet-start`` silences scores; the agent holds episodes: the same starts on NAB's default."""
    from edgewatch.eval.false_episodes import episode_starts
    from edgewatch.eval.runner import ModelDetector, QuietStart

    data = _daily_cycle(tmp_path / "day.csv", seed=2)
    rows = np.loadtxt(data, delimiter=",", skiprows=1)
    t, x = rows[:, 0], rows[:, 1]
    scores = QuietStart(ModelDetector(NAB_DEFAULT), DAY).score_series(x, "day", t)
    card = ScoringModel(NAB_DEFAULT).card
    assert (card.decision.k, card.decision.n) == (1, 1)  # one window over opens an episode, as a crossing does
    want = np.flatnonzero(episode_starts(scores, card.threshold + 1e-12)).tolist()  # over, not at
    out = io.StringIO()
    agent = Agent(ScoringModel(NAB_DEFAULT), [StdoutSink(out)], AgentOptions(quiet_start=DAY, drift_every=0))
    agent.add_source(ReplaySource(data, ["value"]))
    agent.run(duration=60)
    got = [e["seq"] for e in map(json.loads, out.getvalue().splitlines()) if e["event"] == "start"]
    assert got == want and got and t[got[0]] - t[0] >= DAY
