"""The model's settings, each by a stated principle, and what the held-out normal data says of them.

The settings a user of ``train pca`` had to know (window, threshold,
debounce, which features to leave out) are chosen here, the same way for
every data set, so nothing is tuned on the user's labels (there are
none) or per file:

* **window** ``DEFAULT_WINDOW`` (10) rows: the window mean averages the
  row-to-row noise tenfold while a fault still fills the window within
  seconds at 1 Hz; fewer when the data is too short for the covariance to
  be estimated from at least ``MIN_WINDOWS_PER_FEATURE`` windows per
  feature. (Choosing it per file by the shift the hold-out could detect was
  tried: it picked 20 rows on 28 of 30 SKAB files and doubled the false
  episodes, docs/fit.md.)
* **threshold** 3 x the 99th percentile of the training windows' scores:
  the pca family's rule, chosen across SKAB's two groups (docs/skab.md).
* **debounce** open when ``ceil(w/2)`` of the last ``w`` windows are over
  (the anomaly fills half a window: one noisy window does not open an
  episode, a fault of a few seconds does), close after a minute without a
  window over the threshold (``CLOSE_AFTER_SECONDS``; 6 windows' length
  when the data has no time column): one fault is one episode while its
  score dips and recovers, and a new episode means something new happened.
  **Brief normal excursions**: when the normal data itself (the first
  part, and all of it, each scored by its own model) goes over the
  threshold for stretches that would open an episode (a motor's start-up
  spike, the swing after a setpoint step), the opening needs ``k`` of
  ``2k`` windows over, with ``k`` more than 1.5 times the most windows
  over in any such span of the normal data (a few start-ups seen; the
  next ones vary), so those stretches stay quiet and a fault that lasts
  longer still opens one; at most ``OPEN_LIMIT_SECONDS`` (5 min; without
  times ``OPEN_LIMIT_WINDOWS``) and the 62 windows the agent can count
  (``k`` of 62 past 31: a model per operating point sees a start-up for
  up to 35 windows), beyond which the report says what stays.

The held-out part (the last ``holdout`` of the rows, in time order) is
scored by a model fitted on the rest exactly as the agent would run it;
its episodes are the *expected false episodes* of the report, and when it
raises any the report says which features caused them. It does not move
the threshold: raising the threshold to silence the hold-out was tried on
SKAB and split faults into more episodes (docs/fit.md).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.fit.normal_data import NormalData
from edgewatch.fit.screening import FeatureChoice, Use

DEFAULT_WINDOW = 10
MIN_WINDOW = 3
MIN_WINDOWS_PER_FEATURE = 5
CLOSE_AFTER_SECONDS = 60.0
CLOSE_AFTER_WINDOWS = 6  # without times: this many windows' length
FACTOR = 3.0
QUANTILE = 0.99
HOLDOUT = 0.25
MIN_HOLDOUT_WINDOWS = 20
OPEN_LIMIT_SECONDS = 300.0  # an episode never waits longer than this over the threshold to open
OPEN_LIMIT_WINDOWS = 30  # the same without times, in windows
EXCURSION_MARGIN = 1.5  # the opening waits this many times the longest excursion seen (a few start-ups seen: more vary)


@dataclass
class Recipe:
    """Everything that decides the model, with the reason for each choice."""

    features: list[str]  # the model's input, in order
    rates: list[str]
    window: int
    k: int
    n: int
    m: int
    factor: float = FACTOR
    quantile: float = QUANTILE
    why: dict[str, str] = field(default_factory=dict)
    points: list[dict[str, float]] | None = None  # operating points (feature -> level): a pca per point

    def pca_config(self):  # noqa: ANN201 - train.pca.PcaConfig, imported lazily
        from edgewatch.numpy_models.pca import PcaConfig

        return PcaConfig(window=self.window, quantile=self.quantile, factor=self.factor, rates=list(self.rates),
                         k=self.k, n=self.n, m=self.m)

    def same_model(self, other: Recipe) -> bool:
        """Whether ``other`` fits the same model: it may differ in the debounce (``k``, ``n``, ``m``) and the reasons
        alone, which are the card's and not the fit's."""
        return (self.features, self.rates, self.window, self.factor, self.quantile, self.points) == (
            other.features, other.rates, other.window, other.factor, other.quantile, other.points)


class Fitted:
    """A recipe with its pca fitted on the first part of the normal data (the model the opening and the hold-out
    score with) and on all of it (the model the file holds), each made when first asked for and then handed on
    with the recipe, to the checks, the per-point gate and the file.

    Why: those steps need the same two fits of a recipe, and asked for them nine times on a per-point file (a
    million rows: 37 s). A recipe with operating points starts from the one model's fits of the same rows
    (:meth:`with_points`, :func:`~edgewatch.numpy_models.pca.fit_points`), so neither is fitted twice. Only the
    debounce may change along the way (:meth:`with_recipe`); it is set afresh on each fit handed out.
    """

    def __init__(self, data: NormalData, recipe: Recipe, holdout: float = HOLDOUT) -> None:
        self.data = data
        self.recipe = recipe
        self.holdout = holdout
        self._made: dict[str, Any] = {}  # "head" / "whole" -> numpy_models.pca.PcaFit
        self._one: Fitted | None = None  # the one model's fits, that a recipe with points starts from

    def head(self):  # noqa: ANN201 - numpy_models.pca.PcaFit, imported lazily
        """The pca of the first part (all but the last ``holdout`` of the rows, in time order)."""
        return self._fit("head")

    def whole(self):  # noqa: ANN201 - numpy_models.pca.PcaFit
        """The pca of all the rows: the file's."""
        return self._fit("whole")

    def with_recipe(self, recipe: Recipe) -> Fitted:
        """The same fits under ``recipe``, which may differ in its debounce alone."""
        if not self.recipe.same_model(recipe):
            raise ValueError("with_recipe: the recipe fits another model (only the debounce may differ)")
        twin = Fitted(self.data, recipe, self.holdout)
        twin._made, twin._one = self._made, self._one
        return twin

    def with_points(self, recipe: Recipe) -> Fitted:
        """``recipe``, this one's with operating points, fitted from this one's fits of the same rows."""
        if self.recipe.points is not None or not replace(self.recipe, points=recipe.points).same_model(recipe):
            raise ValueError("with_points: a recipe with points is fitted from the same recipe without them")
        local = Fitted(self.data, recipe, self.holdout)
        local._one = self
        return local

    def _fit(self, part: str):  # noqa: ANN202 - numpy_models.pca.PcaFit
        from edgewatch.numpy_models.pca import fit_pca, fit_points

        made = self._made.get(part)
        if made is None:
            rows = self.data.split(self.holdout)[0] if part == "head" else self.data
            r = self.recipe
            if self._one is not None:
                made = fit_points(self._one._fit(part), rows.segments, r.points)
            else:
                made = fit_pca(rows.segments, r.features, r.pca_config(), r.points)
            self._made[part] = made
        return replace(made, config=self.recipe.pca_config())


