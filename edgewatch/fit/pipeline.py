"""``edgewatch fit``, start to end: read, screen, choose, check on the held-out part, fit, write, report.

The order matters and is the same for every data set: features are
screened on all the normal data; the settings follow from the data's
shape by principle (:mod:`edgewatch.fit.choosing`); the held-out last
quarter is scored by a model fitted on the rest, for the report; then the
model is fitted on all rows and written, its scores checked against ONNX
Runtime before the file is kept (``numpy_models/pca.py``), and signed last.
"""

from __future__ import annotations

import enum
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgewatch.errors import require_torch
from edgewatch.fit.choosing import (DEFAULT_WINDOW, EXCURSION_MARGIN, HOLDOUT, HoldoutResult, Recipe, choose_recipe,
                                    forget_fits, holdout_check, open_after_excursions)
from edgewatch.fit.normal_data import Fill, NormalData, read_normal_data
from edgewatch.fit.report import FitReport, PointRanges, feature_ranges, wide_states_warning
from edgewatch.fit.screening import (TREND_LIMIT, Drifting, ModeFinding, Use, operating_modes, phases,
                                     screen_features)
from edgewatch.fit.states import write_states
from edgewatch.fit.torch_family import Trial


class Family(str, enum.Enum):
    AUTO = "auto"  # pca, or conv1d-ae when measurably better (fit/torch_family.py); one feature: univariate
    PCA = "pca"
    CONV1D_AE = "conv1d-ae"


@dataclass
class FitOptions:
    """What a user may say; every field is a flag of ``edgewatch fit`` and every default is the principle."""

    time_column: str | None = None
    columns: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    fill: Fill = Fill.LAST
    drifting: Drifting = Drifting.RATE
    window: int | None = None
    rows: int | None = None  # only the first rows of each file
    family: Family = Family.AUTO
    key: Path | None = None  # a private key from 'edgewatch model keygen': the file is signed with it
    signer: str | None = None
    decimal: str | None = None  # the files' decimal mark, "." or ",", when their numbers cannot tell (None: found)


Echo = Callable[[str], None]


def fit_model(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
              options: FitOptions | None = None, echo: Echo | None = None) -> FitReport:
    """Turn CSV files of normal operation into the model file ``out``; returns the report (also echoed)."""
    opts = options or FitOptions()
    say: Echo = echo or (lambda _line: None)
    started = time.perf_counter()
    out = Path(out)
    private = None
    if opts.key is not None:
        from edgewatch.agent.lifecycle.signing import load_private_key

        private = load_private_key(opts.key)  # a wrong key fails before the work, not after
    data = read_normal_data(paths, time_column=opts.time_column, columns=opts.columns, ignore=opts.ignore,
                            fill=opts.fill, rows=opts.rows, decimal=opts.decimal,
                            progress=lambda f, n: say(f"reading {Path(f).name}: {n:,} rows"))
    if len(data.features) == 1 and opts.family is Family.AUTO:
        from edgewatch.fit.univariate import fit_univariate

        report = fit_univariate(data, out)
    else:
        try:
            report = _fit_multivariate(data, out, opts, say)
        finally:
            forget_fits()
    if data.notes.states:  # text state columns: their codes go into the card (the agent reads "Run" by them)
        write_states(out, data.notes.states)
    if private is not None:
        from edgewatch.agent.lifecycle.signing import read_signature, sign_bytes
        from edgewatch.files import write_bytes

        write_bytes(out, sign_bytes(out.read_bytes(), private, signer=opts.signer, source=str(out)))
        sig = read_signature(out.read_bytes(), str(out))
        report.signed_by = f"{sig.signer!r} (key {sig.key_id})" if sig else ""
    report.bytes = out.stat().st_size
    report.elapsed = time.perf_counter() - started
    for line in report.lines():
        say(line)
    return report


