"""``edgewatch fit``, start to end: read, screen, choose, check on the held-out part, fit, write, report.

The order matters and is the same for every data set: features are
screened on all the normal data; the settings follow from the data's
shape by principle (:mod:`edgewatch.fit.choosing`); the held-out last
quarter is scored by a model fitted on the rest, for the report; then the
model is fitted on all rows and written, its scores checked against ONNX
Runtime before the file is kept (``numpy_models/pca.py``), and signed last.
Each recipe is fitted once on the first part and once on all the rows, and
those fits are handed on from step to step (:class:`~edgewatch.fit.choosing.Fitted`).
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
from edgewatch.fit.choosing import (DEFAULT_WINDOW, EXCURSION_MARGIN, HOLDOUT, Fitted, HoldoutResult, Recipe,
                                    choose_recipe, duration_text, holdout_check, open_after_excursions,
                                    switches_text)
from edgewatch.fit.normal_data import Fill, NormalData, csv_files, read_normal_data
from edgewatch.fit.report import FitReport, PointRanges, conv1d_advice, feature_ranges, wide_states_warning
from edgewatch.fit.screening import (TREND_LIMIT, Drifting, ModeFinding, Use, operating_modes, phases,
                                     screen_features)
from edgewatch.fit.states import card_fields
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

LONG_FIT_VALUES = 1_000_000  # rows x features from which the stages of a fit are told (500 x 12,000: 9-27 s here)
LONG_READ_BYTES = 10_000_000  # CSV bytes from which reading is told (a 53 MB export: 1.5-4.7 s)


@dataclass
class Progress:
    """Short lines as the long stages of a fit begin, for the user who waits on a wide or long file (``edgewatch
    fit`` writes them to stderr: stdout stays the report, piped or not).

    Why only from ``LONG_FIT_VALUES`` values (rows x features): below that a fit ends within a second or two and
    its report follows at once; lines before it would only push it up. Reading is told from ``LONG_READ_BYTES``
    and every 100,000 rows, and the torch trial always (it trains for minutes)."""

    tell: Echo
    long: bool = False  # the data holds LONG_FIT_VALUES values or more (known once it is read)

    def stage(self, line: str) -> None:
        if self.long:
            self.tell(line)

    def always(self, line: str) -> None:
        self.tell(line)


def fit_model(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
              options: FitOptions | None = None, echo: Echo | None = None,
              progress: Echo | None = None) -> FitReport:
    """Turn CSV files of normal operation into the model file ``out``; returns the report (also echoed).

    ``echo`` gets the report's lines; ``progress`` the lines that tell the stages of a long fit (:class:`Progress`),
    apart, so that the report stays the same wherever the progress goes."""
    opts = options or FitOptions()
    say: Echo = echo or (lambda _line: None)
    news = Progress(progress or (lambda _line: None))
    started = time.perf_counter()
    out = Path(out)
    private = None
    if opts.key is not None:
        from edgewatch.agent.lifecycle.signing import load_private_key

        private = load_private_key(opts.key)  # a wrong key fails before the work, not after
    files = csv_files(paths)
    size = sum(f.stat().st_size for f in files)
    if size >= LONG_READ_BYTES:
        news.always(f"reading {len(files)} file{'s' if len(files) > 1 else ''} ({size / 1e6:,.0f} MB) ...")
    data = read_normal_data(files, time_column=opts.time_column, columns=opts.columns, ignore=opts.ignore,
                            fill=opts.fill, rows=opts.rows, decimal=opts.decimal,
                            progress=lambda f, n: news.always(f"reading {Path(f).name}: {n:,} rows"))
    news.long = data.rows * len(data.features) >= LONG_FIT_VALUES
    if len(data.features) == 1 and opts.family is Family.AUTO:
        from edgewatch.fit.univariate import fit_univariate

        news.stage(f"running the univariate detector over the {data.rows:,} rows as the agent would ...")
        report = fit_univariate(data, out)
    else:
        report = _fit_multivariate(data, out, opts, news)
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


def _fit_multivariate(data: NormalData, out: Path, opts: FitOptions, news: Progress) -> FitReport:
    news.stage(f"screening {len(data.features)} features of {data.rows:,} rows ...")
    choices = screen_features(data.features, data.segments, opts.drifting, data.notes.states)
    data, choices = _totaliser_rates(data, choices, opts)
    measured = [c.name for c in choices if c.use is not Use.LEFT_OUT or c.trend > TREND_LIMIT]
    if measured:
        news.stage("looking for operating points ...")
    modes = operating_modes(measured, data.select(measured).segments, DEFAULT_WINDOW) if measured else None
    first = choose_recipe(data, choices, opts.window)
    model_data = data.select(first.features)
    news.stage(f"fitting pca ({len(first.features)} features) on the first three quarters and on all the rows ...")
    one = open_after_excursions(Fitted(model_data, first))
    news.stage(f"checking it on the held-out last quarter ({data.split(HOLDOUT)[1].rows:,} rows) ...")
    holdout = holdout_check(one)
    fitted, holdout = _per_point(data, choices, measured, modes, first, one, holdout, news)
    recipe = fitted.recipe
    states = [c.name for c in choices if c.state and c.name in recipe.features]
    family, note, torch_trial = _choose_family(fitted, opts.family, news, states)
    if family is Family.CONV1D_AE:
        from edgewatch.fit.torch_family import fit_conv1d

        recipe.why.pop("points", None)  # the conv1d-ae is one model of every point
        news.always("training conv1d-ae on all the normal data ...")
        fit_conv1d(model_data, recipe, out, _centres(modes), card_fields(data, recipe.features))
        holdout = HoldoutResult(holdout.rows, holdout.seconds, torch_trial.false_episodes)
        report = _report(model_data, data, choices, recipe, holdout, out, None)
    else:
        news.stage(f"writing {out.name}, its scores checked against ONNX Runtime ...")
        report = _fit_and_write(fitted, data, choices, holdout, out, _centres(modes))
    report.family_note = note
    report.modes = modes
    refused = ("" if recipe.points is not None or "points" not in recipe.why else
               " (a pca per point was tried and not kept: one pca spans them all; the line under 'model' says why)")
    if modes is not None:
        report.warnings.append(modes.describe(data.notes.states) + refused)
    wide = report.wide_warning()
    if wide:
        report.warnings.append(wide + _conv1d_advice(opts.family, family, data, holdout) + refused)
    if holdout.episodes:
        report.warnings.append(
            f"the held-out last quarter of the normal data raised {holdout.episodes} episode(s) with a model of the "
            "first three quarters: the normal data is not one steady state (a slow change, or a state seen only at "
            "the end); more normal data covering every state the machine runs in makes fewer false alarms")
    return report


def _totaliser_rates(data: NormalData, choices: list, opts: FitOptions) -> tuple[NormalData, list]:
    """The data with each totaliser replaced by its rate (:mod:`edgewatch.fit.totalisers`), screened again, and the
    card's ``totalisers`` noted; ``data`` and ``choices`` as they were when there is none (the same bytes out)."""
    from edgewatch.fit import totalisers as tot

    counted = {c.name: c.resets for c in choices if c.resets is not None}
    if not counted:
        return data, choices
    j = {f: data.features.index(f) for f in counted}
    wraps = {f: tot.wrap_of([s[:, j[f]] for s in data.segments]) for f in counted}
    rated = tot.as_rates(data, wraps)
    if not rated.rows:
        return data, choices
    per_second = data.times is not None
    again = screen_features(rated.features, rated.segments, opts.drifting, data.notes.states)
    for k, c in enumerate(again):
        if c.name in counted:
            kept = tot.reason(wraps[c.name], counted[c.name] or 0, per_second, c.use is not Use.LEFT_OUT)
            plain = c.use is Use.LEVEL and not c.state
            if c.constant is not None:  # a sequence number's rate: no coarse reading's advice
                kept = tot.steady_reason(wraps[c.name], counted[c.name] or 0, per_second, c.constant)
            again[k] = replace(c, reason=kept if plain or c.constant is not None else f"{kept}; its rate: {c.reason}")
    data.notes.totalisers = {f: tot.card_entry(wraps[f], per_second) for f in counted
                             if next(c for c in again if c.name == f).use is not Use.LEFT_OUT}
    return rated, again