def choose_recipe(data: NormalData, choices: list[FeatureChoice], window: int | None = None) -> Recipe:
    """The settings for ``data`` with the screened features (``window``: the user's, else by principle)."""
    used = [c for c in choices if c.use is not Use.LEFT_OUT]
    if not used:
        raise BadInput("every feature was left out: " + "; ".join(f"{c.name}: {c.reason}" for c in choices))
    features = [c.name for c in used]
    rates = [c.name for c in used if c.use is Use.RATE]
    train_rows = [len(s) for s in data.split(HOLDOUT)[0].segments] if data.rows else []
    need = MIN_WINDOWS_PER_FEATURE * len(features) + 2
    why = {}
    if window is None:
        w = DEFAULT_WINDOW
        while w > MIN_WINDOW and _windows(train_rows, w) < need:
            w -= 1
        lasts = f" ({duration_text(w * data.step)})" if data.step else ""  # at a row an hour, 10 rows are 10 h
        why["window"] = (f"{w} rows: the window mean averages the row-to-row noise while a fault fills it within "
                         f"{w} rows{lasts}" + ("" if w == DEFAULT_WINDOW else
                                               f" (shorter than {DEFAULT_WINDOW}: the data is short)"))
    else:
        w = window
        why["window"] = f"{w} rows (--window)"
    if _windows(train_rows, w) < need:
        raise BadInput(f"{data.rows} rows of normal data are too few for {len(features)} features with a window of "
                       f"{w}: the model needs at least {need} windows in the first {1 - HOLDOUT:.0%} of the rows "
                       f"({_rows_needed(need, w)} rows in one stretch{_span(_rows_needed(need, w), data.step)}); "
                       "record more normal operation, or choose fewer features with --columns")
    n, k = w, math.ceil(w / 2)
    step = data.step
    m = max(n, math.ceil(CLOSE_AFTER_SECONDS / step)) if step else CLOSE_AFTER_WINDOWS * w
    why["debounce"] = _debounce_text(k, n, m, step)
    why["threshold"] = f"{FACTOR:g} x the {QUANTILE:g} quantile of the training windows' scores"
    return Recipe(features, rates, w, k, n, m, why=why)


