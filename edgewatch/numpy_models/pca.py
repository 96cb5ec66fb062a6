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

Where it does badly: anything that keeps the window's mean (a change of
vibration spectrum at equal RMS, a single-row spike diluted by the
window), and features whose normal range is wider than what the training
rows saw (slow temperatures): name those in ``ignore`` or ``rates``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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

    @property
    def rows(self) -> int:
        return len(self.training)

    def score_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's (score, feature_error) in NumPy, for raw windows ``[B, window, F]`` (the parity reference)."""
        s = (np.asarray(windows, dtype=np.float64) - self.scaler.offset) * np.asarray(self.scaler.scale)
        d = np.einsum("btf,tf->bf", s, self.weights) - self.center
        u = d @ self.basis
        return (u * u).sum(axis=1), (d * self.feature_scale) ** 2


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


def fit_pca(values: np.ndarray | Sequence[np.ndarray], features: list[str], config: PcaConfig | None = None
            ) -> PcaFit:
    """Fit the scaler, the components and the threshold on ``values [T, F]`` (raw units, normal rows).

    ``values`` may also be a list of segments (separate files, or parts
    cut at a gap in time): windows never span two segments. Fails with
    :class:`BadInput` on non-finite values or fewer windows than the
    covariance needs (windows >= used features + 2).
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
    lam, vec = np.linalg.eigh(np.cov(dev, rowvar=False).reshape(n_used, -1))
    order = np.argsort(lam)[::-1]
    lam, vec = np.clip(lam[order], 0.0, None), vec[:, order]
    keep = lam > max(lam[0], 1e-12) * 1e-9
    share = np.cumsum(lam) / max(lam.sum(), 1e-300)
    k = int(min(np.searchsorted(share, cfg.variance - 1e-12) + 1, keep.sum()))
    p = vec[:, :k]
    t2_basis = p / np.sqrt(lam[:k])
    t2 = ((dev @ t2_basis) ** 2).sum(axis=1)
    t_ref = max(float(np.quantile(t2, cfg.quantile)), 1e-12)
    blocks = [t2_basis / np.sqrt(t_ref)]
    if k < len(lam):
        resid = np.eye(len(lam)) - p @ p.T
        q = ((dev @ resid) ** 2).sum(axis=1)
        q_ref = max(float(np.quantile(q, cfg.quantile)), 1e-6 * float(lam.sum()) + 1e-12)
        blocks.append(resid / np.sqrt(q_ref))
    basis_u = np.concatenate(blocks, axis=1)
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
    return PcaFit(list(features), cfg, scaler, center, basis, fscale, k, threshold, train_scores, x, weights)


def pca_card(fit: PcaFit, trained_on: dict[str, Any] | None = None,
             drift_modes: Sequence[Mapping[str, float]] | None = None) -> ModelCard:
    """The card of ``fit``; ``drift_modes``: the operating points the drift reference tells apart (feature -> level)."""
    cfg = fit.config
    ignored = f"; ignores {', '.join(cfg.ignore)}" if cfg.ignore else ""
    rates = (f"; {', '.join(cfg.rates)} by {'its' if len(cfg.rates) == 1 else 'their'} slope over the window"
             if cfg.rates else "")
    levels = [j for j, f in enumerate(fit.features) if f not in cfg.ignore and f not in cfg.rates]
    low, high = fit.training.min(axis=0), fit.training.max(axis=0)
    return ModelCard(
        family=FAMILY, task=Task.RECONSTRUCT, sample_shape=[cfg.window, len(fit.features)],
        features=list(fit.features), scaler=fit.scaler,
        score=(f"Hotelling T2 over {fit.components} principal components plus Q (SPE) of the mean of the "
               f"window's standardised rows, each in units of its {cfg.quantile:g} quantile on the training "
               f"windows{ignored}{rates}"),
        threshold=float(fit.threshold),
        threshold_method=f"{cfg.factor:g} x the {cfg.quantile:g} quantile of the training windows' scores",
        score_stats={"normal": ScoreStats.of(fit.train_scores)}, quantization=Quantization.NONE,
        trained_on={"rows": fit.rows, "family": FAMILY, "window": cfg.window, "variance": cfg.variance,
                    "components": fit.components, "ignore": list(cfg.ignore),
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
    init = {"offset": float32(fit.scaler.offset), "scale": float32(fit.scaler.scale),
            "center": float32(fit.center), "basis": float32(fit.basis),
            "feature_scale": float32(fit.feature_scale), "sum_axis": int64([1])}
    if fit.config.rates:  # levels and slopes: one weighted sum over the window
        init["weights"] = float32(fit.weights)
        summary = [Node("Mul", ["scaled", "weights"], ["weighted"]),
                   Node("ReduceSum", ["weighted", "sum_axis"], ["window_mean"], {"keepdims": 0})]
    else:
        summary = [Node("ReduceMean", ["scaled"], ["window_mean"], {"axes": [1], "keepdims": 0})]
    nodes = [
        Node("Sub", [INPUT_NAME, "offset"], ["shifted"]),
        Node("Mul", ["shifted", "scale"], ["scaled"]),
        *summary,
        Node("Sub", ["window_mean", "center"], ["deviation"]),
        Node("MatMul", ["deviation", "basis"], ["projected"]),
        Node("Mul", ["projected", "projected"], ["squares"]),
        Node("ReduceSum", ["squares", "sum_axis"], [SCORE_OUTPUT], {"keepdims": 0}),
        Node("Mul", ["deviation", "feature_scale"], ["standardised"]),
        Node("Mul", ["standardised", "standardised"], [FEATURE_ERROR_OUTPUT]),
    ]
    return model_bytes(nodes, {INPUT_NAME: ["batch", w, f]},
                       {SCORE_OUTPUT: ["batch"], FEATURE_ERROR_OUTPUT: ["batch", f]}, init, card.to_props(),
                       graph_name="edgewatch-pca")


def write_pca_model(fit: PcaFit, out: str | os.PathLike[str], trained_on: dict[str, Any] | None = None,
                    drift_modes: Sequence[Mapping[str, float]] | None = None) -> Path:
    """Write the model file; before it is kept, ONNX Runtime loads it and its scores match NumPy's."""
    card = pca_card(fit, trained_on, drift_modes)
    data = graph_bytes(fit, card)
    out = Path(out)
    with replacing(out, suffix=".onnx") as tmp:
        tmp.write_bytes(data)
        rows = fit.training
        windows = sliding_window_view(rows, fit.config.window, axis=0).transpose(0, 2, 1)[:256]
        probe = np.concatenate([windows, windows + np.std(rows, axis=0)])  # both sides of the threshold
        ref, _ = fit.score_windows(probe)
        got = _onnx_scores(data, probe)
        err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-3)))
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
