"""One episode per fault: k of n windows to open, m quiet windows to close, carried in the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.agent.episodes import EpisodeTracker
from edgewatch.agent.runtime import Overrides, load_runtime
from edgewatch.cli import main
from edgewatch.contract import Decision, ModelCard
from edgewatch.errors import BadModelFile, BadOverride
from tests.modelkit import make_card, write_model

# a fault whose score dips under the threshold now and then, as SKAB's valve faults do
BURSTY = [0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def _transitions(tracker: EpisodeTracker, pattern: list[int]) -> list[tuple[int, str]]:
    return [(i, t.kind) for i, o in enumerate(pattern) if (t := tracker.update(0, bool(o), float(o), i, i))]


def test_without_m_an_episode_ends_when_none_of_the_last_n_are_over() -> None:
    assert _transitions(EpisodeTracker(2, 3), BURSTY) == [(3, "start"), (11, "end"), (14, "start"), (18, "end")]


def test_m_quiet_windows_keep_a_bursty_fault_in_one_episode() -> None:
    tracker = EpisodeTracker(2, 3, m=6)
    got = []
    for i, o in enumerate(BURSTY):
        t = tracker.update(0, bool(o), float(o), float(i), i)
        if t:
            got.append((i, t.kind, t.episode.start_seq, t.episode.last_over_seq))
    # opens at the first bad window, ends six quiet windows after the last one, which the end reports
    assert got == [(3, "start", 2, 3), (21, "end", 2, 15)]


def test_a_closed_episodes_windows_do_not_reopen_it_when_m_is_shorter_than_n() -> None:
    tracker = EpisodeTracker(2, 5, m=1)
    assert _transitions(tracker, [1, 1, 0, 1, 0, 0, 0]) == [(1, "start"), (2, "end")]


def test_tracker_refuses_m_below_one() -> None:
    with pytest.raises(ValueError, match="m"):
        EpisodeTracker(1, 1, m=0)


def test_card_carries_m_and_an_old_card_without_it_keeps_its_rule(tmp_path: Path) -> None:
    with_m = write_model(tmp_path / "m.onnx", make_card(window=2, k=2, n=3, decision=Decision(2, 3, 40)))
    rt = load_runtime(with_m)
    assert (rt.k, rt.n, rt.m) == (2, 3, 40)
    old = write_model(tmp_path / "old.onnx", make_card(window=2, k=2, n=3))
    props = make_card(window=2, k=2, n=3).to_props()
    assert json.loads(props["edgewatch.decision"]) == {"k": 2, "n": 3}  # no "m": older agents still read it
    assert load_runtime(old).m == 3
    assert load_runtime(old, Overrides(n=5, k=1)).m == 5  # "none of the last n" follows --n
    assert load_runtime(old, Overrides(m=7)).m == 7


def test_card_with_a_bad_m_is_refused(tmp_path: Path) -> None:
    props = make_card(window=2).to_props()
    props["edgewatch.decision"] = json.dumps({"k": 1, "n": 1, "m": 0})
    with pytest.raises(BadModelFile, match="m .*integer >= 1"):
        ModelCard.from_props(props)
    props["edgewatch.decision"] = json.dumps({"k": 1, "n": 1, "mm": 3})
    with pytest.raises(BadModelFile, match="malformed"):
        ModelCard.from_props(props)


def test_close_after_override_is_checked(tmp_path: Path) -> None:
    path = write_model(tmp_path / "a.onnx", make_card(window=2))
    with pytest.raises(BadOverride, match="close-after"):
        load_runtime(path, Overrides(m=10**7))


def _replay_file(path: Path) -> Path:
    rows = np.full((60, 4), 0.5)
    for a, b in ((10, 14), (17, 20), (24, 27)):  # three bursts, two short gaps: one fault
        rows[a:b] = 5.0
    path.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("flags, episodes", [([], 3), (["--close-after", "8"], 1)])
def test_agent_run_close_after_flag_and_the_cards_default(tmp_path: Path, flags: list[str], episodes: int) -> None:
    model = write_model(tmp_path / "sq.onnx", make_card(window=2, threshold=1.0, k=1, n=2))
    data = _replay_file(tmp_path / "d.csv")
    out = tmp_path / "alerts.jsonl"
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(model), "--source", f"replay:{data}",
                                    "--sink", f"jsonl:{out}", "-q", *flags])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert len(starts) == len(ends) == episodes
    assert ends[-1]["episode"]["last_over_seq"] == 27  # the last window holding a bad row ends at row 27
