"""The drift reference a model file carries: a compact summary of its training data.

The agent cannot ship the training set, so each feature is kept as 101 evenly
spaced quantiles (0 %, 1 %, ... 100 %) plus its size, mean and std. That is
enough to rebuild the reference CDF to within one percent and to run a KS
test against it (see :mod:`edgewatch.agent.watch.drift_watch`).

A feature whose level the model does not read (one it scores by its rate,
the slope over the window, because its level moves through normal data:
a warming temperature; or one it ignores) is named in ``unchecked`` with
the reason. The agent leaves it out of the level KS test and the first-rows
range check: judged by its level, the very data the model was fitted on
drifts (replaying it raised ``drift`` on the warming temperature), and a
change of its rate is the model's own business (its score reads the rate).
Files written before ``unchecked`` existed read as an empty one: every
feature is checked, as before.

When the training data holds distinct operating points (a pump that runs
and stops, a fan at two speeds: ``edgewatch fit`` finds them), the
reference also carries ``modes`` (:class:`DriftModes`): a centre and scale
per operating point, the rule that assigns any row to its nearest one, and
each point's own quantiles, taken over the training rows that rule assigns
to it. The agent then tests a recent sample against the mixture of those
per-point distributions weighted by the sample's own occupancy: KS assumes
independent draws, and 85 minutes of a stop are a draw from one point, not
from the whole mixture (it raised ``drift`` on every long stop). Because
the quantiles come from the very rule the agent applies, the mixture is the
exact reference under no drift, whatever rows near a boundary do. Files
without ``modes`` are checked against the whole distribution, as before.

NumPy only: the training code calls :func:`drift_reference_from`, and the
agent reads the result; neither side needs torch here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewatch.contract.plain import to_plain
from edgewatch.errors import BadInput, BadModelFile

N_QUANTILES = 101
MODE_ROUNDS = 30  # Lloyd rounds when the operating points' centres are refined on rows (they settle in a few)
MODE_SAMPLE = 100_000  # rows the refinement runs on (evenly spaced); every row is then assigned for the quantiles


@dataclass
class DriftModes:
    """The training data's operating points, so that a recent sample is compared with the points it ran in.

    A row belongs to the mode whose ``centre`` is nearest in units of
    ``scale`` (the pooled within-mode standard deviation of each of
    ``features``, the features whose level the model reads): the diagonal
    linear discriminant rule, where a feature no mode differs in adds the
    same to every distance. ``n[k]`` training rows fell to mode ``k``,
    ``quantiles[k][f]`` are the evenly spaced quantiles of the card's
    feature ``f`` over them.
    """

    features: list[str]
    centre: list[list[float]]  # [modes][features], raw units
    scale: list[float]  # [features]
    n: list[int]
    quantiles: list[list[list[float]]]  # [modes][every card feature][quantiles]

    def assign(self, rows: np.ndarray) -> np.ndarray:
        """The mode of each row of ``rows`` ``[m, len(features)]`` (raw units, the columns of ``features``)."""
        return nearest_mode(rows, np.asarray(self.centre, dtype=np.float64), np.asarray(self.scale, dtype=np.float64))

    def problems(self, n_features: int, features: list[str] | None) -> list[str]:
        """Why these modes cannot be used with ``n_features`` inputs named ``features`` (none: usable)."""
        try:
            return self._problems(n_features, features)
        except (TypeError, ValueError) as exc:  # a value of the wrong kind (a number where a list belongs)
            return [f"modes are malformed: {exc}"]

    def _problems(self, n_features: int, features: list[str] | None) -> list[str]:
        k, a = len(self.centre), len(self.features)
        out = []
        if k < 2 or len(self.n) != k or len(self.quantiles) != k:
            out.append(f"modes need at least two centres with one count and one quantile set each, got {k} "
                       f"centres, {len(self.n)} counts, {len(self.quantiles)} quantile sets")
        if a < 1 or len(self.scale) != a or any(len(c) != a for c in self.centre):
            out.append(f"modes assign by {a} features with {len(self.scale)} scales; every centre needs {a} values")
        elif features is not None and set(self.features) - set(features):
            out.append(f"modes name {sorted(set(self.features) - set(features))}, which are not features")
        values = [v for c in self.centre for v in c] + list(self.scale)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or min(self.scale, default=1) <= 0:
            out.append("mode centres must be finite and scales finite and positive")
        if any(not isinstance(c, int) or c < 1 for c in self.n):
            out.append(f"mode counts must be positive whole numbers, got {self.n}")
        for rows in self.quantiles:
            if len(rows) != n_features or _bad_quantiles(rows):
                out.append(f"each mode needs {n_features} rows of >= 2 finite, non-decreasing quantiles")
                break
        return out


def nearest_mode(rows: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Index of the nearest row of ``centre`` ``[k, a]`` for each row of ``rows`` ``[m, a]``, in units of ``scale``."""
    z = np.asarray(rows, dtype=np.float64) / scale
    c = centre / scale
    return np.argmin((c * c).sum(axis=1)[None] - 2.0 * z @ c.T, axis=1)


