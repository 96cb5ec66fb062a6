"""The default univariate detector as one model file: subsequence novelty and value levels, alert when either does.

The graph only passes each value through (window 1); the card's
post-process is ``max(novelty(score), levels(score))``: the ``novelty``
kind (:mod:`edgewatch.agent.postprocess.novelty`: Numenta's likelihood of the
nearest-neighbour distance of the latest stretch within a span that grows
with the stream's history, 48 rows doubling to 1536, shape length span/8;
one alert per event) and the ``levels`` kind (a value reaching a level
never seen in the stream, contextOSE's first context). The history lives
in the post-process, so each part speaks as soon as it can: the novelty
from row 67, the levels once their range is known.

Per stream, from its first 48 rows (the post-process decides, in the
agent as in evaluation; :mod:`edgewatch.agent.postprocess.sampling`): the
levels' range is learnt over 76,800 s of the stream's own time (256 rows
at NAB's 5 minutes; 48 to 1,536 rows), the top shape length is 16 hours
of its time when it is coarser than 5 minutes (192 rows at most), and a
stream whose first 48 values are non-negative integers is read through
Anscombe's transform. A stream without timestamps keeps the rows.
docs/eval.md (sixth and seventh rounds) has the figures. The novelty's
likelihood reads each distance through Student's predictive tail of the
rung's history (``tail`` 1, eighth round): a rung's first alarms need
more evidence while it has learnt from a few dozen distances, which
costs little once it has thousands. The levels beyond the range are
counted outward from each end (``edges`` 1, ninth round): a new minimum
needs a level's margin as a new maximum always did, so a stream's first
ordinary new minima are no longer alarms. An alert is one event for both
parts (the composite's ``alert``, thirteenth round): after a row the file
alerted on, the novelty's speaking rung holds for the ``m - 1`` rows in
which that value is still inside its latest stretch, so a levels alarm on
one value is not followed by the novelty's alarm on the same value.
Each rung's likelihood widens its spread by the bias of the sample
variance of distances that share ``m - 1`` of their ``m`` values
(``overlap`` 1, fourteenth round): a rung's first estimate, from about
two shape lengths of distances, no longer reads ordinary shapes as rare.

Settings. On principle: shape length span / 8 and the likelihood's
learning / hold / refractory rows in proportion to the span (100 / 200 /
30 per 384 rows, the fourth round's values, chosen then by leave-one-
category-out), Numenta's likelihood history (8640) and re-estimation
(100), contextOSE's 8 levels, one alert per event, Anscombe's 3/8,
Student's predictive tail (n - 1 degrees of freedom of a rung's n
remembered distances, nothing chosen), the same margin below the range
as above it (sign symmetry, nothing chosen), a rung taking over keeps
the hold left on the one it replaces (one alert per event, nothing
chosen), an alerted value held for the rows it stays in the novelty's
latest stretch (one alert per event across the parts; the length is the
shape's own), the variance's bias for a rung's overlapping distances
(triangular autocorrelation over the rung's own m, nothing chosen); the
lengths in time are the rows chosen on NAB read at its 5-minute
interval. Chosen on the 25 NAB files and their perturbed copies
(``edgewatch eval nab --perturb all``, docs/eval.md, fifth and sixth
rounds): the ladder (bottom 48, ratio 2, top 1536), which lengths follow
time (the range and the shape, not the spans), the count rule.
:func:`thirteenth_round` (a rung's distances read as independent),
:func:`tenth_round` (and each part alone after an alert), :func:`ninth_round` (and each rung's hold afresh),
:func:`eighth_round` (and levels counted from the minimum),
:func:`seventh_round` (and the Gaussian tail), :func:`fifth_round` (every
length in rows, no counts) and :func:`fourth_round` (one 384-row span)
are the previous defaults.

The file itself (pass-through graph and card) is built in
:mod:`edgewatch.numpy_models.univariate`, below ``fit`` and ``eval``:
``edgewatch fit`` writes it for a single-feature series (nothing to
train, a card naming the feature), this module keeps the settings' story,
the earlier rounds and the NumPy reference that checks a written file.

Fails where both parts fail: a shape change that stays within the known
range and resembles some earlier stretch (art_daily_nojump), a slow drift,
bursts that are ordinary for the stream but rarer than its span, a
stream whose first rows are not typical of it (its first 16 intervals
decide its lengths, its first 48 values whether it is counts: an
integer-valued measurement is taken for counts).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgewatch.contract.postprocess import Edges, Handover, Margin, Overlap, Tail, Width
from edgewatch.files import replacing
from edgewatch.numpy_models.univariate import NoveltyLevelsConfig, default_parts, detector_bytes, novelty_params


def levels_in_spread() -> NoveltyLevelsConfig:
    """The sixteenth round's candidate, not the default: the default with the levels as wide in each stream's
    own spread whatever the rows its range was learnt over (``width`` 1 on the ``levels`` part)."""
    novelty, levels = default_parts(width=Width.SPREAD)
    return NoveltyLevelsConfig(novelty=novelty, levels=levels)


def levels_margin() -> NoveltyLevelsConfig:
    """The sixteenth round's second candidate, not the default: the default with a value new only a whole level
    from every value the stream has shown, inside the range as beyond it (``margin`` 1 on the ``levels`` part)."""
    novelty, levels = default_parts(margin=Margin.EVERYWHERE)
    return NoveltyLevelsConfig(novelty=novelty, levels=levels)


def thirteenth_round() -> NoveltyLevelsConfig:
    """The thirteenth round's default (the same file with a rung's distances read as independent): kept to
    compare."""
    novelty, levels = default_parts(Tail.STUDENT, Edges.SYMMETRIC, Handover.HOLD, Overlap.INDEPENDENT)
    return NoveltyLevelsConfig(novelty=novelty, levels=levels)


def tenth_round() -> NoveltyLevelsConfig:
    """The tenth round's default (the thirteenth's with each part alone after an alert): kept to compare."""
    return replace(thirteenth_round(), alert=0.0)


def ninth_round() -> NoveltyLevelsConfig:
    """The ninth round's default (the tenth's with each rung's hold starting afresh): kept to compare."""
    novelty, levels = default_parts(Tail.STUDENT, Edges.SYMMETRIC, Handover.FRESH, Overlap.INDEPENDENT)
    return NoveltyLevelsConfig(novelty=novelty, levels=levels, alert=0.0)


