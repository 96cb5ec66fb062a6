"""The model-file contract: what an edgewatch ONNX file promises its reader.

One ``.onnx`` file carries everything the agent needs. The graph takes one
float32 input of shape ``[batch, *sample_shape]`` in *raw* units (the input
scaler is part of the graph) and returns two outputs:

* ``score`` ``[batch]``: higher means more anomalous, one number per sample;
* ``feature_error`` ``[batch, n_features]``: each feature's share of the
  error, used to name the features that contribute most to an alert;
* optionally ``aux`` ``[batch, k]`` float32: auxiliary per-sample numbers a
  post-process may read, present if and only if the card's ``aux`` names
  its columns (see :class:`ModelCard` and :class:`PostProcess`).

For a time series ``sample_shape`` is ``[window, n_features]`` where
``window`` counts every step the graph consumes: a forecaster with context
``c`` and horizon ``h`` has ``window = c + h`` and scores its forecast of the
last ``h`` steps. The score always refers to the last step of the window.
So the agent is one loop for every family: feed the last ``window`` values.

Everything else lives in ``metadata_props`` under keys prefixed
``edgewatch.``, described by :class:`ModelCard`. Values are strings; lists
and mappings are JSON. Unknown ``edgewatch.*`` keys are refused (a misspelt
key would otherwise be silently ignored), keys of other tools are kept.

Files outlive the code that wrote them: :mod:`edgewatch.contract.migration`
brings a card of another format version to this one before it is read.

This module imports neither torch nor onnx: the agent reads cards too.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from edgewatch.contract import migration
from edgewatch.contract.drift_reference import DriftReference
from edgewatch.contract.migration import FORMAT_VERSION
from edgewatch.contract.plain import to_plain
from edgewatch.contract.postprocess import PostProcess, spec_problems
from edgewatch.errors import BadModelFile

PREFIX = "edgewatch."
# the signature entry (see edgewatch.agent.lifecycle.signing) is about the card, not part of it
SIGNATURE_KEY = PREFIX + "signature"
INPUT_NAME = "x"
SCORE_OUTPUT = "score"
FEATURE_ERROR_OUTPUT = "feature_error"
AUX_OUTPUT = "aux"

_AUX_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)(?:\[([1-9][0-9]*)\])?$")
# a value stands for the present for this many of its feature's logging steps: the live agent's hold limit
# (edgewatch/agent/sources/rows.py), fit's rule of a column that holds a value in a row (edgewatch/fit/normal_data.py),
# and what the card's ``logged_every`` is multiplied by before a live sensor has an interval of its own
HOLD_STEPS = 3.0

class Task(str, enum.Enum):
    RECONSTRUCT = "reconstruct"
    FORECAST = "forecast"


class Quantization(str, enum.Enum):
    NONE = "none"
    DYNAMIC_INT8 = "dynamic-int8"
    STATIC_QDQ_INT8 = "static-qdq-int8"
    UNROLLED_INT8 = "unrolled-int8"  # LSTMs unrolled into int8 MatMuls with fixed scales (export/unroll.py)
    # ORT's fused int8 LSTM with two sentinel units per layer fixing its per-call ranges (export/sentinel.py)
    SENTINEL_INT8 = "sentinel-int8"


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
    threshold and ends after ``m`` scored windows in a row under it. ``m``
    None (every card written before it existed) means ``n``: the episode
    ends when none of the last ``n`` are over. It is written to the card
    only when set, so a file without hysteresis still reads in older agents.
    """

    k: int = 2
    n: int = 3
    m: int | None = None

    @property
    def close_after(self) -> int:
        return self.n if self.m is None else self.m

    def to_dict(self) -> dict[str, int]:
        out = {"k": self.k, "n": self.n}
        if self.m is not None:
            out["m"] = self.m
        return out


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
    aux: list[str] = field(default_factory=list)  # columns of the graph's aux output: "name" or "name[n]"
    # [low, high] of each feature whose *level* the score relies on, in raw units (the agent's first-minute
    # check that the data is what the model was made for); None: every feature, from the drift reference
    training_range: dict[str, list[float]] | None = None
    # [lo, hi]: the graph clips its network's input to this range, in scaled units (after the scaler); the
    # score still reads the unclipped input. None: nothing is clipped
    input_clip: list[float] | None = None
    # feature -> {text: code} of each state feature read from text (``Run``/``Stop``, edgewatch/wire/csv_states.py):
    # every live source maps the same text to the same number. None: every feature is a number on the wire
    states: dict[str, dict[str, float]] | None = None
    # feature -> seconds between its own values in the normal data (the median step): a 60-s bearing temperature
    # beside a 1-s vibration was fitted held between its values, and the agent holds it live for HOLD_STEPS of its
    # step from its first value on. Written only when some feature was logged more slowly than the rows
    # (edgewatch/fit/normal_data.py's logged_every). None: unknown (every file written before); the agent then
    # holds a value for HOLD_STEPS of the rows' interval until the sensor has an interval of its own
    logged_every: dict[str, float] | None = None
    # feature -> how the agent turns its raw values into the rate the model was fitted on: a totaliser or a
    # wrapping counter (edgewatch/fit/totalisers.py), ``{"per": "s" | "row", "wrap": modulus}`` (``wrap`` absent:
    # a fall is a reset, over which the rate before is held). Written only when fit kept one as its rate
    totalisers: dict[str, dict[str, Any]] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.task = Task(self.task)
        self.quantization = Quantization(self.quantization)
        self.format_warnings: list[str] = []  # set by from_props for a newer format; not serialised
        self.validate()

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def is_time_series(self) -> bool:
        return self.window > 0

    def aux_columns(self) -> dict[str, slice]:
        """Where each aux name lies in the ``aux`` output: ``name`` is one column, ``name[n]`` n in a row."""
        out: dict[str, slice] = {}
        at = 0
        for entry in self.aux:
            m = _AUX_NAME.match(entry)
            if m is None:
                raise BadModelFile(f"invalid edgewatch model card: aux entry {entry!r} is not 'name' or 'name[n]'")
            if m.group(1) in out:
                raise BadModelFile(f"invalid edgewatch model card: aux name {m.group(1)!r} given twice")
            n = int(m.group(2) or 1)
            out[m.group(1)] = slice(at, at + n)
            at += n
        return out

    @property
    def aux_width(self) -> int:
        """k, the number of columns of the graph's ``aux`` output (0 = the graph has none)."""
        return sum(s.stop - s.start for s in self.aux_columns().values())

    def validate(self) -> None:
        """Refuse a card that cannot describe a working model, saying why."""
        problems: list[str] = []
        if self.format_version < migration.FORMAT_VERSION:
            problems.append(f"format version {self.format_version} is older than this edgewatch's "
                            f"({migration.FORMAT_VERSION}); ModelCard.from_props upgrades older cards")
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
        if self.decision.m is not None and (isinstance(self.decision.m, bool) or not isinstance(self.decision.m, int)
                                            or self.decision.m < 1):
            problems.append(f"decision m (quiet windows before an episode ends) must be an integer >= 1, "
                            f"got {self.decision.m!r}")
        if self.training_range is not None:
            problems += _range_problems(self.training_range, self.features)
        if self.states is not None:
            problems += _state_problems(self.states, self.features)
        if self.logged_every is not None:
            problems += _step_problems(self.logged_every, self.features)
        if self.totalisers is not None:
            problems += _totaliser_problems(self.totalisers, self.features)
        if self.input_clip is not None and not (
                len(self.input_clip) == 2 and all(math.isfinite(v) for v in self.input_clip)
                and self.input_clip[0] < self.input_clip[1]):
            problems.append(f"input_clip {self.input_clip} is not [lo, hi] with finite lo < hi")
        columns = self.aux_columns()
        problems += self.postprocess.problems(columns)
        problems += spec_problems(self.postprocess)
        self.postprocess.bind_aux(columns)
        if problems:
            raise BadModelFile("invalid edgewatch model card: " + "; ".join(problems))

    # -- metadata_props round trip ------------------------------------------------

    def to_props(self) -> dict[str, str]:
        """The card as ``edgewatch.*`` string properties."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (f.name == "aux" and not value) or (f.name in _WRITTEN_WHEN_SET and value is None):
                continue  # not used: written as before, so older readers keep reading the file
            if isinstance(value, enum.Enum):
                text = value.value
            elif isinstance(value, (PostProcess, Decision, DriftReference)):
                text = json.dumps(value.to_dict(), separators=(",", ":"))
            elif isinstance(value, str):
                text = value
            else:
                text = json.dumps(to_plain(value), separators=(",", ":"))
            out[PREFIX + f.name] = text
        return out

    def write_into(self, model: Any) -> None:
        """Put the card into an ``onnx.ModelProto``'s ``metadata_props``, in place.

        Merged: keys that are not the card's (an onnxruntime tag, say) stay;
        the card's own keys are replaced.
        """
        props = {p.key: p.value for p in model.metadata_props}
        props.update(self.to_props())
        del model.metadata_props[:]
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelCard:
        """Read a card back; refuse files that are not ours or carry unknown keys."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX) and k != SIGNATURE_KEY}
        if not ours:
            others = sorted(props)[:5]
            hint = f" (its metadata keys: {', '.join(others)})" if others else " (it has no metadata)"
            raise BadModelFile(f"{source} is not an edgewatch model: no '{PREFIX}*' metadata{hint}. "
                               "Export one with 'edgewatch export onnx'.")
        ours, notes = migration.upgrade(ours, source)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(ours) - set(known))
        if unknown:
            raise BadModelFile(f"{source} has unknown edgewatch metadata keys {unknown}; "
                               "it was written by another edgewatch version or edited by hand")
        missing = sorted(n for n, f in known.items()
                         if n not in ours and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)  # type: ignore[misc]
        if missing:
            raise BadModelFile(f"{source} lacks edgewatch metadata {missing}" + (f" ({notes[0]})" if notes else ""))
        kwargs: dict[str, Any] = {}
        try:
            for name, text in ours.items():
                kwargs[name] = _parse_field(name, text)
            card = cls(**kwargs)
        except BadModelFile as exc:
            if notes:
                raise BadModelFile(f"{exc} ({notes[0]})") from None
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BadModelFile(f"{source} has malformed edgewatch metadata: {exc}"
                               + (f" ({notes[0]})" if notes else "")) from exc
        card.format_warnings = notes
        return card

    def with_overrides(self, **changes: Any) -> ModelCard:
        """A copy with some fields replaced (for command-line overrides)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_WRITTEN_WHEN_SET = ("training_range", "input_clip", "states", "logged_every", "totalisers")
_STRING_FIELDS = {"family", "score", "threshold_method", "task", "quantization"}


def _feature_map_problems(field: str, value: Any, features: list[str], shape: str) -> list[str]:
    """What is wrong with ``field`` as a map of feature names to ``shape``, as far as the map itself goes."""
    if not isinstance(value, Mapping):
        return [f"{field} must map features to {shape}, got {type(value).__name__}"]
    unknown = sorted(set(value) - set(features))
    return [f"{field} names {unknown}, which are not features"] if unknown else []


def _range_problems(ranges: Any, features: list[str]) -> list[str]:
    out = _feature_map_problems("training_range", ranges, features, "[low, high]")
    if not isinstance(ranges, Mapping):
        return out
    for name, pair in ranges.items():
        ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
              and all(_finite(v) for v in pair))
        if not ok or pair[0] > pair[1]:
            out.append(f"training_range of {name!r} must be [low, high] with finite low <= high, got {pair!r}")
    return out


def _finite(value: Any) -> bool:
    """A finite JSON number: ``True`` is not one (``bool`` is an ``int`` to Python, not to a card's reader)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _state_problems(states: Any, features: list[str]) -> list[str]:
    out = _feature_map_problems("states", states, features, "{text: code}")
    if not isinstance(states, Mapping):
        return out
    for name, codes in states.items():
        ok = (isinstance(codes, Mapping) and len(codes) >= 2
              and all(isinstance(t, str) and t.strip() for t in codes)
              and all(_finite(c) for c in codes.values()))
        if not ok:
            out.append(f"states of {name!r} must map two or more texts to finite numbers, got {codes!r}")
        elif len({t.strip().casefold() for t in codes}) != len(codes):
            out.append(f"states of {name!r} give one text two codes (texts are read in any case): {codes!r}")
    return out


def _step_problems(steps: Any, features: list[str]) -> list[str]:
    out = _feature_map_problems("logged_every", steps, features, "seconds")
    if not isinstance(steps, Mapping):
        return out
    for name, seconds in steps.items():
        if not (_finite(seconds) and seconds > 0):
            out.append(f"logged_every of {name!r} must be a positive number of seconds, got {seconds!r}")
    return out


def _totaliser_problems(counted: Any, features: list[str]) -> list[str]:
    out = _feature_map_problems("totalisers", counted, features, '{"per": "s" | "row", "wrap": modulus}')
    if not isinstance(counted, Mapping):
        return out
    for name, how in counted.items():
        wrap = how.get("wrap") if isinstance(how, Mapping) else None
        ok = (isinstance(how, Mapping) and how.get("per") in ("s", "row") and set(how) <= {"per", "wrap"}
              and (wrap is None or (_finite(wrap) and wrap > 0)))
        if not ok:
            out.append(f"totalisers of {name!r} must be {{\"per\": \"s\" or \"row\"}} and an optional positive "
                       f"\"wrap\", got {how!r}")
    return out


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
        return PostProcess.from_dict(value)
    if name == "drift_reference":
        return None if value is None else DriftReference.from_dict(value)
    return value
