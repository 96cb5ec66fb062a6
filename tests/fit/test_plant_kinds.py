"""edgewatch fit on kinds of plant data the fourth walk-through brought (docs/fit.md): a motor's start-ups.

Each test writes a small seeded plant file, fits it in the default form (``fit_model`` with no options, as
``edgewatch fit normal.csv`` runs; every file stays under the 5,000 rows of the torch trial) and runs new data
through the agent's runtime.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from edgewatch.agent.offline import run_series
from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime
from edgewatch.fit.pipeline import fit_model

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


def _write(path: Path, cols: dict[str, np.ndarray], step: float) -> Path:
    names = list(cols)
    lines = ["timestamp," + ",".join(names)]
    for i in range(len(cols[names[0]])):
        t = (T0 + timedelta(seconds=i * step)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(t + "," + ",".join(f"{cols[k][i]:.6g}" for k in names))
    path.write_text("\n".join(lines) + "\n")
    return path


def _episodes(model: Path, cols: dict[str, np.ndarray], features: list[str], step: float) -> list:
    runtime = load_runtime(model, Overrides(), drift_settings=DriftSettings(every=0))
    x = np.stack([cols[f] for f in features], axis=1)
    return run_series(runtime, x, T0.timestamp() + step * np.arange(len(x))).episodes


def _motor(rng: np.random.Generator, n: int, loose_from: int | None = None) -> dict[str, np.ndarray]:
    """A motor at one row a second, run 20-30 min then stopped 2-5 min; each start a 10-s spike of vibration
    RMS and inrush current while the speed ramps up. From ``loose_from`` a loosened mount adds 40 % of vibration."""
    run = np.zeros(n)
    starts = []
    i = 0
    while i < n:
        on, off = int(rng.uniform(1200, 1800)), int(rng.uniform(120, 300))
        run[i:i + on] = 1
        starts.append(i)
        i += on + off
    vib = 0.05 + run * (1.2 + rng.normal(0, 0.06, n))
    current = run * (30 + rng.normal(0, 0.4, n))
    speed = run * (1480 + rng.normal(0, 2, n))
    for s in starts:
        k = np.arange(s, min(s + 12, n))
        vib[k] += 3.5 * np.exp(-(k - s) / 3)
        current[k] += 150 * np.exp(-(k - s) / 2)
        speed[k] = 1480 * (1 - np.exp(-(k - s + 1) / 2))
    if loose_from is not None:
        vib[loose_from:] += 0.5 * run[loose_from:]
    return {"vib_rms_mm_s": vib, "motor_A": current, "speed_rpm": speed}


def test_a_motors_start_ups_open_no_episode_and_a_loose_mount_opens_one(tmp_path: Path) -> None:
    """Before, each start-up (a 10-s spike, part of normal operation) opened an episode: 48 a day on a normal
    day of such a motor. The opening now waits out the longest stretch the normal data itself stays over the
    threshold, and the report says so."""
    normal = _write(tmp_path / "n.csv", _motor(np.random.default_rng(1), 4800), 1.0)
    report = fit_model([normal], tmp_path / "m.onnx")
    assert report.recipe.k > 5 and "brief excursions such as start-ups" in report.recipe.why["debounce"]
    assert report.holdout.episodes == 0
    day = _motor(np.random.default_rng(2), 7200)
    assert _episodes(tmp_path / "m.onnx", day, report.recipe.features, 1.0) == []
    loose = _motor(np.random.default_rng(2), 7200, loose_from=3000)
    episodes = _episodes(tmp_path / "m.onnx", loose, report.recipe.features, 1.0)
    assert episodes and 3000 <= episodes[0].start_seq <= 3000 + report.recipe.n, episodes