def eighth_round() -> NoveltyLevelsConfig:
    """The eighth round's default (the ninth's with the levels counted from the range's minimum): kept to
    compare."""
    novelty, levels = default_parts(Tail.STUDENT, Edges.FROM_MINIMUM, Handover.FRESH, Overlap.INDEPENDENT)
    return NoveltyLevelsConfig(novelty=novelty, levels=levels, alert=0.0)


def seventh_round() -> NoveltyLevelsConfig:
    """The seventh round's default (the eighth's with the likelihood's Gaussian tail): kept to compare."""
    novelty, levels = default_parts(Tail.GAUSSIAN, Edges.FROM_MINIMUM, Handover.FRESH, Overlap.INDEPENDENT)
    return NoveltyLevelsConfig(novelty=novelty, levels=levels, alert=0.0)


def fifth_round() -> NoveltyLevelsConfig:
    """The fifth round's default (the same ladder, every length in rows, no counts): kept to compare."""
    return NoveltyLevelsConfig(novelty=novelty_params(1536, 48, 2),
                               levels={"bins": 8, "range_rows": 256, "rest": 100, "cap": 4096}, alert=0.0)


def fourth_round() -> NoveltyLevelsConfig:
    """The fourth round's default (one 384-row span, m 48, hold 200, lengths in rows): kept to compare."""
    return NoveltyLevelsConfig(novelty=novelty_params(384), levels=fifth_round().levels, alert=0.0)