def _conv1d_advice(asked: Family, family: Family, data: NormalData, holdout: HoldoutResult) -> str:
    """``conv1d_advice`` when ``fit`` chose the pca itself (with ``--family pca`` the user chose it); with the
    normal data it takes for the held-out part to tell the two apart when pca raised no false episode there."""
    from edgewatch.fit import torch_family as tf

    if asked is not Family.AUTO or family is not Family.PCA:
        return ""
    longer = ""
    if not holdout.episodes and not tf.tells_apart(holdout.seconds):
        longer = f"{tf.TIE_DAYS / HOLDOUT:g} days of normal data or more (here {duration_text(data.seconds)})"
    return conv1d_advice(tf.torch_installed(), data.rows, tf.MIN_ROWS, longer)


def _per_point(data: NormalData, choices: list, measured: list[str], modes: ModeFinding | None, first: Recipe,
               one: Fitted, holdout: HoldoutResult, news: Progress) -> tuple[Fitted, HoldoutResult]:
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
        fit = one.whole()
        ranges = feature_ranges(one.data.values(), choices, one.recipe.features, np.asarray(fit.scaler.scale),
                                fit.basis, fit.threshold)
        if wide_states_warning(ranges):
            news.stage("looking for a batch's phases ...")
            points = _centres(phases(measured, data.select(measured).segments, one.recipe.window))
            found = "phases"
    if points is None:
        return one, holdout
    news.stage(f"trying a pca per {found[:-1]} ({len(points)}): fitting, then checking it on the held-out part ...")
    tried = one.with_points(replace(first, points=points, why=dict(first.why)))
    why = one.recipe.why
    if tried.whole().points is None:  # the drift reference's rule does not keep them apart, or a point is too small
        why["points"] = f"one model: a pca per {found[:-1]} ({len(points)}) was tried: {tried.whole().one_model_why}"
        return one, holdout
    local = open_after_excursions(tried)
    checked = holdout_check(local)
    if checked.episodes > holdout.episodes:
        why["points"] = (f"one model: a pca per {found[:-1]} ({len(points)}) raised {checked.episodes} episode(s) "
                         f"on the held-out last quarter, the one model {holdout.episodes}" + switches_text(checked))
        return one, holdout
    opening = local.recipe
    if EXCURSION_MARGIN * checked.most_over >= opening.k:
        why["points"] = (f"one model: a pca per {found[:-1]} ({len(points)}) went over the threshold for up to "
                         f"{checked.most_over} windows in {opening.n} on the held-out last quarter, too close to its "
                         f"opening ({opening.k} of {opening.n}) for new data to stay under it")
        return one, holdout
    opening.why["threshold"] += f" (of each point's steady {CORE_SHARE:.0%}, in units of its own)"
    opening.why["points"] = (f"a pca per {found[:-1]} ({len(points)}), each window scored by the one nearest its "
                             f"mean, in units of that point's own normal scores (the held-out last quarter: "
                             f"{checked.episodes} episode(s), the one model {holdout.episodes})")
    return local, checked


