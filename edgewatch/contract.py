"""The model-file contract: what an edgewatch ONNX file promises its reader.

One ``.onnx`` file carries everything the agent needs. The graph takes one
float32 input of shape ``[batch, *sample_shape]`` in *raw* units (the input
scaler is part of the graph) and returns two outputs:

* ``score`` ``[batch]``: higher means more anomalous, one number per sample;
* ``feature_error`` ``[batch, n_features]``: each feature's share of the
  error, used to name the features that contribute most to an alert.

For a time series ``sample_shape`` is ``[window, n_features]`` where
``window`` counts every step the graph consumes: a forecaster with context
``c`` and horizon ``h`` has ``window = c + h`` and scores its forecast of the
last ``h`` steps. The score always refers to the last step of the window.
So the agent is one loop for every family: feed the last ``window`` values.

Everything else lives in ``metadata_props`` under keys prefixed
``edgewatch.``, described by :class:`ModelCard`. Values are strings; lists
and mappings are JSON. Unknown ``edgewatch.*`` keys are refused (a misspelt
key would otherwise be silently ignored), keys of other tools are kept.

This module imports neither torch nor onnx: the agent reads cards too.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from edgewatch.errors import BadModelFile

PREFIX = "edgewatch."
FORMAT_VERSION = 1
INPUT_NAME = "x"
SCORE_OUTPUT = "score"
FEATURE_ERROR_OUTPUT = "feature_error"


class Task(str, enum.Enum):
    RECONSTRUCT = "reconstruct"
    FORECAST = "forecast"


class Quantization(str, enum.Enum):
    NONE = "none"
    DYNAMIC_INT8 = "dynamic-int8"
    STATIC_QDQ_INT8 = "static-qdq-int8"


@dataclass
class Scaler:
    """Per-feature affine map applied inside the graph: ``(x - offset) * scale``.

    Kept in the card as well so that a reader can see what the graph does
    and so drift checks can work in the model's own units.
    """

    kind: str  # "minmax", "standard" or "identity"
    offset: list[float]
    scale: list[float]

    @classmethod
    def identity(cls, n: int) -> Scaler:
        return cls("identity", [0.0] * n, [1.0] * n)


@dataclass
class ScoreStats:
    """Summary of the score on one kind of data (normal, noisy, random...)."""

    n: int
    mean: float
    std: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, scores: Any) -> ScoreStats:
        import numpy as np

        s = np.asarray(scores, dtype=np.float64).ravel()
        if s.size == 0:
            raise ValueError("no scores to summarise")
        q50, q90, q99 = np.quantile(s, [0.5, 0.9, 0.99])
        return cls(int(s.size), float(s.mean()), float(s.std()), float(q50), float(q90),
                   float(q99), float(s.max()))


@dataclass
class Decision:
    """Defaults for turning scores into episodes; the agent may override them.

    An episode starts when ``k`` of the last ``n`` scored windows are over the
    threshold and ends when none of the last ``n`` are.
    """

    k: int = 2
    n: int = 3


@dataclass
class PostProcess:
    """An optional stateful step between the graph's score and the threshold.

    ``kind`` is ``"none"`` or ``"likelihood"`` (the score becomes the
    Gaussian tail likelihood of its short-term mean against its long-term
    distribution, as in Numenta's anomaly likelihood). Parameters are free
    per kind and validated by the agent's implementation of that kind.
    """

    kind: str = "none"
    params: dict[str, float] = field(default_factory=dict)


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


@dataclass
class ModelCard:
    """Everything the agent needs besides the graph, stored in metadata_props."""

    family: str
    task: Task
    sample_shape: list[int]
    features: list[str]
    scaler: Scaler
    score: str  # how the score is computed, in words a user can read
    threshold: float
    threshold_method: str
    score_stats: dict[str, ScoreStats]
    quantization: Quantization
    trained_on: dict[str, Any]
    window: int = 0  # time steps in a sample; 0 for images
    horizon: int = 0  # forecast steps at the end of the window
    stride: int = 1  # default: score every stride-th point
    decision: Decision = field(default_factory=Decision)
    postprocess: PostProcess = field(default_factory=PostProcess)
    drift_reference: DriftReference | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.task = Task(self.task)
        self.quantization = Quantization(self.quantization)
        self.validate()

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def is_time_series(self) -> bool:
        return self.window > 0

    def validate(self) -> None:
        """Refuse a card that cannot describe a working model, saying why."""
        problems: list[str] = []
        if self.format_version != FORMAT_VERSION:
            problems.append(f"format version {self.format_version} (this edgewatch reads {FORMAT_VERSION})")
        if not self.features:
            problems.append("no feature names")
        if self.window < 0 or self.horizon < 0 or self.stride < 1:
            problems.append(f"window/horizon/stride out of range ({self.window}/{self.horizon}/{self.stride})")
        if self.window > 0:
            if self.sample_shape != [self.window, self.n_features]:
                problems.append(f"sample_shape {self.sample_shape} is not [window, n_features] = "
                                f"[{self.window}, {self.n_features}]")
            if self.horizon >= self.window:
                problems.append("horizon must be shorter than the window")
        if not math.isfinite(self.threshold):
            problems.append(f"threshold {self.threshold} is not finite")
        for name in ("offset", "scale"):
            if len(getattr(self.scaler, name)) != self.n_features:
                problems.append(f"scaler {name} has {len(getattr(self.scaler, name))} values "
                                f"for {self.n_features} features")
        if not 1 <= self.decision.k <= self.decision.n:
            problems.append(f"decision needs 1 <= k <= n, got k={self.decision.k} n={self.decision.n}")
        if problems:
            raise BadModelFile("invalid edgewatch model card: " + "; ".join(problems))

    # -- metadata_props round trip ------------------------------------------------

    def to_props(self) -> dict[str, str]:
        """The card as ``edgewatch.*`` string properties."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                text = value.value
            elif isinstance(value, str):
                text = value
            else:
                text = json.dumps(_plain(value), separators=(",", ":"))
            out[PREFIX + f.name] = text
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelCard:
        """Read a card back; refuse files that are not ours or carry unknown keys."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            others = sorted(props)[:5]
            hint = f" (its metadata keys: {', '.join(others)})" if others else " (it has no metadata)"
            raise BadModelFile(f"{source} is not an edgewatch model: no '{PREFIX}*' metadata{hint}. "
                               "Export one with 'edgewatch export onnx'.")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(ours) - set(known))
        if unknown:
            raise BadModelFile(f"{source} has unknown edgewatch metadata keys {unknown}; "
                               "it was written by another edgewatch version or edited by hand")
        missing = sorted(n for n, f in known.items()
                         if n not in ours and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)  # type: ignore[misc]
        if missing:
            raise BadModelFile(f"{source} lacks edgewatch metadata {missing}")
        version = ours.get("format_version", str(FORMAT_VERSION))
        if version != str(FORMAT_VERSION):
            raise BadModelFile(f"{source} has model format version {version}; this edgewatch reads "
                               f"version {FORMAT_VERSION}: re-export it or upgrade edgewatch")
        kwargs: dict[str, Any] = {}
        try:
            for name, text in ours.items():
                kwargs[name] = _parse_field(name, text)
            return cls(**kwargs)
        except BadModelFile:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BadModelFile(f"{source} has malformed edgewatch metadata: {exc}") from exc

    def with_overrides(self, **changes: Any) -> ModelCard:
        """A copy with some fields replaced (for command-line overrides)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_STRING_FIELDS = {"family", "score", "threshold_method", "task", "quantization"}


def _parse_field(name: str, text: str) -> Any:
    if name in _STRING_FIELDS:
        return text
    value = json.loads(text)
    if name == "scaler":
        return Scaler(**value)
    if name == "score_stats":
        return {k: ScoreStats(**v) for k, v in value.items()}
    if name == "decision":
        return Decision(**value)
    if name == "postprocess":
        return PostProcess(**value)
    if name == "drift_reference":
        return None if value is None else DriftReference(**value)
    return value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value