def _rows_needed(windows: int, w: int) -> int:
    """The fewest rows of one stretch whose first part (before the hold-out) holds ``windows`` windows of ``w``.
    (It said 'about 31 rows' where 31 still fell short: the hold-out's rounding.)"""
    rows = math.ceil((windows + w - 1) / (1 - HOLDOUT))
    while int(round(rows * (1.0 - HOLDOUT))) - w + 1 < windows:
        rows += 1
    return rows


def _span(rows: int, step: float | None) -> str:
    return f", {duration_text(rows * step)} at one row every {step:.3g} s" if step else ""


def _debounce_text(k: int, n: int, m: int, step: float | None) -> str:
    ends = f"{m} windows ({duration_text(m * step)})" if step else f"{m} windows"  # 100 min, not 6000 s
    return (f"an episode opens when {k} of the last {n} windows are over the threshold and ends after {ends} in a "
            "row under it" + ("" if step else " (the data has no time column)"))


def open_after_excursions(fitted: Fitted) -> Fitted:
    """The recipe with an opening that brief excursions of the normal data itself do not reach (module docstring),
    with the same fits.

    Scored in-sample by a model of the first part (the hold-out's) and by
    one of all the rows (the file's): an excursion just over the threshold
    of one may be just under the other's (a motor whose start-ups reached
    3.0-3.4 of a threshold of 3 under the first opened an episode at every
    start under the second). Before, a motor's start-ups (a 10-s spike of
    vibration and current, each a few minutes apart) opened an episode
    each: 48 a day on normal data, and the setpoint steps of a temperature
    loop 4 a day.
    """
    data, recipe = fitted.data, fitted.recipe
    head, _ = data.split(fitted.holdout)
    over: list[np.ndarray] = []
    for part, fit in ((head, fitted.head), (data, fitted.whole)):  # the hold-out's model, and the file's
        segs = [s for s in part.segments if len(s) >= recipe.window]  # (their excursions differ a bit)
        if segs:
            over += [_over(fit(), s, recipe.window) for s in segs]
    if not over:
        return fitted
    from edgewatch.agent.runtime import MAX_N

    step = data.step
    limit = min(max(recipe.k, int(OPEN_LIMIT_SECONDS / step) if step else OPEN_LIMIT_WINDOWS), MAX_N)
    k, n = recipe.k, recipe.n
    most = _most_over(over, n)
    while EXCURSION_MARGIN * most >= k and k < limit:
        k += 1
        n = min(max(recipe.n, 2 * k), MAX_N)  # the agent counts at most MAX_N windows: then k of MAX_N
        most = _most_over(over, n)
    if k == recipe.k:
        return fitted
    m = max(recipe.m, n)
    why = dict(recipe.why)
    span = f"{k * step:.0f} s" if step else f"{k} windows"
    why["debounce"] = _debounce_text(k, n, m, step) + (
        f" (more than the {recipe.k} of {recipe.n} of a steady state: the normal data itself goes over the "
        f"threshold for up to {most} windows in {n}, brief excursions such as start-ups or "
        f"setpoint steps, so a fault is told from them once it lasts {span})")
    if EXCURSION_MARGIN * most >= k:
        why["debounce"] += (f"; {span} is the most an opening waits, and the normal data's longest excursions come "
                            "close to it: longer ones will raise episodes")
    return fitted.with_recipe(replace(recipe, k=k, n=n, m=m, why=why))