def _centres(modes: ModeFinding | None) -> list[dict[str, float]] | None:
    """The operating points' levels for the drift reference: the agent then compares a stream that runs in one of
    them (a long stop) with that point's own data, not with the mix of all (docs/drift.md)."""
    return [dict(md.centre) for md in modes.modes] if modes is not None else None


def _choose_family(fitted: Fitted, asked: Family, news: Progress, states: Sequence[str] = ()
                   ) -> tuple[Family, str, Trial | None]:
    """pca, unless conv1d-ae is asked for, or installed, given enough rows and measurably better held out
    (``states``: the features that are states or setpoints, which get no synthetic shift there)."""
    from edgewatch.fit import torch_family as tf

    data, recipe = fitted.data, fitted.recipe

    if asked is Family.PCA:
        return Family.PCA, " (--family pca)", None
    if asked is Family.CONV1D_AE:
        require_torch()
        news.always("training conv1d-ae on the first three quarters to check it on the last ...")
        head, tail = data.split(HOLDOUT)
        return Family.CONV1D_AE, " (--family conv1d-ae)", tf.held_out_trial(head, tail, recipe, states)
    if not tf.torch_installed():
        return Family.PCA, "", None
    if data.rows < tf.MIN_ROWS:
        return Family.PCA, f" (conv1d-ae not tried: {data.rows:,} rows, it needs {tf.MIN_ROWS:,})", None
    head, tail = data.split(HOLDOUT)
    from edgewatch.numpy_models.pca import write_pca_model

    with tempfile.TemporaryDirectory(prefix="edgewatch-fit-") as tmp:
        pca = tf.trial("pca", write_pca_model(fitted.head(), Path(tmp) / "pca.onnx"), head, tail, recipe, states)
    if not tf.can_win(pca, tail.seconds):
        return Family.PCA, (f" (conv1d-ae not trained: pca raised no false episode in the held-out last "
                            f"{duration_text(tail.seconds)}, and so short a part cannot show that the conv1d-ae "
                            f"raises as few: that takes {tf.TIE_DAYS:g} days held out, {tf.TIE_DAYS / HOLDOUT:g} "
                            "days of normal data)"), None
    news.always("torch is installed: trying conv1d-ae against pca on the held-out last quarter ...")
    conv = tf.held_out_trial(head, tail, recipe, states)
    won = tf.better(conv, pca, tail.seconds)
    verdict = "measurably better" if won else "not measurably better"
    if not won and conv.false_episodes == pca.false_episodes and not tf.tells_apart(tail.seconds):
        verdict += f": as many false episodes in {duration_text(tail.seconds)} do not tell them apart"
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


def _fit_and_write(fitted: Fitted, data: NormalData, choices: list, holdout: HoldoutResult, out: Path,
                   drift_modes: list[dict[str, float]] | None = None) -> FitReport:
    from edgewatch.numpy_models.pca import write_pca_model

    fit = fitted.whole()
    trained_on = {"data": [Path(f).name for f in data.notes.files], "by": "edgewatch fit",
                  "holdout_false_episodes": holdout.episodes,
                  "left_out": {c.name: c.reason for c in choices if c.use is Use.LEFT_OUT}}
    if holdout.seconds:
        trained_on["holdout_seconds"] = round(holdout.seconds, 3)
    write_pca_model(fit, out, trained_on, drift_modes, card_fields(data, fitted.recipe.features))
    return _report(fitted.data, data, choices, fitted.recipe, holdout, out, fit)
