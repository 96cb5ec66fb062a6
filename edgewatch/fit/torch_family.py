"""The torch candidate: conv1d-ae, chosen over pca only when it is measurably better on the held-out data.

pca is the default because it is torch-free, fits in milliseconds and, on
short data, does better: on SKAB's 400-row fits the conv1d-ae raised 16 %
false alarms point-wise to pca's 12 % (docs/skab.md). An autoencoder can
learn shapes a window mean cannot see, but only from thousands of
windows; so it is tried only when torch is installed and the normal data
has at least ``MIN_ROWS`` rows.

"Measurably better" is decided on the held-out last quarter, the same for
both families, each fitted on the first three quarters with its own
threshold rule (3 x the 99th percentile of its training windows' scores)
and the recipe's debounce: it must raise no more false episodes there,
and catch at least ``MARGIN`` more of a fixed set of synthetic faults
written into the held-out rows -- for each measured feature scored by its
level, a step of +3 and of -3 of its standard deviation lasting
``FAULT_ROWS`` rows (or the recipe's close time, if longer), one at a
time. A state or setpoint gets none: it moves only by a switch between
the values it holds, and a step of 3 standard deviations of a mixer's
``on``/``off`` code is a value no source sends (a word the model does
not know is ``unknown_state``). The family that wins is fitted on all
rows.

**As many false episodes is a tie only on a long enough hold-out.** When
both raise the same number there, the conv1d-ae is kept only if the
held-out part spans at least ``TIE_DAYS`` (3 days: none in it bounds the
rate under one a day at 95 %, the rule of three; 12 days of normal data);
on a shorter part the tie does not tell the families apart and the
simpler model stays. So when pca raises none there on a shorter part, the
conv1d-ae is not trained at all (``can_win``; ``edgewatch fit`` says so).
Why: on a pump's Home Assistant history (6 h at 1 s, docs/fit.md) both raised none in the
held-out 90 min, which bounds each only under 48 a day; the conv1d-ae won
on 8 synthetic shifts caught against pca's 5, two of those three the
mixer's on/off code moved to values it cannot take; on the walk-through's
new normal 6 h it raised 4 false episodes where pca raised none (a seeded
equivalent: 1 in 21 new 6-h days, pca none). An air handler's 14 days
(3.5 held out) keep the conv1d-ae, the one model there that sees its
coil fail.

Imports torch only when called.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.fit.choosing import Recipe
from edgewatch.fit.normal_data import NormalData

MIN_ROWS = 5000
MAX_ROWS = 50_000  # trained on at most this many rows, in blocks spread over the data (minutes, not hours)
BLOCK_ROWS = 2_000
MARGIN = 0.10
SHIFT_STD = 3.0
FAULT_ROWS = 60
WINDOW = 32
TIE_DAYS = 3.0  # a held-out part this long bounds a rate of no false episode under one a day (3 / days)


def torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("onnx") is not None
    except (ImportError, ValueError):  # an import hook that refuses it
        return False


@dataclass
class Trial:
    """One family on the held-out part."""

    family: str
    false_episodes: int
    caught: int
    faults: int

    def describe(self) -> str:
        return (f"{self.family} caught {self.caught}/{self.faults} synthetic shifts, {self.false_episodes} false "
                "episode(s)")


def _spread(segments: list[np.ndarray]) -> list[np.ndarray]:
    """At most MAX_ROWS rows in blocks of BLOCK_ROWS spread evenly over the data, every segment kept apart."""
    total = sum(len(s) for s in segments)
    if total <= MAX_ROWS:
        return segments
    blocks = [s[a:a + BLOCK_ROWS] for s in segments for a in range(0, len(s), BLOCK_ROWS)]
    keep = np.linspace(0, len(blocks) - 1, MAX_ROWS // BLOCK_ROWS).round().astype(int)
    return [blocks[i] for i in sorted(set(keep.tolist()))]


def fit_conv1d(data: NormalData, recipe: Recipe, out: Path,
               drift_modes: Sequence[Mapping[str, float]] | None = None,
               fields: Mapping[str, Any] | None = None) -> Path:
    """Train the conv1d-ae on ``data`` (at most MAX_ROWS rows) and export it (fp32, checked by the exporter).

    ``drift_modes``: the operating points its drift reference tells apart (see ``drift_reference_from``);
    ``fields``: more of the card's fields (``fit.states.card_fields``: the state codes, the logging steps).
    """
    import torch

    from edgewatch.contract import Quantization
    from edgewatch.export.onnx import export_model
    from edgewatch.models.conv1d_ae import FAMILY, Conv1dAutoencoder
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.window_ae import WindowAeConfig, train_window_ae

    torch.set_num_threads(1)
    cfg = WindowAeConfig(window=WINDOW, k=recipe.k, n=recipe.n, m=recipe.m, ignore=list(recipe.rates),
                         train=TrainConfig(epochs=30, batch_size=64, lr=1e-3, lr_gamma=1.0, patience=5, seed=0,
                                           progress=False, desc=FAMILY))
    run = train_window_ae(Conv1dAutoencoder, FAMILY, _spread(data.segments), recipe.features, cfg,
                          trained_on={"by": "edgewatch fit"}, drift_modes=drift_modes)
    card = dataclasses.replace(run.card(Quantization.NONE), **(fields or {}))
    export_model(run.scorer, card, out, quantization=Quantization.NONE,
                 calibration=np.concatenate([run.calibration[:64], run.calibration[-32:]]))
    return out


def trial(family: str, model: Path, head: NormalData, tail: NormalData, recipe: Recipe,
          states: Sequence[str] = ()) -> Trial:
    """False episodes on the held-out rows and synthetic shifts caught, through the agent's runtime. ``states``:
    the features that are states or setpoints (no synthetic shift)."""
    from edgewatch.agent.offline import run_series
    from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime

    runtime = load_runtime(model, Overrides(), drift_settings=DriftSettings(every=0))
    false = 0
    for i, seg in enumerate(tail.segments):
        if len(seg) >= runtime.window:
            false += len(run_series(runtime, seg, tail.times[i] if tail.times else None).episodes)
    length = max(FAULT_ROWS, recipe.m)
    start = runtime.window + recipe.m
    seg = max(tail.segments, key=len)[:2 * start + length]  # the rows around one fault are enough
    caught = faults = 0
    if len(seg) >= start + length:
        std = head.values().std(axis=0)
        for j, name in enumerate(recipe.features):
            if name in recipe.rates or name in states or std[j] <= 0:
                continue
            for sign in (1.0, -1.0):
                x = seg.copy()
                x[start:start + length, j] += sign * SHIFT_STD * std[j]
                faults += 1
                eps = run_series(runtime, x).episodes
                caught += any(e.start_seq < start + length and e.last_over_seq >= start for e in eps)
    return Trial(family, false, caught, faults)


def tells_apart(seconds: float | None) -> bool:
    """Whether a held-out part of ``seconds`` is long enough for as many false episodes to be a tie: none in it
    bounds the rate under one a day (``TIE_DAYS``). Without times, nothing bounds a rate a day."""
    return seconds is not None and seconds >= TIE_DAYS * 86400.0


def can_win(default: Trial, seconds: float | None) -> bool:
    """Whether any candidate could be chosen over ``default`` on this held-out part: with no false episode from
    ``default`` it can at best tie, which a short part cannot tell apart (then it need not be trained)."""
    return default.false_episodes > 0 or tells_apart(seconds)


def better(candidate: Trial, default: Trial, seconds: float | None) -> bool:
    """The rule: fewer false episodes held out, or as many on a part long enough to tell (``tells_apart``: at
    least ``TIE_DAYS``); and at least MARGIN more of the synthetic faults caught. ``seconds``: the held-out span."""
    if candidate.faults == 0 or candidate.false_episodes > default.false_episodes:
        return False
    if candidate.false_episodes == default.false_episodes and not tells_apart(seconds):
        return False
    return candidate.caught >= default.caught + MARGIN * candidate.faults


def held_out_trial(head: NormalData, tail: NormalData, recipe: Recipe, states: Sequence[str] = ()) -> Trial:
    """The conv1d-ae fitted on ``head``, tried on ``tail``."""
    with tempfile.TemporaryDirectory(prefix="edgewatch-fit-torch-") as tmp:
        return trial("conv1d-ae", fit_conv1d(head, recipe, Path(tmp) / "conv1d.onnx"), head, tail, recipe, states)