def _over(fit, seg: np.ndarray, window: int) -> np.ndarray:  # noqa: ANN001 - numpy_models.pca.PcaFit
    """Per window of ``seg`` (stride 1, as the card scores): over the fit's threshold."""
    from numpy.lib.stride_tricks import sliding_window_view

    wins = sliding_window_view(seg, window, axis=0).transpose(0, 2, 1)
    scores = np.concatenate([fit.score_windows(wins[a:a + 20_000])[0] for a in range(0, len(wins), 20_000)])
    return scores > fit.threshold


def _most_over(over: list[np.ndarray], n: int) -> int:
    """The most windows over the threshold in any ``n`` consecutive windows of one segment."""
    most = 0
    for o in over:
        c = np.concatenate([[0], np.cumsum(o, dtype=np.int64)])
        span = min(n, len(o))
        most = max(most, int((c[span:] - c[:-span]).max()) if len(o) else 0)
    return most


def _windows(rows: list[int], w: int) -> int:
    return sum(max(r - w + 1, 0) for r in rows)


@dataclass
class HoldoutResult:
    """What the agent would have raised on the held-out normal rows with a model fitted on the others."""

    rows: int
    seconds: float | None
    episodes: int
    features: dict[str, int] = field(default_factory=dict)  # feature -> episodes it led
    skipped: str = ""  # why there was no hold-out check
    whole: bool = False  # all the normal data was run, not a held-out part (a detector that learns online)
    most_over: int = 0  # the most windows over the threshold in any n consecutive held-out windows (n: the opening's)
    at_switches: int = 0  # of the episodes, those that opened at a switch between operating points (a model per point)

    @property
    def per_day(self) -> float | None:
        if not self.seconds:
            return None
        return self.episodes * 86400.0 / self.seconds

    @property
    def bound_per_day(self) -> float | None:
        """The rule of three: with no episode in T, the rate is under 3/T with 95 % confidence."""
        if not self.seconds:
            return None
        return 3.0 * 86400.0 / self.seconds

    def describe(self) -> str:
        if self.skipped:
            return f"not checked: {self.skipped}"
        span = (f"{duration_text(self.seconds)} ({self.rows:,} rows)" if self.seconds else f"{self.rows:,} rows")
        where = (f"in all {span} of the normal data, learning online from its first row" if self.whole
                 else f"in the held-out last {span}")
        if self.episodes == 0:
            bound = (f"; with none in {duration_text(self.seconds)}, fewer than {self.bound_per_day:.3g} a day at "
                     "95 % confidence" if self.seconds else "")
            short = (" (the held-out part is short: more normal data gives a sharper estimate)"
                     if self.bound_per_day is not None and self.bound_per_day > 24 else "")
            return f"0 false episodes {where}{bound}{short}"
        rate = f", about {self.per_day:.3g} a day" if self.per_day is not None else ""
        led = ", ".join(f"{f} ({n})" for f, n in sorted(self.features.items(), key=lambda kv: -kv[1]))
        return f"{self.episodes} false episode(s) {where}{rate}; led by {led}"