@dataclass
class DriftReference:
    """Per-feature reference for the agent's running KS check.

    ``quantiles[f]`` are evenly spaced quantiles (0 to 1) of feature ``f`` in
    the training data, in raw units: a compact stand-in for the sample.
    """

    n: int
    quantiles: list[list[float]]
    mean: list[float]
    std: list[float]
    # feature -> why its level is not tested (the model reads its rate, or not at all); {} in older files
    unchecked: dict[str, str] = field(default_factory=dict)
    modes: DriftModes | None = None  # the operating points (see the module docstring); None in older files

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> DriftReference:
        """The card's JSON back; TypeError for unknown or missing keys (the card reports it as a bad file)."""
        fields = dict(value)
        if fields.get("modes") is not None:
            fields["modes"] = DriftModes(**fields["modes"])
        return cls(**fields)

    def checked(self, features: list[str]) -> list[int]:
        """Indices of ``features`` whose level the running checks compare with this reference."""
        return [j for j, name in enumerate(features) if name not in self.unchecked]

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON; without ``unchecked`` when it is empty, so agents older than it still read the file."""
        out: dict[str, Any] = {"n": self.n, "quantiles": to_plain(self.quantiles), "mean": to_plain(self.mean),
                               "std": to_plain(self.std)}
        if self.unchecked:
            out["unchecked"] = dict(self.unchecked)
        if self.modes is not None:
            out["modes"] = to_plain(self.modes)
        return out


RATE_REASON = "the model reads its rate (slope over the window), not its level, which moves through normal data"
IGNORED_REASON = "the score ignores it"


def drift_reference_from(values: np.ndarray, n_quantiles: int = N_QUANTILES,
                         unchecked: Mapping[str, str] | None = None, features: Sequence[str] | None = None,
                         modes: Sequence[Mapping[str, float]] | None = None) -> DriftReference:
    """Summarise training inputs ``[n, n_features]`` (raw units) for the running KS check.

    Time-series training windows should be passed as their distinct time
    steps (``[steps, n_features]``), not as overlapping windows, so that each
    measurement counts once and ``n`` is honest: the KS test uses it.
    Non-finite rows are dropped; fails with :class:`BadInput` when fewer than
    two finite rows remain. ``unchecked``: feature name -> why the agent
    should not test its level (see the module docstring). ``modes``: the
    operating points found in the data (``edgewatch fit``'s, feature ->
    raw centre), with ``features`` naming the columns of ``values``; see
    :func:`drift_modes_from`.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise BadInput(f"drift reference needs a [n, n_features] array, got shape {x.shape}; "
                       "flatten windows to their time steps first")
    x = x[np.isfinite(x).all(axis=1)]
    if x.shape[0] < 2:
        raise BadInput("drift reference needs at least two finite rows of training data")
    if n_quantiles < 2:
        raise ValueError("n_quantiles must be at least 2")
    probs = np.linspace(0.0, 1.0, n_quantiles)
    q = np.quantile(x, probs, axis=0).T  # [F, Q]
    skip = {str(k): str(v) for k, v in (unchecked or {}).items()}
    found = drift_modes_from(x, list(features), modes, probs, skip) if modes and features is not None else None
    return DriftReference(
        n=int(x.shape[0]),
        quantiles=[[float(v) for v in row] for row in q],
        mean=[float(v) for v in x.mean(axis=0)],
        std=[float(v) for v in x.std(axis=0)],
        unchecked=skip,
        modes=found,
    )