def reference_scores(values: np.ndarray, config: NoveltyLevelsConfig, times: np.ndarray | None = None) -> np.ndarray:
    """The same detector from the graph-side NumPy statistic, rung by rung, to check the file when it is written.

    Independent of the post-process's row-by-row updates and of its
    buffering of a stream's first rows: the stream's sampling is decided
    once (by the agent's rule, :func:`edgewatch.agent.postprocess.sampling.decide`),
    the lengths it gives are fixed, a count series is transformed whole;
    each rung's distance comes from :func:`~edgewatch.eval.detectors.novelty.novelty_scores`
    on whole windows, its own likelihood runs from its first full window, and
    a rung's output is used from the row it speaks until the next one speaks
    (with ``handover`` 1, its likelihood starting there with the hold the rung before had left).
    With the composite's ``alert``, the speaking rung holds for ``m - 1`` rows after a row the
    levels alerted on (a row the novelty alerted on is held already, for longer).
    """
    from dataclasses import replace as with_

    from numpy.lib.stride_tricks import sliding_window_view

    from edgewatch.agent.postprocess import Levels, Likelihood
    from edgewatch.agent.postprocess.sampling import anscombe, decide
    from edgewatch.contract.postprocess import LevelsParams, NoveltyParams
    from edgewatch.eval.detectors.novelty import NoveltyConfig, novelty_scores

    x = np.asarray(values, dtype=np.float32).astype(np.float64)
    p = NoveltyParams.from_dict(config.novelty)
    lp = LevelsParams.from_dict(config.levels)
    rows = max(p.sampling_rows(), lp.sampling_rows())
    t = np.full(len(x), np.nan) if times is None else np.asarray(times, dtype=np.float64)
    seen = decide(x[:rows].tolist(), t[:rows].tolist(), p)
    if rows and len(x) >= rows and seen.counts:
        x = np.array([anscombe(v) for v in x.tolist()])
    interval = seen.interval if len(x) >= rows else None
    p = with_(p, m=float(p.m_for(interval)), m_seconds=0.0, count_rows=0.0)
    range_rows = lp.rows_for(interval)
    lp = with_(lp, bins=lp.bins_for(range_rows), range_rows=float(range_rows), range_seconds=0.0, count_rows=0.0)
    out = np.zeros(len(x))
    lev = Levels(lp).update_many(np.zeros(len(x), dtype=np.int64), x)
    alerted = (lev >= config.alert) if config.alert > 0 else np.zeros(len(x), dtype=bool)
    ladder = p.ladder()
    speaks_at = [span - 1 + int(p.likelihood(span / int(p.span)).learning) for _, span in ladder] + [len(x)]
    rungs = []
    carry = Handover(int(p.handover)) is Handover.HOLD
    corrected = Overlap(int(p.overlap)) is Overlap.CORRECTED
    held_left = np.zeros(len(x), dtype=np.int64)  # the speaking rung's rows of hold left after each row
    for k, (m, span) in enumerate(ladder):
        lik = p.likelihood(span / int(p.span))
        speaks, until = speaks_at[k], speaks_at[k + 1]
        got, held = np.zeros(len(x)), np.zeros(len(x), dtype=np.int64)
        if len(x) >= span:
            windows = sliding_window_view(x, span)
            d = np.concatenate([novelty_scores(windows[a:a + 64], NoveltyConfig(window=span, scales=[(span, m)]))
                                for a in range(0, len(windows), 64)])
            one = Likelihood(lik, m if corrected else 1)
            st = one._new_state()
            for i, v in enumerate(d.tolist(), start=span - 1):
                if carry and rungs and i == speaks:
                    st.held = max(st.held, int(held_left[i]))
                got[i] = one._one(st, v)
                if alerted[i] and speaks <= i < until:
                    st.held = max(st.held, m - 1)
                held[i] = st.held
        held_left[speaks:] = held[speaks:]
        rungs.append((speaks, got))
    for k, (speaks, got) in enumerate(rungs):
        until = rungs[k + 1][0] if k + 1 < len(rungs) else len(x)
        out[speaks:until] = got[speaks:until]
    return np.maximum(out, lev)


def _check_series() -> np.ndarray:
    """A seeded daily-like cycle long enough for every rung of the ladder, with a new shape and new levels."""
    rng = np.random.default_rng(0)
    n = 2400
    x = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 1, n)
    x[2150:2210] += 25
    x[700:740] += 6  # a milder one for the shorter rungs
    return x


def write_model(out: str | os.PathLike[str], config: NoveltyLevelsConfig | None = None, check: bool = True,
                feature: str = "value", data: str = "") -> Path:
    """Write the file (temporary file, then rename); with ``check``, run it as the agent would and compare it
    with :func:`reference_scores` (refused with RuntimeError if they differ)."""
    config = config or NoveltyLevelsConfig()
    out = Path(out)
    with replacing(out, suffix=".onnx") as tmp:
        tmp.write_bytes(detector_bytes(config, feature, data))
        if check:
            from edgewatch.eval.runner import ModelDetector

            x = _check_series()
            det = ModelDetector(tmp)
            for times in (None, 1.7e9 + 3600.0 * np.arange(len(x))):  # rows; an hourly stream's own time
                got = det.score_series(x, times=times)
                want = reference_scores(x, config, times)
                if not np.allclose(got, want, rtol=1e-6, atol=1e-6) or not (want >= config.threshold).any():
                    raise RuntimeError("the written novelty-levels file disagrees with its NumPy reference")
    return out