def switches_text(checked: HoldoutResult) -> str:
    """What a refused per-point model's held-out episodes were, when some opened at a switch between its points:
    then more normal data does not help (each new day switches again; 28 days of an air handler raised 11 where
    14 days raised 5), only a model that scores the switches themselves."""
    if not checked.at_switches:
        return ""
    return (f"; {checked.at_switches} of them opened at a switch between the points: the windows that straddle a "
            "switch, and what settles after it, are in no point's steady core and stayed over the threshold longer "
            "than the opening waits")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def holdout_check(fitted: Fitted) -> HoldoutResult:
    """Run the last ``holdout`` of the rows through the agent's runtime with the model of the first ones, count the
    episodes."""
    from edgewatch.agent.offline import run_series
    from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime
    from edgewatch.numpy_models.pca import write_pca_model

    recipe, holdout = fitted.recipe, fitted.holdout
    _, tail = fitted.data.split(holdout)
    held = sum(max(len(s) - recipe.window + 1, 0) for s in tail.segments)
    if held < MIN_HOLDOUT_WINDOWS:
        return HoldoutResult(tail.rows, tail.seconds, 0, skipped=f"the last {holdout:.0%} of the rows hold only "
                                                                  f"{held} windows")
    fit = fitted.head()
    episodes = switches = 0
    led: dict[str, int] = {}
    over = [_over(fit, seg, recipe.window) for seg in tail.segments if len(seg) >= recipe.window]
    with tempfile.TemporaryDirectory(prefix="edgewatch-fit-") as tmp:
        path = write_pca_model(fit, Path(tmp) / "holdout.onnx")
        runtime = load_runtime(path, Overrides(), drift_settings=DriftSettings(every=0))
        for i, seg in enumerate(tail.segments):
            if len(seg) < recipe.window:
                continue
            times = tail.times[i] if tail.times else None
            run = run_series(runtime, seg, times)
            episodes += len(run.episodes)
            switches += _at_switches(fit, seg, run.episodes, recipe.n)
            for ep in run.episodes:
                win = seg[ep.peak_seq - recipe.window + 1:ep.peak_seq + 1][None]
                _, fe = fit.score_windows(win)
                top = recipe.features[int(np.argmax(fe[0]))]
                led[top] = led.get(top, 0) + 1
    return HoldoutResult(tail.rows, tail.seconds, episodes, led, most_over=_most_over(over, recipe.n),
                         at_switches=switches)


def _at_switches(fit, seg: np.ndarray, episodes: list, n: int) -> int:  # noqa: ANN001 - numpy_models.pca.PcaFit
    """How many of ``episodes`` (of ``seg``, a model per point) opened at a switch between its points: the point its
    windows are assigned to changed within ``n`` windows (what the opening counts) and a window's length of the
    episode's first window over, before or after it (a window that straddles a switch goes to the nearer point,
    so the change of point can come at either end of the straddling windows).

    Why: there the window straddles the switch (its mean lies between the points, and a state column that is
    constant inside each point is fractional) or holds what settles after it (an air handler's supply air takes
    an hour to drift to the night's level after its fan stops); a point's steady core holds neither, and an
    episode there is the per-point model's own, not a change inside a point (docs/fit.md, seventh walk-through).
    """
    from edgewatch.numpy_models.pca import window_features, window_weights

    if fit.points is None or not episodes:
        return 0
    w = fit.config.window
    scaled = (seg - np.asarray(fit.scaler.offset)) * np.asarray(fit.scaler.scale)
    label = fit.points.assign(window_features(scaled, window_weights(w, fit.features, [])))
    count = 0
    for ep in episodes:
        first = ep.start_seq - w + 1  # the episode's first window over (seq: its last row)
        near = label[max(first - n - w, 0):first + n + w + 1]
        count += int(len(np.unique(near)) > 1)
    return count