def _fit_multivariate(data: NormalData, out: Path, opts: FitOptions, say: Echo) -> FitReport:
    choices = screen_features(data.features, data.segments, opts.drifting, data.notes.states)
    measured = [c.name for c in choices if c.use is not Use.LEFT_OUT or c.trend > TREND_LIMIT]
    modes = operating_modes(measured, data.select(measured).segments, DEFAULT_WINDOW) if measured else None
    first = choose_recipe(data, choices, opts.window)
    model_data = data.select(first.features)
    recipe = open_after_excursions(model_data, first)
    if data.rows >= 200_000:
        say(f"checking the held-out last quarter ({data.rows // 4:,} rows) ...")
    holdout = holdout_check(model_data, recipe)
    recipe, holdout = _per_point(data, model_data, choices, measured, modes, first, recipe, holdout)
    family, note, torch_trial = _choose_family(model_data, recipe, opts.family, say)
    if family is Family.CONV1D_AE:
        from edgewatch.fit.torch_family import fit_conv1d

        recipe.why.pop("points", None)  # the conv1d-ae is one model of every point
        say("training conv1d-ae on all the normal data ...")
        fit_conv1d(model_data, recipe, out, _centres(modes))
        holdout = HoldoutResult(holdout.rows, holdout.seconds, torch_trial.false_episodes)
        report = _report(model_data, data, choices, recipe, holdout, out, None)
    else:
        report = _fit_and_write(model_data, data, choices, recipe, holdout, out, _centres(modes))
    report.family_note = note
    report.modes = modes
    refused = ("" if recipe.points is not None or "points" not in recipe.why else
               " (a pca per point was tried and not kept: one pca spans them all; the line under 'model' says why)")
    if modes is not None:
        report.warnings.append(modes.describe() + refused)
    wide = report.wide_warning()
    if wide:
        report.warnings.append(wide + refused)
    if holdout.episodes:
        report.warnings.append(
            f"the held-out last quarter of the normal data raised {holdout.episodes} episode(s) with a model of the "
            "first three quarters: the normal data is not one steady state (a slow change, or a state seen only at "
            "the end); more normal data covering every state the machine runs in makes fewer false alarms")
    return report


def _per_point(data: NormalData, model_data: NormalData, choices: list, measured: list[str],
               modes: ModeFinding | None, first: Recipe, one: Recipe, holdout: HoldoutResult
               ) -> tuple[Recipe, HoldoutResult]:
    """The recipe of a pca per operating point when the data has points and the held-out last quarter raises no
    more episodes with it than with the one model (``one``, ``holdout``), nor comes near one: its longest stretch
    over the threshold there must stay under its opening by the margin the opening keeps over the fitted rows
    (``EXCURSION_MARGIN``); else those two unchanged.

    Why the margin too: each point's model is fitted on its steady core, and where the points switch faster than
    they settle (a compressor loading and unloading every 30 s to 2 min, 80 min of data) the fitted rows stayed
    within 1 window in 10 of the threshold while the held-out 20 min reached 4 of the 5 that open an episode and
    raised none; a new 2 h raised 7 (84 a day, the one model 0). With 33 h of the same compressor the held-out
    part reached 5 of 10 and a new day raised none.

    The points are the operating points the warning names (``operating_modes``); without such points, when the
    one model sees a feature only once it moves about its whole normal range (a batch cycle's phases, joined by
    its ramps), the grouping of its windows whose groups lie furthest apart (``phases``)."""
    from edgewatch.numpy_models.pca import CORE_SHARE

    points = _centres(modes)
    found = "operating points"
    if points is None and measured:
        fit = one.fit(model_data.segments)
        ranges = feature_ranges(model_data.values(), choices, one.features, np.asarray(fit.scaler.scale), fit.basis,
                                fit.threshold)
        if wide_states_warning(ranges):
            points = _centres(phases(measured, data.select(measured).segments, one.window))
            found = "phases"
    if points is None:
        return one, holdout
    local = replace(first, points=points, why=dict(first.why))
    tried = local.fit(model_data.segments)
    if tried.points is None:  # the drift reference's rule does not keep them apart, or one holds too few windows
        one.why["points"] = f"one model: a pca per {found[:-1]} ({len(points)}) was tried: {tried.one_model_why}"
        return one, holdout
    local = open_after_excursions(model_data, local)
    checked = holdout_check(model_data, local)
    if checked.episodes > holdout.episodes:
        one.why["points"] = (f"one model: a pca per {found[:-1]} ({len(points)}) raised {checked.episodes} episode(s) "
                             f"on the held-out last quarter, the one model {holdout.episodes}")
        return one, holdout
    if EXCURSION_MARGIN * checked.most_over >= local.k:
        one.why["points"] = (f"one model: a pca per {found[:-1]} ({len(points)}) went over the threshold for up to "
                             f"{checked.most_over} windows in {local.n} on the held-out last quarter, too close to its "
                             f"opening ({local.k} of {local.n}) for new data to stay under it")
        return one, holdout
    local.why["threshold"] += f" (of each point's steady {CORE_SHARE:.0%}, in units of its own)"
    local.why["points"] = (f"a pca per {found[:-1]} ({len(points)}), each window scored by the one nearest its "
                           f"mean, in units of that point's own normal scores (the held-out last quarter: "
                           f"{checked.episodes} episode(s), the one model {holdout.episodes})")
    return local, checked


