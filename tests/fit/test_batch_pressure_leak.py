"""The third walk-through's batch pressure leak (0.6 bar in the hold), rechecked with the model per operating point.

The third walk-through left a 0.6-bar pressure leak in a batch's hold unseen by the one pca (its smallest change for
the pressure was 0.65 bar); the per-phase model (docs/fit.md, "a model per operating point or batch phase") came
after and was never run on it. Here the seeded batch of tests/fit/test_plant_kinds.py (``_batch``, seed 7 fitted,
seed 8 new) gets a vessel pressure under a nitrogen blanket: vented to 1.0 bar in fill and drain, held at 3.0 bar
from the heat's first minute to the end of the hold (noise 0.05 bar). Fitted in the default form (``fit_model`` with
no options), replayed through the agent's runtime. Measured (docs/fit.md): before the per-point model (83cf287)
the one pca needed 1.85 bar and missed the leak in 18 of 18 holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgewatch.fit.pipeline import fit_model
from tests.fit.test_plant_kinds import _batch, _episodes, _write

DROP = 0.6  # bar


def _blanketed_batch(seed: int, cycles: int, leak_from: int | None = None, step: bool = False,
                     holds: list[tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """``_batch`` with a blanket pressure; from cycle ``leak_from`` the pressure falls ``DROP`` through each hold
    (``step``: is ``DROP`` lower from the hold's first row). ``holds`` receives each hold's rows."""
    found: list[tuple[int, int]] = [] if holds is None else holds
    cols = _batch(np.random.default_rng(seed), cycles, holds=found)
    n = len(cols["heater_pct"])
    p = np.full(n, 1.0)
    for a, b in found:
        heat = a
        while heat > 0 and cols["heater_pct"][heat - 1] > 50:  # the heat: the rows before the hold at heater 100
            heat -= 1
        p[heat:b] = 3.0
        p[heat:heat + 6] = np.linspace(1.0, 3.0, 6)  # pressurised within a minute
        p[b:b + 6] = np.linspace(3.0, 1.0, 6)[:len(p[b:b + 6])]  # vented as the drain opens
    if leak_from is not None:
        for a, b in found[leak_from:]:
            p[a:b] -= DROP if step else np.linspace(0, DROP, b - a)
    cols["pressure_bar"] = p + np.random.default_rng(seed + 1000).normal(0, 0.05, n)
    return cols


def test_a_06_bar_pressure_leak_in_the_hold_is_caught_in_every_hold_by_the_model_per_point(tmp_path: Path) -> None:
    report = fit_model([_write(tmp_path / "b.csv", _blanketed_batch(7, 20), 10.0)], tmp_path / "b.onnx")
    assert report.recipe.why["points"].startswith("a pca per operating point (3)"), report.recipe.why
    hold = next(x for x in report.lines() if "heater_pct 30," in x and "smaller than" in x)
    seen = float(hold.split("pressure_bar ")[-1].split()[0])
    assert seen < DROP / 2, hold  # 0.255 bar in the hold (the one pca: 1.85)
    features = report.recipe.features
    assert _episodes(tmp_path / "b.onnx", _blanketed_batch(8, 36), features, 10.0) == []
    for step in (False, True):
        holds: list[tuple[int, int]] = []
        leak = _blanketed_batch(8, 36, leak_from=18, step=step, holds=holds)
        episodes = _episodes(tmp_path / "b.onnx", leak, features, 10.0)
        assert all(e.start_seq >= holds[18][0] for e in episodes), (step, episodes)
        caught = [h for h in holds[18:] if any(h[0] <= e.start_seq < h[1] for e in episodes)]
        assert len(caught) == 18 and len(episodes) == 18, (step, holds[18:], episodes)
