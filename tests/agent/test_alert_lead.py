"""Which features an episode's ``start`` and ``end`` name (``top_features``): those that led its windows over.

Before, each named the features of the one window that made the transition: the k-th window over for a start,
the m-th quiet window for an end. A packaging line whose motor current rose 15 % opened its episode on the window
that straddled the next stop, and the start named the belt speed (97 %); a tank's ends named the level, which
no fault moved. Real parts: the episode tracker the agent runs, and ``edgewatch fit`` then ``edgewatch agent
run --source replay:`` in their default form, torch blocked for the agent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgewatch.agent.episodes import EpisodeTracker
from edgewatch.agent.events import lead_features
from tests.fit.test_fit_drift import fit, run

FEATURES = ["belt_speed_mps", "motor_current_A"]


def test_the_start_names_what_the_counted_windows_share_not_the_window_that_opened_it() -> None:
    tracker = EpisodeTracker(k=32, n=62)
    current_only, straddle = np.array([0.0, 576.0]), np.array([8481.0, 213.0])
    starts = []
    for i in range(32):
        tr = tracker.update(0, True, 10.0, float(i), i, straddle if i == 31 else current_only)
        if tr is not None:
            starts.append(tr)
    assert len(starts) == 1 and starts[0].episode.start_seq == 0
    assert starts[0].episode.windows_over == 32  # every window over since its start (before: 1)
    named = lead_features(starts[0].episode.lead, FEATURES)
    assert named[0]["feature"] == "motor_current_A" and named[0]["share"] > 0.9, named
    quiet = [tracker.update(0, False, 0.0, 32.0 + i, 32 + i, np.array([5.0, 0.0])) for i in range(62)]
    ends = [t for t in quiet if t is not None]
    assert [t.kind for t in ends] == ["end"]
    assert lead_features(ends[0].episode.lead, FEATURES)[0]["feature"] == "motor_current_A"


def test_windows_over_before_a_quiet_spell_do_not_count_towards_the_next_episode() -> None:
    tracker = EpisodeTracker(k=2, n=3)
    tracker.update(0, True, 10.0, 0.0, 0, np.array([9.0, 0.0]))
    for i in range(1, 4):  # the history empties: what the first window said is forgotten, as its start time is
        tracker.update(0, False, 0.0, float(i), i, np.array([9.0, 0.0]))
    tracker.update(0, True, 10.0, 4.0, 4, np.array([0.0, 9.0]))
    tr = tracker.update(0, True, 10.0, 5.0, 5, np.array([0.0, 9.0]))
    assert tr is not None and tr.episode.start_seq == 4 and tr.episode.lead.windows == 2
    assert lead_features(tr.episode.lead, FEATURES)[0] == {"feature": "motor_current_A", "error": 9.0, "share": 1.0}


def _line(rng: np.random.Generator, n: int, hot_from: int | None = None, stops: list[int] | None = None
          ) -> dict[str, np.ndarray]:
    """A packaging line at one row a second: runs of 1-6 min, stops of 5-60 s, the belt ramping in 3 s; the motor
    current follows the speed; from ``hot_from`` it draws 1.2 A more at full speed (a dragging bearing).
    ``stops`` gets the row of each stop."""
    run_ = np.zeros(n, bool)
    i = 0
    while i < n:
        r = int(rng.integers(60, 360))
        run_[i:i + r] = True
        i += r
        if stops is not None:
            stops.append(i)
        i += int(rng.integers(5, 60))
    speed = np.zeros(n)
    for k in range(1, n):
        speed[k] = speed[k - 1] + ((1.2 if run_[k] else 0.0) - speed[k - 1]) / 3
    speed += rng.normal(0, 0.01, n) * run_
    current = 2.0 + 6.5 * speed / 1.2 + rng.normal(0, 0.15, n)
    if hot_from is not None:
        current[hot_from:] += speed[hot_from:]
    return {"belt_speed_mps": speed, "motor_current_A": current}


def _csv(path: Path, cols: dict[str, np.ndarray]) -> Path:
    rows = ["time," + ",".join(cols)]
    rows += [f"2026-11-02 {6 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}," + ",".join(f"{c[i]:.4g}" for c in
                                                                                          cols.values())
             for i in range(len(next(iter(cols.values()))))]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_packaging_lines_current_rise_is_named_by_its_start_though_the_next_stop_opened_it(tmp_path: Path
                                                                                            ) -> None:
    _csv(tmp_path / "normal.csv", _line(np.random.default_rng(3), 4 * 3600))
    fit(tmp_path, tmp_path / "normal.csv", tmp_path / "line.onnx")
    stops: list[int] = []
    _line(np.random.default_rng(4), 2 * 3600, stops=stops)
    onset = next(s for s in stops if s > 3600) - 30  # from 30 s before a stop: the k-th window over straddles it
    _csv(tmp_path / "today.csv", _line(np.random.default_rng(4), 2 * 3600, hot_from=onset))
    proc = run(tmp_path, "agent", "run", "--model", "line.onnx", "--source", "replay:today.csv", "--sink", "stdout")
    starts = [e for line in proc.stdout.splitlines() if line.startswith("{")
              for e in [json.loads(line)] if e["event"] == "start"]
    # one episode, opened after the onset (its start is the first of the counted windows over: the stop before it)
    assert len(starts) == 1 and starts[0]["episode"]["last_over_seq"] >= onset, starts
    assert starts[0]["top_features"][0]["feature"] == "motor_current_A", starts[0]["top_features"]