def drift_modes_from(x: np.ndarray, features: list[str], centres: Sequence[Mapping[str, float]],
                     probs: np.ndarray, unchecked: Mapping[str, str]) -> DriftModes | None:
    """The operating points of finite rows ``x`` as the agent will tell them apart, or None when they cannot be.

    ``centres`` (feature -> raw level, one per point) start Lloyd's
    algorithm on the rows, in the features whose level the model reads
    that the centres name, scaled by the pooled within-point standard
    deviation; the per-point quantiles are then taken over the rows that
    the stored (rounded) centres and scales assign to each point, the rule
    the agent applies. None when no such feature exists or a point keeps
    fewer than two rows.
    """
    if len(features) != x.shape[1]:
        raise BadInput(f"{len(features)} feature names for {x.shape[1]} columns")
    cols = [j for j, f in enumerate(features) if f not in unchecked and all(f in c for c in centres)]
    if len(centres) < 2 or not cols:
        return None
    a = x[:, cols]
    part = a[::max(len(a) // MODE_SAMPLE, 1)]
    c = np.array([[float(md[features[j]]) for j in cols] for md in centres])
    spread = part.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    s = spread
    label = nearest_mode(part, c, s)
    for _ in range(MODE_ROUNDS):
        if np.bincount(label, minlength=len(c)).min() < 2:
            return None
        c = np.stack([part[label == k].mean(axis=0) for k in range(len(c))])
        within = np.sqrt(((part - c[label]) ** 2).mean(axis=0))
        s = np.where(within > 0, within, spread)
        new = nearest_mode(part, c, s)
        if (new == label).all():
            break
        label = new
    modes = DriftModes([features[j] for j in cols], [[float(v) for v in row] for row in c], [float(v) for v in s],
                       [], [])
    label = modes.assign(a)
    counts = np.bincount(label, minlength=len(c))
    if counts.min() < 2:
        return None
    modes.n = [int(v) for v in counts]
    modes.quantiles = [[[float(v) for v in row] for row in np.quantile(x[label == k], probs, axis=0).T]
                       for k in range(len(c))]
    return modes


def unchecked_reasons(features: Sequence[str], rates: Sequence[str] = (), ignored: Sequence[str] = ()
                      ) -> dict[str, str]:
    """``unchecked`` for a model that reads ``rates`` by their slope and ``ignored`` not at all."""
    out = {f: RATE_REASON for f in features if f in rates}
    out.update({f: IGNORED_REASON for f in features if f in ignored})
    return out


def _bad_quantiles(rows: Sequence[Sequence[float]]) -> bool:
    for row in rows:
        try:
            arr = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError):
            return True
        if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all() or np.any(np.diff(arr) < 0):
            return True
    return False


def check_reference(reference: DriftReference, n_features: int, features: list[str] | None = None) -> None:
    """Refuse a reference that cannot be compared with ``n_features`` inputs (named ``features``), saying why."""
    problems = []
    unchecked = reference.unchecked
    if not isinstance(unchecked, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in unchecked.items()):
        problems.append(f"unchecked must map feature names to reasons, got {unchecked!r}")
    elif features is not None and set(unchecked) - set(features):
        problems.append(f"unchecked names {sorted(set(unchecked) - set(features))}, which are not features")
    if reference.n < 2:
        problems.append(f"n={reference.n} (needs at least 2)")
    if len(reference.quantiles) != n_features:
        problems.append(f"{len(reference.quantiles)} quantile rows for {n_features} features")
    else:
        for f, row in enumerate(reference.quantiles):
            if _bad_quantiles([row]):
                problems.append(f"feature {f}: quantiles must be >= 2 finite, non-decreasing values")
                break
    if reference.modes is not None:
        if not isinstance(reference.modes, DriftModes):
            problems.append(f"modes must be operating points, got {type(reference.modes).__name__}")
        else:
            problems.extend(reference.modes.problems(n_features, features))
    if problems:
        raise BadModelFile("unusable drift reference: " + "; ".join(problems)
                           + ". Re-export the model so it carries a reference from its training data.")
