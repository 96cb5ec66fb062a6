"""The ``pca`` family: Hotelling T² and Q (SPE) of a window's mean, fitted with NumPy alone.

Why this family: it needs no torch, fits in milliseconds, and is the
classical monitor of a multivariate process (the SKAB leaderboard's
"T-squared+Q"). It can therefore be fitted where only the agent is
installed: ``edgewatch train pca`` on the base install, and ``edgewatch
agent run --learn N`` on each stream's own first N messages.

What it scores, and why the window's *mean*: each row is standardised
(the scaler of the first rows), the last ``window`` rows are averaged, and
the average is compared with the distribution of such averages on the
training rows: T² over the principal components that hold ``variance`` of
it, plus Q, the squared residual outside them; each is divided by its own
``quantile`` on the training windows so that both count alike. Averaging
first (rather than averaging per-row T²) keeps a small sustained shift of
several sensors together -- a valve closing, a leak -- while the
row-to-row noise cancels; on SKAB it halved the false alarms of per-row
T²+Q at the same miss rate (docs/skab.md). Because the graph is one affine
map followed by a sum of squares, T²+Q is a single MatMul:
``score = ||(mean(s) - c) B||²`` with ``B = [P Λ^-½ / √t_ref, (I - P Pᵀ) / √q_ref]``.

Threshold: ``factor`` times the ``quantile`` of the training windows'
scores. The training windows overlap and are the very rows the model was
fitted on, so their quantile is optimistic; a factor corrects for that the
same way for every file (SKAB's own LSTM-AE rule is 1.5 x the 99th
percentile). The defaults were chosen on SKAB by cross-validation across
its two groups (docs/skab.md).

Features named in ``rates`` enter by their *rate* instead of their level:
the least-squares slope of the window's standardised rows (one more
weight vector in the same affine map, so the graph stays a MatMul). Why:
a temperature that warms through the whole normal period leaves any range
the training rows saw, but the pace of its warming stays comparable;
``edgewatch fit`` turns such features into rates (docs/fit.md).

Operating points (``points``, as ``edgewatch fit`` finds them): one pca
over a batch cycle or a motor's runs and stops spreads over the distance
between the points, and a fault inside one stays inside it. Given two or
more points, the model is one pca per point (:class:`LocalPoints`), still
one graph: the window's point by ArgMin over its distances to the
centres, that point's centre and map by Gather, then the same sum of
squares (docs/fit.md, "A model per operating point or batch phase").

Where it does badly: anything that keeps the window's mean (a change of
vibration spectrum at equal RMS, a single-row spike diluted by the
window), and features whose normal range is wider than what the training
rows saw (slow temperatures): name those in ``ignore`` or ``rates``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgewatch.contract import (
    FEATURE_ERROR_OUTPUT,
    INPUT_NAME,
    SCORE_OUTPUT,
    Decision,
    ModelCard,
    Quantization,
    Scaler,
    ScoreStats,
    Task,
)
from edgewatch.contract.drift_reference import drift_reference_from, unchecked_reasons
from edgewatch.errors import BadInput, BadModelFile
from edgewatch.files import replacing
from edgewatch.wire.onnx_write import Node, float32, int64, model_bytes

FAMILY = "pca"
MAX_PARITY_REL_ERR = 1e-3
PARITY_FLOOR = 0.01  # of the threshold: scores below it are compared to it, not to themselves (float32 rounding)


@dataclass
class PcaConfig:
    """How a ``pca`` model is fitted; every field is a command-line option of ``edgewatch train pca``."""

    window: int = 10
    variance: float = 0.99  # share of the window means' variance the T² components hold
    quantile: float = 0.99
    factor: float = 3.0  # threshold = factor * quantile of the training windows' scores
    ignore: list[str] = field(default_factory=list)  # features left out of the score (still in the input)
    rates: list[str] = field(default_factory=list)  # features scored by their slope over the window
    k: int = 1  # the card's decision: an episode when k of the last n windows are over
    n: int = 1
    m: int | None = None  # ... and it ends after m quiet windows (None: when none of the last n are over)

    def check(self, features: list[str]) -> None:
        problems = []
        if self.window < 1:
            problems.append(f"window {self.window} < 1")
        if not 0 < self.variance <= 1:
            problems.append(f"variance {self.variance} not in (0, 1]")
        if not 0 < self.quantile <= 1:
            problems.append(f"quantile {self.quantile} not in (0, 1]")
        if not self.factor > 0:
            problems.append(f"factor {self.factor} must be > 0")
        if not 1 <= self.k <= self.n:
            problems.append(f"decision needs 1 <= k <= n (k={self.k}, n={self.n})")
        if self.m is not None and self.m < 1:
            problems.append(f"decision needs m >= 1 (m={self.m})")
        for what, names in (("ignored", self.ignore), ("rate", self.rates)):
            unknown = sorted(set(names) - set(features))
            if unknown:
                problems.append(f"{what} features {unknown} are not among the data's features {features}")
        both = sorted(set(self.ignore) & set(self.rates))
        if both:
            problems.append(f"features {both} are both ignored and scored by their rate")
        if self.rates and self.window < 3:
            problems.append(f"a rate needs a window of at least 3 rows (window {self.window})")
        if len(set(features) - set(self.ignore)) == 0:
            problems.append("every feature is ignored")
        if problems:
            raise BadInput("pca settings: " + "; ".join(problems))


@dataclass
class PcaFit:
    """A fitted model: everything the graph needs, plus what the card reports."""

    features: list[str]
    config: PcaConfig
    scaler: Scaler
    center: np.ndarray  # [F] mean of the training window features, scaled units (0 for ignored features)
    basis: np.ndarray  # [F, m] score = ||(window features - center) @ basis||^2
    feature_scale: np.ndarray  # [F] 1 / std of each window feature (0 for ignored)
    components: int
    threshold: float
    train_scores: np.ndarray
    training: np.ndarray  # the raw training rows [T, F] (the card's drift reference and the parity probe)
    weights: np.ndarray  # [window, F] a window's feature f is sum_t weights[t, f] * scaled row t
    points: LocalPoints | None = None  # a model per operating point (None: the one model above)
    one_model_why: str = ""  # operating points were given yet the one model is used: why (for the report)

    @property
    def rows(self) -> int:
        return len(self.training)

    def score_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's (score, feature_error) in NumPy, for raw windows ``[B, window, F]`` (the parity reference)."""
        s = (np.asarray(windows, dtype=np.float64) - self.scaler.offset) * np.asarray(self.scaler.scale)
        if self.points is not None:
            return self.points.score(s.mean(axis=1), np.einsum("btf,tf->bf", s, self.weights))
        d = np.einsum("btf,tf->bf", s, self.weights) - self.center
        u = d @ self.basis
        return (u * u).sum(axis=1), (d * self.feature_scale) ** 2

    def smallest_changes(self) -> np.ndarray:
        """``[points, F]``: the sustained change of one feature alone (raw units; per row for a rate) whose window
        crosses the threshold, in each operating point (one row for the one model); inf where it never does."""
        bases = self.points.bases if self.points is not None else self.basis[None]
        norm = np.linalg.norm(bases, axis=2) * np.asarray(self.scaler.scale)[None]
        with np.errstate(divide="ignore"):
            return np.where(norm > 0, np.sqrt(self.threshold) / np.where(norm > 0, norm, 1.0), np.inf)


