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

NumPy only: the training code calls :func:`drift_reference_from`, and the
agent reads the result; neither side needs torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewatch.contract.plain import to_plain
from edgewatch.errors import BadInput, BadModelFile

N_QUANTILES = 101


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

    def checked(self, features: list[str]) -> list[int]:
        """Indices of ``features`` whose level the running checks compare with this reference."""
        return [j for j, name in enumerate(features) if name not in self.unchecked]

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON; without ``unchecked`` when it is empty, so agents older than it still read the file."""
        out: dict[str, Any] = {"n": self.n, "quantiles": to_plain(self.quantiles), "mean": to_plain(self.mean),
                               "std": to_plain(self.std)}
        if self.unchecked:
            out["unchecked"] = dict(self.unchecked)
        return out


RATE_REASON = "the model reads its rate (slope over the window), not its level, which moves through normal data"
IGNORED_REASON = "the score ignores it"


def drift_reference_from(values: np.ndarray, n_quantiles: int = N_QUANTILES,
                         unchecked: Mapping[str, str] | None = None) -> DriftReference:
    """Summarise training inputs ``[n, n_features]`` (raw units) for the running KS check.

    Time-series training windows should be passed as their distinct time
    steps (``[steps, n_features]``), not as overlapping windows, so that each
    measurement counts once and ``n`` is honest: the KS test uses it.
    Non-finite rows are dropped; fails with :class:`BadInput` when fewer than
    two finite rows remain. ``unchecked``: feature name -> why the agent
    should not test its level (see the module docstring).
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
    return DriftReference(
        n=int(x.shape[0]),
        quantiles=[[float(v) for v in row] for row in q],
        mean=[float(v) for v in x.mean(axis=0)],
        std=[float(v) for v in x.std(axis=0)],
        unchecked={str(k): str(v) for k, v in (unchecked or {}).items()},
    )


def unchecked_reasons(features: Sequence[str], rates: Sequence[str] = (), ignored: Sequence[str] = ()
                      ) -> dict[str, str]:
    """``unchecked`` for a model that reads ``rates`` by their slope and ``ignored`` not at all."""
    out = {f: RATE_REASON for f in features if f in rates}
    out.update({f: IGNORED_REASON for f in features if f in ignored})
    return out


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
            arr = np.asarray(row, dtype=np.float64)
            if arr.size < 2 or not np.isfinite(arr).all() or np.any(np.diff(arr) < 0):
                problems.append(f"feature {f}: quantiles must be >= 2 finite, non-decreasing values")
                break
    if problems:
        raise BadModelFile("unusable drift reference: " + "; ".join(problems)
                           + ". Re-export the model so it carries a reference from its training data.")