def _centres(modes: ModeFinding | None) -> list[dict[str, float]] | None:
    """The operating points' levels for the drift reference: the agent then compares a stream that runs in one of
    them (a long stop) with that point's own data, not with the mix of all (docs/drift.md)."""
    return [dict(md.centre) for md in modes.modes] if modes is not None else None


def _choose_family(data: NormalData, recipe: Recipe, asked: Family, say: Echo
                   ) -> tuple[Family, str, Trial | None]:
    """pca, unless conv1d-ae is asked for, or installed, given enough rows and measurably better held out."""
    from edgewatch.fit import torch_family as tf

    if asked is Family.PCA:
        return Family.PCA, " (--family pca)", None
    if asked is Family.CONV1D_AE:
        require_torch()
        say("training conv1d-ae on the first three quarters to check it on the last ...")
        head, tail = data.split(HOLDOUT)
        return Family.CONV1D_AE, " (--family conv1d-ae)", tf.held_out_trial(head, tail, recipe)
    if not tf.torch_installed():
        return Family.PCA, "", None
    if data.rows < tf.MIN_ROWS:
        return Family.PCA, f" (conv1d-ae not tried: {data.rows:,} rows, it needs {tf.MIN_ROWS:,})", None
    say("torch is installed: trying conv1d-ae against pca on the held-out last quarter ...")
    head, tail = data.split(HOLDOUT)
    from edgewatch.numpy_models.pca import write_pca_model

    with tempfile.TemporaryDirectory(prefix="edgewatch-fit-") as tmp:
        pca_head = write_pca_model(recipe.fit(head.segments), Path(tmp) / "pca.onnx")
        pca, conv = tf.compare(head, tail, recipe, pca_head)
    won = tf.better(conv, pca)
    verdict = "measurably better" if won else "not measurably better"
    note = f" (held out: {pca.describe()}; {conv.describe()}: {verdict})"
    return (Family.CONV1D_AE if won else Family.PCA), note, conv


def _report(model_data: NormalData, data: NormalData, choices: list, recipe: Recipe, holdout: HoldoutResult,
            out: Path, fit) -> FitReport:  # noqa: ANN001 - train.pca.PcaFit or None (torch family)
    values = model_data.values()
    if fit is not None:
        ranges = feature_ranges(values, choices, recipe.features, np.asarray(fit.scaler.scale), fit.basis,
                                fit.threshold)
        report = FitReport(str(out), "pca", data.rows, data.seconds, data.step, data.notes, choices, recipe,
                           fit.threshold, fit.components, holdout, ranges)
        if fit.points is not None:
            seen = fit.smallest_changes()
            report.points = [PointRanges(levels, [replace(fr, smallest_change=float(seen[k, j]))
                                                  for j, fr in enumerate(ranges)])
                             for k, levels in enumerate(fit.points.levels)]
            report.ranges = [replace(fr, smallest_change=float(seen[:, j].max())) for j, fr in enumerate(ranges)]
        return report
    from edgewatch.agent.model import ScoringModel

    card = ScoringModel(out).card
    ranges = feature_ranges(values, choices, recipe.features, np.zeros(len(recipe.features)),
                            np.zeros((len(recipe.features), 1)), card.threshold)
    recipe.why["window"] = f"{card.window} rows (the conv1d-ae's own window)"
    recipe.why["threshold"] = card.threshold_method
    return FitReport(str(out), card.family, data.rows, data.seconds, data.step, data.notes, choices, recipe,
                     card.threshold, 0, holdout, ranges)


def _fit_and_write(model_data: NormalData, data: NormalData, choices: list, recipe: Recipe,
                   holdout: HoldoutResult, out: Path, drift_modes: list[dict[str, float]] | None = None) -> FitReport:
    from edgewatch.numpy_models.pca import write_pca_model

    fit = recipe.fit(model_data.segments)
    trained_on = {"data": [Path(f).name for f in data.notes.files], "by": "edgewatch fit",
                  "holdout_false_episodes": holdout.episodes,
                  "left_out": {c.name: c.reason for c in choices if c.use is Use.LEFT_OUT}}
    if holdout.seconds:
        trained_on["holdout_seconds"] = round(holdout.seconds, 3)
    write_pca_model(fit, out, trained_on, drift_modes)
    return _report(model_data, data, choices, recipe, holdout, out, fit)