@dataclass
class LocalPoints:
    """A pca per operating point: each window goes to its nearest point, and that point's own centre, spread and
    components score it, in units of that point's own ``quantile`` of normal scores, so that the one threshold
    means the same in every point.

    Why: fitted over a batch cycle or a motor's runs and stops, the one
    model's spread is the distance between the points, and a fault inside
    one (a leak in the hold, vibration up 30 % while running) stays inside
    it. The assignment is the drift reference's rule (``DriftModes``: the
    nearest centre in units of the pooled within-point spread, over the
    features whose level the model reads) applied to the window's mean, so
    the score and the agent's drift check split the data alike. A window
    that straddles a switch has a mean between two points; it goes to the
    nearer, and such windows are in that point's training windows too
    (assigned by the same rule), so the model has seen them.
    """

    assign_scale: np.ndarray  # [F] window mean of scaled rows * assign_scale + assign_shift = the rule's units
    assign_shift: np.ndarray  # [F] (0 for features the rule does not read)
    centres_z: np.ndarray  # [K, F] the points' centres in the rule's units
    centers: np.ndarray  # [K, F] each point's mean window feature (scaled units)
    bases: np.ndarray  # [K, F, M] each point's T2 and Q map, divided by the root of its own normal quantile
    feature_scales: np.ndarray  # [K, F] 1 / each point's spread of each window feature
    components: list[int]
    windows: list[int]  # training windows per point
    levels: list[dict[str, float]]  # each point's centre, raw units, for the report
    given: list[dict[str, float]]  # the points fit_pca was given (the card's drift reference is built from them)

    def assign(self, window_mean: np.ndarray) -> np.ndarray:
        """The point of each window from the mean of its scaled rows ``[B, F]`` (the graph's ArgMin)."""
        z = window_mean * self.assign_scale + self.assign_shift
        return np.argmin((((z[:, None, :] - self.centres_z[None]) ** 2).sum(axis=2)), axis=1)

    def score(self, window_mean: np.ndarray, summary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's (score, feature_error), one point's windows at a time.

        Why not each window's own map gathered, as the graph does: that is a ``[windows, F, M]`` copy, 1 GB for
        a million rows of eight features (the fit's peak memory went from 0.57 to 1.38 GB)."""
        k = self.assign(window_mean)
        d = summary - self.centers[k]
        scores = np.empty(len(d))
        for g in range(len(self.centers)):
            mine = k == g
            u = d[mine] @ self.bases[g]
            scores[mine] = (u * u).sum(axis=1)
        return scores, (d * self.feature_scales[k]) ** 2


def window_weights(window: int, features: Sequence[str], rates: Sequence[str]) -> np.ndarray:
    """``[window, F]``: 1/window (the mean) for a level, the least-squares slope per row for a rate."""
    t = np.arange(window, dtype=np.float64) - (window - 1) / 2
    slope = t / max(float((t * t).sum()), 1e-300)
    return np.stack([slope if f in rates else np.full(window, 1.0 / window) for f in features], axis=1)


def window_features(scaled: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[rows - window + 1, F]``: each window's weighted sum of its scaled rows, one offset at a time.

    Why not an einsum over a sliding view: that materialised ``[windows, F,
    window]`` (640 MB for a million rows of eight features).
    """
    w = len(weights)
    n = len(scaled) - w + 1
    out = np.zeros((n, scaled.shape[1]))
    for t in range(w):
        out += scaled[t:t + n] * weights[t]
    return out


def _segments(values: np.ndarray | Sequence[np.ndarray], n_features: int) -> list[np.ndarray]:
    parts = [values] if isinstance(values, np.ndarray) else list(values)
    out = [np.asarray(p, dtype=np.float64) for p in parts]
    for p in out:
        if p.ndim != 2 or p.shape[1] != n_features:
            raise BadInput(f"pca: data of shape {p.shape} for {n_features} features")
    return out


def fit_pca(values: np.ndarray | Sequence[np.ndarray], features: list[str], config: PcaConfig | None = None,
            points: Sequence[Mapping[str, float]] | None = None) -> PcaFit:
    """Fit the scaler, the components and the threshold on ``values [T, F]`` (raw units, normal rows).

    ``values`` may also be a list of segments (separate files, or parts
    cut at a gap in time): windows never span two segments. Fails with
    :class:`BadInput` on non-finite values or fewer windows than the
    covariance needs (windows >= used features + 2). ``points``: the
    operating points' levels (feature -> raw level, two or more, as
    ``edgewatch fit`` finds them): a model per point (:class:`LocalPoints`)
    when the drift reference's rule keeps them apart and each point holds
    enough windows for its covariance, else the one model.
    """
    cfg = config or PcaConfig()
    parts = _segments(values, len(features))
    cfg.check(list(features))
    x = np.concatenate(parts) if parts else np.zeros((0, len(features)))
    if not np.isfinite(x).all():
        raise BadInput("pca: the training rows hold NaN or inf values")
    used = np.array([f not in cfg.ignore for f in features])
    n_used = int(used.sum())
    n_windows = sum(max(len(p) - cfg.window + 1, 0) for p in parts)
    if n_windows < n_used + 2:
        raise BadInput(f"pca: {len(x)} rows give {n_windows} windows of {cfg.window}; "
                       f"need at least {n_used + 2} for {n_used} features")
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 1.0)
    weights = window_weights(cfg.window, features, cfg.rates)
    feats = np.concatenate([window_features((p - mean) * scale, weights) for p in parts
                            if len(p) >= cfg.window])[:, used]
    center_u = feats.mean(axis=0)
    dev = feats - center_u
    basis_u, k = _components(dev, cfg)
    basis = np.zeros((len(features), basis_u.shape[1]))
    basis[used] = basis_u
    center = np.zeros(len(features))
    center[used] = center_u
    spread = dev.std(axis=0)
    fscale = np.zeros(len(features))
    fscale[used] = np.where(spread > 1e-12, 1.0 / np.where(spread > 1e-12, spread, 1.0), 0.0)
    train_scores = ((dev @ basis_u) ** 2).sum(axis=1)
    threshold = cfg.factor * float(np.quantile(train_scores, cfg.quantile))
    scaler = Scaler("standard", [float(v) for v in mean], [float(v) for v in scale])
    fit = PcaFit(list(features), cfg, scaler, center, basis, fscale, k, threshold, train_scores, x, weights)
    return fit_points(fit, parts, points) if points else fit


def fit_points(fit: PcaFit, values: np.ndarray | Sequence[np.ndarray], points: Sequence[Mapping[str, float]]
               ) -> PcaFit:
    """``fit``, the one model of ``values`` (as :func:`fit_pca` made it), with a model per operating point when
    the points can be told apart and each fills its covariance (:class:`LocalPoints`), else ``fit`` itself with the
    reason in ``one_model_why``.

    Why apart from :func:`fit_pca`: the points' models start from the one model's scaler and window features, and
    ``edgewatch fit`` has that model already (it tries the one model first, then one per point, on the same rows):
    fitting the points from it skips a second fit of the one model."""
    return _local_fit(fit, _segments(values, len(fit.features)), points)


def _components(dev: np.ndarray, cfg: PcaConfig) -> tuple[np.ndarray, int]:
    """``[F, m]`` T2 over the components holding ``cfg.variance``, plus Q, each over its ``cfg.quantile`` on
    ``dev`` (centred window features); and how many components (the one model's, and each point's)."""
    n = dev.shape[1]
    lam, vec = np.linalg.eigh(np.cov(dev, rowvar=False).reshape(n, -1))
    order = np.argsort(lam)[::-1]
    lam, vec = np.clip(lam[order], 0.0, None), vec[:, order]
    keep = lam > max(lam[0], 1e-12) * 1e-9
    share = np.cumsum(lam) / max(lam.sum(), 1e-300)
    k = int(min(np.searchsorted(share, cfg.variance - 1e-12) + 1, keep.sum()))
    p = vec[:, :k]
    t2_basis = p / np.sqrt(lam[:k])
    t_ref = max(float(np.quantile(((dev @ t2_basis) ** 2).sum(axis=1), cfg.quantile)), 1e-12)
    blocks = [t2_basis / np.sqrt(t_ref)]
    if k < n:
        resid = np.eye(n) - p @ p.T
        q_ref = max(float(np.quantile(((dev @ resid) ** 2).sum(axis=1), cfg.quantile)), 1e-6 * float(lam.sum()) + 1e-12)
        blocks.append(resid / np.sqrt(q_ref))
    return np.concatenate(blocks, axis=1), k


SPREAD_FLOOR = 1e-3  # a point's spread of a feature is at least this share of its std over all the normal rows
CORE_SHARE = 0.9  # a point's model is fitted on this share of its windows, those nearest its centre
CORE_STEPS = 5


def _core(windows: np.ndarray) -> np.ndarray:
    """The ``CORE_SHARE`` of ``windows`` nearest their own centre by Mahalanobis distance, found by a few
    concentration steps (those of the minimum covariance determinant estimator).

    Why: a point's windows include brief excursions that are part of normal
    operation, a motor's start-up spike, the windows that straddle a switch
    between points. Fitted on all of them, a running motor's spread was its
    start-ups' and a 30 % rise of its vibration stayed inside it. Left out of
    the fit they score high; they are brief, and the opening waits them out
    (``fit.choosing.open_after_excursions``)."""
    spread = windows.std(axis=0)
    z = windows / np.where(spread > 1e-12, spread, 1.0)  # features alike; one constant within the point stays 0
    keep = np.ones(len(z), dtype=bool)
    for _ in range(CORE_STEPS):
        own = z[keep]
        dev = z - own.mean(axis=0)
        inverse = np.linalg.pinv(np.cov(own, rowvar=False).reshape(z.shape[1], -1), rcond=1e-9, hermitian=True)
        dist = ((dev @ inverse) * dev).sum(axis=1)  # not a 3-operand einsum: no BLAS, 0.6 s a step at 500 features
        new = dist <= np.quantile(dist, CORE_SHARE)
        if (new == keep).all() or new.sum() < z.shape[1] + 2:
            break
        keep = new
    return windows[keep]


def _local_fit(fit: PcaFit, parts: list[np.ndarray], points: Sequence[Mapping[str, float]]) -> PcaFit:
    """``fit`` with a model per operating point (:class:`LocalPoints`), or ``fit`` itself when the points cannot
    be told apart by the drift reference's rule or one of them holds too few windows for its covariance."""
    cfg, features = fit.config, fit.features
    unchecked = unchecked_reasons(features, cfg.rates, cfg.ignore)
    modes = drift_reference_from(fit.training, unchecked=unchecked, features=features, modes=points).modes
    if modes is None:
        named = [f for f in features if f not in unchecked and all(f in p for p in points)]
        return replace(fit, one_model_why=(
            "none of the features that tell them apart is scored by its level (a rate or an ignored feature "
            "assigns no point)" if not named else
            f"the drift check's rule, refining the {len(points)} centres on the rows, leaves one of them with fewer "
            "than 2 rows: it does not keep them apart (a point of window means that no row holds alone, such as the "
            "windows that straddle a start or a stop)"))
    used = np.array([f not in cfg.ignore for f in features])
    offset, scale = np.asarray(fit.scaler.offset), np.asarray(fit.scaler.scale)
    a_scale, a_shift = np.zeros(len(features)), np.zeros(len(features))
    centres_z = np.zeros((len(modes.centre), len(features)))
    for i, name in enumerate(modes.features):  # z = raw mean / s = (scaled mean / scale + offset) / s
        j = features.index(name)
        a_scale[j] = 1.0 / (scale[j] * modes.scale[i])
        a_shift[j] = offset[j] / modes.scale[i]
        centres_z[:, j] = np.asarray(modes.centre)[:, i] / modes.scale[i]
    mean_w = window_weights(cfg.window, features, [])
    scaled = [(p - offset) * scale for p in parts if len(p) >= cfg.window]
    summary = np.concatenate([window_features(p, fit.weights) for p in scaled])
    probe = LocalPoints(a_scale, a_shift, centres_z, np.zeros_like(centres_z), np.zeros((0, 0, 0)),
                        np.zeros_like(centres_z), [], [], [], [])
    label = probe.assign(np.concatenate([window_features(p, mean_w) for p in scaled]))
    n_used = int(used.sum())
    counts = np.bincount(label, minlength=len(centres_z))
    if counts.min() * CORE_SHARE < n_used + 2:  # each point's steady share must still fill its covariance
        small = int(np.argmin(counts))
        where = ", ".join(f"{f} {v:.4g}" for f, v in list(zip(modes.features, np.asarray(modes.centre)[small]))[:3])
        return replace(fit, one_model_why=(
            f"point {small + 1} ({where}) holds {counts[small]} windows, and its steady {CORE_SHARE:.0%} is fewer "
            f"than the {n_used + 2} its covariance needs"))
    centers, bases, fscales, comps = np.zeros_like(centres_z), [], np.zeros_like(centres_z), []
    cores = []
    for g in range(len(centres_z)):
        own = _core(summary[label == g][:, used])
        centers[g, used] = own.mean(axis=0)
        dev = own - own.mean(axis=0)
        spread = dev.std(axis=0)
        spread = np.maximum(spread, SPREAD_FLOOR)  # a feature still within a point (a stopped motor's 0 A)
        block, k = _components(dev / spread, cfg)  # each point standardised by its own spread
        block = block / spread[:, None]
        core_scores = ((dev @ block) ** 2).sum(axis=1)
        one_spread = float(((block * spread[:, None]) ** 2).sum(axis=1).max())  # one spread of its closest feature
        ref = max(float(np.quantile(core_scores, cfg.quantile)), one_spread, 1e-12)  # a still point: not its rounding
        cores.append(core_scores / ref)
        full = np.zeros((len(features), block.shape[1]))
        full[used] = block / np.sqrt(ref)  # in units of this point's own normal quantile
        bases.append(full)
        fscales[g, used] = 1.0 / spread
        comps.append(k)
    width = max(b.shape[1] for b in bases)
    stacked = np.stack([np.pad(b, ((0, 0), (0, width - b.shape[1]))) for b in bases])
    levels = [{f: float(c[i]) for i, f in enumerate(modes.features)} for c in np.asarray(modes.centre)]
    local = LocalPoints(a_scale, a_shift, centres_z, centers, stacked, fscales, comps,
                        [int(c) for c in counts], levels, [dict(p) for p in points])
    train_scores, _ = local.score(np.concatenate([window_features(p, mean_w) for p in scaled]), summary)
    threshold = cfg.factor * float(np.quantile(np.concatenate(cores), cfg.quantile))
    return replace(fit, points=local, threshold=threshold, train_scores=train_scores, components=max(comps))


def pca_card(fit: PcaFit, trained_on: dict[str, Any] | None = None,
             drift_modes: Sequence[Mapping[str, float]] | None = None) -> ModelCard:
    """The card of ``fit``; ``drift_modes``: the operating points the drift reference tells apart (feature -> level)."""
    cfg = fit.config
    ignored = f"; ignores {', '.join(cfg.ignore)}" if cfg.ignore else ""
    rates = (f"; {', '.join(cfg.rates)} by {'its' if len(cfg.rates) == 1 else 'their'} slope over the window"
             if cfg.rates else "")
    levels = [j for j, f in enumerate(fit.features) if f not in cfg.ignore and f not in cfg.rates]
    low, high = fit.training.min(axis=0), fit.training.max(axis=0)
    if drift_modes is None and fit.points is not None:
        drift_modes = fit.points.given  # the score's points and the drift check's are one rule
    what = (f"Hotelling T2 over {fit.components} principal components plus Q (SPE)" if fit.points is None else
            f"a pca per operating point ({len(fit.points.components)} points, each window to the nearest by its mean; "
            f"{', '.join(map(str, fit.points.components))} components): Hotelling T2 plus Q (SPE)")
    per = "" if fit.points is None else ", then in units of that point's own quantile of its normal scores"
    return ModelCard(
        family=FAMILY, task=Task.RECONSTRUCT, sample_shape=[cfg.window, len(fit.features)],
        features=list(fit.features), scaler=fit.scaler,
        score=(f"{what} of the mean of the "
               f"window's standardised rows, each in units of its {cfg.quantile:g} quantile on the training "
               f"windows{per}{ignored}{rates}"),
        threshold=float(fit.threshold),
        threshold_method=f"{cfg.factor:g} x the {cfg.quantile:g} quantile of the training windows' scores" + (
            "" if fit.points is None else f" (of each point's steady {CORE_SHARE:.0%}, in units of its own)"),
        score_stats={"normal": ScoreStats.of(fit.train_scores)}, quantization=Quantization.NONE,
        trained_on={"rows": fit.rows, "family": FAMILY, "window": cfg.window, "variance": cfg.variance,
                    "components": fit.components, "ignore": list(cfg.ignore),
                    **({"points": len(fit.points.components)} if fit.points is not None else {}),
                    **({"rates": list(cfg.rates)} if cfg.rates else {}), **(trained_on or {})},
        window=cfg.window, horizon=0, stride=1, decision=Decision(cfg.k, cfg.n, cfg.m),
        drift_reference=drift_reference_from(fit.training,
                                             unchecked=unchecked_reasons(fit.features, cfg.rates, cfg.ignore),
                                             features=fit.features, modes=drift_modes),
        training_range={fit.features[j]: [float(low[j]), float(high[j])] for j in levels},
    )


def graph_bytes(fit: PcaFit, card: ModelCard) -> bytes:
    """The scoring graph with the card in its metadata (ONNX opset 17, float32, dynamic batch)."""
    w, f = fit.config.window, len(fit.features)
    init = {"offset": float32(fit.scaler.offset), "scale": float32(fit.scaler.scale)}
    if fit.points is None:  # the one model's map (a model per point gathers its point's, _local_nodes)
        init.update({"center": float32(fit.center), "basis": float32(fit.basis),
                     "feature_scale": float32(fit.feature_scale), "sum_axis": int64([1])})
    elif fit.config.rates:
        init["sum_axis"] = int64([1])
    if fit.config.rates:  # levels and slopes: one weighted sum over the window
        init["weights"] = float32(fit.weights)
        summary = [Node("Mul", ["scaled", "weights"], ["weighted"]),
                   Node("ReduceSum", ["weighted", "sum_axis"], ["window_mean"], {"keepdims": 0})]
    else:
        summary = [Node("ReduceMean", ["scaled"], ["window_mean"], {"axes": [1], "keepdims": 0})]
    scored = _local_nodes(fit, init) if fit.points is not None else [
        Node("Sub", ["window_mean", "center"], ["deviation"]),
        Node("MatMul", ["deviation", "basis"], ["projected"]),
        Node("Mul", ["projected", "projected"], ["squares"]),
        Node("ReduceSum", ["squares", "sum_axis"], [SCORE_OUTPUT], {"keepdims": 0}),
    ]
    feature_scale = "feature_scale" if fit.points is None else "point_feature_scale"
    nodes = [
        Node("Sub", [INPUT_NAME, "offset"], ["shifted"]),
        Node("Mul", ["shifted", "scale"], ["scaled"]),
        *summary,
        *scored,
        Node("Mul", ["deviation", feature_scale], ["standardised"]),
        Node("Mul", ["standardised", "standardised"], [FEATURE_ERROR_OUTPUT]),
    ]
    return model_bytes(nodes, {INPUT_NAME: ["batch", w, f]},
                       {SCORE_OUTPUT: ["batch"], FEATURE_ERROR_OUTPUT: ["batch", f]}, init, card.to_props(),
                       graph_name="edgewatch-pca")


def _local_nodes(fit: PcaFit, init: dict[str, np.ndarray]) -> list[Node]:
    """The per-point score (:class:`LocalPoints`) after the window's summary: the window's point by ArgMin over its
    distances to the centres, that point's centre, map and spreads by Gather, then the same sum of squares (one
    batched MatMul); its ``deviation`` and ``point_feature_scale`` give the feature errors as the one model's do."""
    pts = fit.points
    init.update({"assign_scale": float32(pts.assign_scale), "assign_shift": float32(pts.assign_shift),
                 "centres_z": float32(pts.centres_z), "centers": float32(pts.centers), "bases": float32(pts.bases),
                 "feature_scales": float32(pts.feature_scales), "unsqueeze_axes": int64([1]),
                 "score_axes": int64([1, 2]), "distance_axis": int64([2])})
    mean = [] if not fit.config.rates else [
        Node("ReduceMean", ["scaled"], ["level_mean"], {"axes": [1], "keepdims": 0})]
    level = "level_mean" if fit.config.rates else "window_mean"
    return [
        *mean,
        Node("Mul", [level, "assign_scale"], ["assign_scaled"]),
        Node("Add", ["assign_scaled", "assign_shift"], ["assign_z"]),
        Node("Unsqueeze", ["assign_z", "unsqueeze_axes"], ["assign_z3"]),
        Node("Sub", ["assign_z3", "centres_z"], ["to_centres"]),
        Node("Mul", ["to_centres", "to_centres"], ["to_centres_sq"]),
        Node("ReduceSum", ["to_centres_sq", "distance_axis"], ["distances"], {"keepdims": 0}),
        Node("ArgMin", ["distances"], ["point"], {"axis": 1, "keepdims": 0}),
        Node("Gather", ["centers", "point"], ["point_center"], {"axis": 0}),
        Node("Gather", ["bases", "point"], ["point_basis"], {"axis": 0}),
        Node("Gather", ["feature_scales", "point"], ["point_feature_scale"], {"axis": 0}),
        Node("Sub", ["window_mean", "point_center"], ["deviation"]),
        Node("Unsqueeze", ["deviation", "unsqueeze_axes"], ["deviation3"]),
        Node("MatMul", ["deviation3", "point_basis"], ["projected"]),
        Node("Mul", ["projected", "projected"], ["squares"]),
        Node("ReduceSum", ["squares", "score_axes"], [SCORE_OUTPUT], {"keepdims": 0}),
    ]


def write_pca_model(fit: PcaFit, out: str | os.PathLike[str], trained_on: dict[str, Any] | None = None,
                    drift_modes: Sequence[Mapping[str, float]] | None = None,
                    fields: Mapping[str, Any] | None = None) -> Path:
    """Write the model file; before it is kept, ONNX Runtime loads it and its scores match NumPy's.

    ``fields``: more of the card's fields, which the fit does not know (``edgewatch fit``'s state codes and
    logging steps, from the data); the card validates with them before anything is written.

    A score far under the threshold is held to an error relative to ``PARITY_FLOOR`` of the threshold, not to
    itself: a motor's window scoring 0.0024 (threshold 3.0) came out of float32 at 0.0024224, a relative 1.2e-3,
    and the fit of that 6-h file was refused though no decision could change."""
    card = pca_card(fit, trained_on, drift_modes)
    if fields:
        card = replace(card, **fields)
    data = graph_bytes(fit, card)
    out = Path(out)
    with replacing(out, suffix=".onnx") as tmp:
        tmp.write_bytes(data)
        rows = fit.training
        windows = sliding_window_view(rows, fit.config.window, axis=0).transpose(0, 2, 1)[:256]
        probe = np.concatenate([windows, windows + np.std(rows, axis=0)])  # both sides of the threshold
        ref, _ = fit.score_windows(probe)
        got = _onnx_scores(data, probe)
        err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), max(PARITY_FLOOR * fit.threshold, 1e-3))))
        if err > MAX_PARITY_REL_ERR:
            raise BadModelFile(f"pca export: ONNX Runtime scores differ from NumPy by {err:.3g} (relative)")
    return out


def _onnx_scores(data: bytes, windows: np.ndarray) -> np.ndarray:
    """The file's scores by ONNX Runtime (one thread, CPU): what the agent will compute from it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return session.run([SCORE_OUTPUT], {INPUT_NAME: windows.astype(np.float32)})[0]
    except Exception as exc:  # ORT raises its own exception types
        raise BadModelFile(f"pca export: ONNX Runtime cannot run the written graph: {exc}") from exc


def train_pca(values: np.ndarray | Sequence[np.ndarray], features: list[str], out: str | os.PathLike[str],
              config: PcaConfig | None = None, trained_on: dict[str, Any] | None = None) -> PcaFit:
    """Fit on ``values`` and write the model file ``out`` (what ``edgewatch train pca`` and ``--learn`` do)."""
    fit = fit_pca(values, features, config)
    write_pca_model(fit, out, trained_on)
    return fit
