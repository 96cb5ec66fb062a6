"""What a card says about post-processing: the step spec and each kind's parameter schema.

A :class:`PostProcess` is an optional stateful step between the graph's
score and the threshold; its parameters are checked against the schema of
its kind (a dataclass of :data:`SCHEMAS`) when the card is read, so a
misspelt parameter fails there, never inside the scoring loop. What each
kind computes is :mod:`edgewatch.agent.postprocess`; what the parameters
mean is said there, kind by kind. A new kind adds its schema to :data:`SCHEMAS`
and its implementation to the agent's post-process package.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from edgewatch.contract.plain import to_plain
from edgewatch.errors import BadModelFile

SCORE_INPUT = "score"  # a post-process input: the graph's score
AUX_INPUT_PREFIX = "aux:"  # a post-process input: ``aux:<name>``, a column (or group) of the aux output
MAX_KIND = "max"  # the composite post-process kind
# the composite's one optional parameter: ``alert`` > 0 is the level at or over which its output is an alert, after
# which every part is told that the row's value belonged to an alerted event (0, absent: the parts never hear of it)
MAX_PARAMS = {"alert": 0.0}


@dataclass
class PostProcess:
    """An optional stateful step between the graph's score and the threshold.

    ``kind`` is ``"none"``, ``"likelihood"`` (the score becomes the Gaussian
    tail likelihood of its short-term mean against its long-term
    distribution, as in Numenta's anomaly likelihood), ``"levels"``
    (value-level novelty) or ``"max"``. Parameters are free per kind and
    validated when the card is read (see below).

    ``input`` says what a step reads: the graph's ``score`` or a column of
    the ``aux`` output, ``aux:<name>``. A ``max`` step runs each of its
    ``parts`` on its input and outputs their maximum, so one file can carry
    detectors whose alerts are OR-ed (with one alert level, the maximum is
    over the level iff any part is); its one optional parameter, ``alert``
    (:data:`MAX_PARAMS`), makes an alert one event for every part (the
    agent's :class:`~edgewatch.agent.postprocess.max.MaxOf` says how).
    Each kind's parameters are checked against that kind's own schema (a
    dataclass of :data:`SCHEMAS`) when the card is read.
    """

    kind: str = "none"
    params: dict[str, float] = field(default_factory=dict)
    input: str = SCORE_INPUT
    parts: list[PostProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parts = [p if isinstance(p, PostProcess) else PostProcess.from_dict(p) for p in self.parts]
        self.aux_columns: dict[str, slice] = {}  # bound by the card that holds this step; not serialised

    def bind_aux(self, columns: Mapping[str, slice]) -> None:
        """Tell this step (and its parts) where the card's aux names lie, so the agent can read them."""
        self.aux_columns = dict(columns)
        for part in self.parts:
            part.bind_aux(columns)

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the card; fields at their defaults are left out so older readers still read it."""
        out: dict[str, Any] = {"kind": self.kind, "params": to_plain(self.params)}
        if self.input != SCORE_INPUT:
            out["input"] = self.input
        if self.parts:
            out["parts"] = [p.to_dict() for p in self.parts]
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> PostProcess:
        if not isinstance(value, Mapping):
            raise TypeError(f"a post-process must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - {"kind", "params", "input", "parts"})
        if unknown:
            raise ValueError(f"post-process has unknown keys {unknown}")
        return cls(value.get("kind", "none"), dict(value.get("params", {})), value.get("input", SCORE_INPUT),
                   [cls.from_dict(p) for p in value.get("parts", [])])

    def problems(self, aux: Mapping[str, slice]) -> list[str]:
        """What is wrong with this step given the card's aux columns (empty when fine)."""
        out: list[str] = []
        if self.input != SCORE_INPUT:
            name = self.input[len(AUX_INPUT_PREFIX):] if self.input.startswith(AUX_INPUT_PREFIX) else None
            if name is None:
                out.append(f"post-process input {self.input!r} is neither '{SCORE_INPUT}' nor "
                           f"'{AUX_INPUT_PREFIX}<name>'")
            elif name not in aux:
                out.append(f"post-process input {self.input!r} names no aux column (the card's aux: "
                           f"{sorted(aux) or 'none'})")
        if self.kind == MAX_KIND:
            if not self.parts:
                out.append("a 'max' post-process needs at least one part")
            unknown = sorted(set(self.params) - set(MAX_PARAMS))
            if unknown:
                out.append(f"a 'max' post-process takes only {sorted(MAX_PARAMS)}, got {unknown}")
            alert = self.params.get("alert", 0.0)
            if isinstance(alert, bool) or not isinstance(alert, (int, float)) or not 0 <= alert <= 1:
                out.append(f"a 'max' post-process's alert must be a number in [0, 1], got {alert!r}")
            if self.input != SCORE_INPUT:
                out.append("a 'max' post-process reads no input itself: give each part its input")
            for part in self.parts:
                out += part.problems(aux)
        elif self.parts:
            out.append(f"only a 'max' post-process has parts, not {self.kind!r}")
        return out


class KindParams:
    """Base of a post-process kind's parameter schema: a dataclass owned by that kind.

    :meth:`from_dict` is strict, like alibi-detect's saving schemas: an
    unknown name (a typo such as ``shrot``), a value that is not a finite
    number, or one out of range is refused with :class:`BadModelFile`, so a
    misspelt card fails when it is read, never inside the scoring loop.
    """

    def problems(self) -> list[str]:
        """What is out of range (empty when fine); each kind says its own limits."""
        return []

    def state_bytes(self) -> int:
        """Memory one stream's state can reach, in bytes (an upper estimate; sizes --max-streams)."""
        return 0

    @classmethod
    def from_dict(cls, params: Mapping[str, Any], kind: str = "") -> Any:
        kind = kind or getattr(cls, "KIND", cls.__name__)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(params) - known)
        if unknown:
            raise BadModelFile(f"{kind} post-process has unknown parameters {unknown}; known: {sorted(known)}")
        bad = sorted(k for k, v in params.items()
                     if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))
        if bad:
            raise BadModelFile(f"{kind} post-process parameters {bad} are not finite numbers: "
                               f"{ {k: params[k] for k in bad} }")
        p = cls(**{k: float(v) for k, v in params.items()})
        problems = p.problems()
        if problems:
            raise BadModelFile(f"{kind} post-process parameters out of range: {'; '.join(problems)} ({p})")
        return p


def choice_problems(name: str, value: float, choices: type[enum.IntEnum]) -> list[str]:
    """A parameter that names one of ``choices`` by its number: empty when it does, else why not (with the list)."""
    if value in {c.value for c in choices}:
        return []
    return [f"{name} must be one of {', '.join(f'{c.value} ({c.name.lower()})' for c in choices)}"]


@dataclass
class NoParams(KindParams):
    """The ``none`` kind takes no parameters."""

    KIND = "none"


class Tail(enum.IntEnum):
    """How the ``likelihood`` kind reads a short-term mean against its history (the ``tail`` parameter).

    ``GAUSSIAN``: the Gaussian tail of the history's mean and deviation
    (Numenta's). ``STUDENT``: the predictive tail of one more value given
    the n values of the history, Student's t with n - 1 degrees of freedom
    and scale ``s * sqrt(1 + 1/n)``: as strict as the history is short
    (docs/eval.md, eighth round), the Gaussian's once the history is long.
    """

    GAUSSIAN = 0
    STUDENT = 1


@dataclass
class LikelihoodParams(KindParams):
    KIND = "likelihood"
    short: float = 10
    long: float = 8640
    learning: float = 150
    reestimate: float = 100
    min_std: float = 0.05
    refractory: float = 0
    damp: float = 0.5
    certain: float = 0
    alert: float = 0
    hold: float = 0
    tail: float = float(Tail.GAUSSIAN)

    def problems(self) -> list[str]:
        out = choice_problems("tail", self.tail, Tail)
        if self.short < 1 or self.long < self.short or self.long > 10**7:
            out.append("need 1 <= short <= long <= 1e7")
        if self.learning < 0 or self.reestimate < 1 or self.min_std <= 0:
            out.append("need learning >= 0, reestimate >= 1, min_std > 0")
        if self.refractory < 0 or self.refractory > 10**7 or not 0 <= self.damp <= 1:
            out.append("need 0 <= refractory <= 1e7 and 0 <= damp <= 1")
        if self.certain < 0 or self.alert < 0 or self.hold < 0:
            out.append("need certain, alert, hold >= 0")
        return out

    def state_bytes(self) -> int:
        # the history as a growing array of doubles: measured 124 KiB per stream at long=8640 (~15 bytes a
        # value with the allocator's slack; a deque of floats took 385 KiB); short and refractory deques ~45
        return int(15 * self.long + 45 * (self.short + max(self.refractory, 1))) + 512


@dataclass
class SamplingParams:
    """What a kind decides per stream from the stream's first rows (all off by default: an older file's meaning).

    ``count_rows`` > 0: a stream whose first ``count_rows`` values are all
    non-negative integers is taken for counts, and the kind reads
    Anscombe's ``2 sqrt(x + 3/8)`` of each value instead. ``interval_rows``:
    the stream's sampling interval is the median of its first
    ``interval_rows`` positive intervals between rows' times, used by the
    kind's ``*_seconds`` parameters. A stream's outputs are 0 while its
    first rows are buffered, so a kind checks that its first output comes
    no earlier.
    """

    count_rows: float = 0
    interval_rows: float = 16

    def uses_time(self) -> bool:
        """True when a length of this kind is given in seconds (a subclass says which)."""
        return False

    def sampling_rows(self) -> int:
        """Rows buffered per stream before the decision (0: the kind does not adapt)."""
        timed = int(self.interval_rows) + 1 if self.uses_time() else 0
        return max(int(self.count_rows), timed)

    def sampling_problems(self) -> list[str]:
        if not 0 <= self.count_rows <= 10_000 or not 1 <= self.interval_rows <= 10_000:
            return ["need 0 <= count_rows <= 10000 and 1 <= interval_rows <= 10000"]
        return []


class Edges(enum.IntEnum):
    """Where the ``levels`` kind puts the levels beyond its range (the ``edges`` parameter).

    ``FROM_MINIMUM``: levels counted up from the range's minimum, so any
    value below it is a new level while one above the maximum needs a
    level's margin (the files before the ninth round). ``SYMMETRIC``: the
    levels below the range counted down from its minimum as those above
    are counted up from its maximum, so a new extreme needs a level's
    margin on either side and the stream and its negative get the same
    levels. Why: under the first rule a stream's first new minima (about
    one in every ``t`` rows at row ``t`` for exchangeable data) were each
    an alarm (docs/eval.md, ninth round).
    """

    FROM_MINIMUM = 0
    SYMMETRIC = 1


class Width(enum.IntEnum):
    """How wide the ``levels`` kind's levels are (the ``width`` parameter).

    ``RANGE``: ``bins`` levels across the range the stream's first rows
    covered, however many rows that was (the files before the sixteenth
    round). ``SPREAD``: the same width in the stream's own spread whatever
    its range rows: a stream whose range is learnt over ``n`` rows gets
    ``bins * d(n) / d(range_rows)`` levels across it, ``d(n)`` the expected
    range of ``n`` Gaussian values in deviations (:func:`expected_range`,
    the textbook range estimator of a deviation, range / d(n)). So the card's
    ``range_rows`` (256, NAB's 5 minutes) is the reference and nothing
    changes there. Why: the range of 48 rows (an hourly stream's two days)
    covers about 4.5 deviations and that of 1,024 rows (75-second rows)
    6.5, against 5.6 for 256 rows, so with ``bins`` levels across each a
    level was a narrower departure on a coarse stream and a wider one on a
    fine stream (docs/eval.md, sixteenth round).
    """

    RANGE = 0
    SPREAD = 1


class Margin(enum.IntEnum):
    """Where a value of the ``levels`` kind must be a whole level from what the stream has shown (``margin``).

    ``EDGES``: a value is new when its level (a cell of the grid anchored
    at the range's minimum) is, so beyond the range it needs a level's
    margin (with ``edges`` 1) while inside it a hair across an edge into
    an empty level is enough (the files before the sixteenth round).
    ``EVERYWHERE``: a value is new when it lies at least a level's width
    from every value the stream has shown, inside the range as beyond it
    (``edges`` then changes nothing: the rule has no grid and no sign).
    Why: whether a value inside the range alarmed depended on where the
    grid's edges fell, which the range's minimum and the level count
    decide, not the stream (docs/eval.md, sixteenth round).
    """

    EDGES = 0
    EVERYWHERE = 1


_RANGE_CACHE: dict[int, float] = {}


def expected_range(n: int) -> float:
    """The expected range (maximum minus minimum) of ``n`` independent standard normal values (0 for n < 2).

    ``integral of 1 - Phi(x)^n - (1 - Phi(x))^n dx`` by Simpson's rule on
    [-10, 10] in steps of 1/200 (within 1e-6 of the tabulated constants
    d2(n): 1.128 for n = 2, 3.078 for 10, 4.498 for 50, 6.483 for 1,000).
    """
    n = int(n)
    if n < 2:
        return 0.0
    got = _RANGE_CACHE.get(n)
    if got is None:
        k, a, b = 4000, -10.0, 10.0
        h = (b - a) / k
        total = 0.0
        for i in range(k + 1):
            x = a + i * h
            phi = 0.5 * math.erfc(-x / math.sqrt(2.0))
            f = 1.0 - phi ** n - (1.0 - phi) ** n
            total += f * (1 if i in (0, k) else 4 if i % 2 else 2)
        got = _RANGE_CACHE[n] = total * h / 3.0
    return got


@dataclass
class LevelsParams(SamplingParams, KindParams):
    """``range_seconds`` > 0: the range is learnt over that much of the stream's own time, in rows
    ``round(range_seconds / interval)`` within ``[range_min, range_max]`` (``range_rows`` when the
    stream's interval cannot be told). ``edges``: :class:`Edges` (absent: from the minimum).
    ``width``: :class:`Width` (absent: ``bins`` levels across the range, whatever its rows).
    ``margin``: :class:`Margin` (absent: a value is new when its level is)."""

    KIND = "levels"
    bins: float = 8
    range_rows: float = 384
    rest: float = 100
    cap: float = 4096
    range_seconds: float = 0
    range_min: float = 48
    range_max: float = 1536
    edges: float = float(Edges.FROM_MINIMUM)
    width: float = float(Width.RANGE)
    margin: float = float(Margin.EDGES)

    def uses_time(self) -> bool:
        return self.range_seconds > 0

    def problems(self) -> list[str]:
        out = self.sampling_problems() + choice_problems("edges", self.edges, Edges)
        out += choice_problems("width", self.width, Width) + choice_problems("margin", self.margin, Margin)
        if self.bins < 1 or self.range_rows < 1 or self.range_rows > 10**7 or self.rest < 0 or self.cap < 1:
            out.append("need bins >= 1, 1 <= range_rows <= 1e7, rest >= 0, cap >= 1")
        if self.range_seconds < 0 or not 1 <= self.range_min <= self.range_max <= 10**7:
            out.append("need range_seconds >= 0 and 1 <= range_min <= range_max <= 1e7")
        first = min(self.range_rows, self.range_min) if self.uses_time() else self.range_rows
        if self.sampling_rows() > first:
            out.append(f"the first {self.sampling_rows()} rows are buffered to decide the stream's sampling, but the "
                       f"range can be frozen after {int(first)}: need range_rows and range_min >= those rows")
        return out

    def rows_for(self, interval: float | None) -> int:
        """The range rows of a stream sampled every ``interval`` seconds (None: not known)."""
        if not self.uses_time() or interval is None:
            return int(self.range_rows)
        return int(min(max(round(self.range_seconds / interval), self.range_min), self.range_max))

    def bins_for(self, rows: int) -> float:
        """The levels across the range of a stream whose range is learnt over ``rows`` rows (see :class:`Width`)."""
        if Width(int(self.width)) is Width.RANGE or int(rows) == int(self.range_rows) or rows < 2 \
                or self.range_rows < 2:
            return float(self.bins)
        return float(self.bins) * expected_range(int(rows)) / expected_range(int(self.range_rows))

    def state_bytes(self) -> int:
        # the first range_rows values as Python floats, then up to cap remembered levels in a set
        rows = max(self.range_rows, self.range_max) if self.uses_time() else self.range_rows
        return int(45 * rows + 70 * min(self.cap, 4 * self.bins + 64) + 90 * self.sampling_rows()) + 512


class Handover(enum.IntEnum):
    """What a longer rung of the ``novelty`` kind's ladder takes from the one it replaces (``handover``).

    ``FRESH``: nothing, its likelihood starts without a hold (the files
    before the tenth round). ``HOLD``: the rows of hold left on the rung
    it replaces, so an event that alarmed on the shorter rung is not
    alarmed again because the rung changed (one alert per event). Why: on a
    coarse stream the rungs take over while a stream's first days are
    scored, and each takeover could re-alarm (docs/eval.md, tenth round).
    """

    FRESH = 0
    HOLD = 1


class Overlap(enum.IntEnum):
    """How the ``novelty`` kind's likelihood reads the spread of a rung's remembered distances (``overlap``).

    ``INDEPENDENT``: as if the distances were independent values (the
    files before the fourteenth round). ``CORRECTED``: consecutive
    distances of a rung share ``m - 1`` of their ``m`` values, so they are
    correlated over ``m`` rows, and the sample variance of n of them is
    low by the factor ``1 - 2/(n - 1) * sum_k (1 - k/n)(1 - k/m)``
    (triangular autocorrelation, k = 1 .. m - 1); the variance is divided
    by it. Why: a rung's first estimate holds about two shape lengths of
    distances, where the factor is about 0.6, and the too-narrow spread
    raised a short stream's early alarms (docs/eval.md, fourteenth round);
    it tends to 1 as the history grows, and is 1 for m = 1.
    """

    INDEPENDENT = 0
    CORRECTED = 1


@dataclass
class NoveltyParams(SamplingParams, LikelihoodParams):
    """The likelihood's parameters (same names and defaults) plus the subsequence ``m`` and ``span``.

    ``m_seconds`` > 0: the top shape length is that much of the stream's
    own time, ``round(m_seconds / interval)`` rows, at most ``m`` (``m``
    when the interval cannot be told); the spans stay in rows.
    """

    KIND = "novelty"
    m: float = 48
    span: float = 384
    min_span: float = 0  # 0: one span; else the shortest span of the ladder (see the module docstring)
    ratio: float = 2  # each span of the ladder is this many times the one below
    m_seconds: float = 0
    handover: float = float(Handover.FRESH)  # :class:`Handover` (absent: fresh)
    overlap: float = float(Overlap.INDEPENDENT)  # :class:`Overlap` (absent: distances read as independent)

    def uses_time(self) -> bool:
        return self.m_seconds > 0

    def problems(self) -> list[str]:
        out = super().problems() + self.sampling_problems() + choice_problems("handover", self.handover, Handover)
        out += choice_problems("overlap", self.overlap, Overlap)
        if self.m < 1 or self.span < 2 * self.m or self.span > 100_000:
            out.append("need m >= 1 and 2*m <= span <= 100000")
        if self.min_span and not 4 <= self.min_span <= self.span:
            out.append("need min_span 0 (one span) or 4 <= min_span <= span")
        if not 1.5 <= self.ratio <= 64:
            out.append("need 1.5 <= ratio <= 64")
        if self.m_seconds < 0:
            out.append("need m_seconds >= 0")
        if not out and self.sampling_rows() > self.first_output_row():
            out.append(f"the first {self.sampling_rows()} rows are buffered to decide the stream's sampling, but "
                       f"the shortest span speaks from row {self.first_output_row()}: buffer fewer rows")
        return out

    def first_output_row(self) -> int:
        """The 0-based row of the first output that can differ from 0 (the shortest rung's first)."""
        span = self.ladder()[0][1]
        return span - 1 + int(self.likelihood(span / self.span).learning)

    def m_for(self, interval: float | None) -> int:
        """The top shape length of a stream sampled every ``interval`` seconds (None: not known)."""
        if not self.uses_time() or interval is None:
            return int(self.m)
        return int(max(1, min(self.m, round(self.m_seconds / interval))))

    def state_bytes(self) -> int:
        # at most two rungs live at once: the longest started and the one below it, which is dropped once the
        # longer one speaks, so its likelihood history holds at most (its span + the longer one's learning)
        # values; plus the 2 x (span + 1) buffer and both rungs' squared distances, as doubles
        steps = self.ladder()
        top = self.likelihood().state_bytes()
        if len(steps) > 1:
            (m1, s1), (m2, s2) = steps[-2], steps[-1]
            lower = self.likelihood(s1 / s2)
            lower.long = min(lower.long, s1 + self.likelihood().learning)
            top += lower.state_bytes() + 8 * (s1 - 2 * m1 + 1)
        m = 1 if self.uses_time() else int(self.m)  # a stream's shape length can be as short as one row
        return top + 16 * (int(self.span) + 1) + 8 * (int(self.span) - 2 * m + 1) + 90 * self.sampling_rows() + 256

    def likelihood(self, share: float = 1.0) -> LikelihoodParams:
        """The likelihood's parameters; for a step of ``share`` of the span, its rows scaled by that share."""
        names = {f.name for f in fields(LikelihoodParams)}
        p = LikelihoodParams(**{k: v for k, v in vars(self).items() if k in names})
        if share < 1.0:
            p.learning = max(min(p.learning, 20.0), round(p.learning * share))
            p.hold = round(p.hold * share)
            p.refractory = max(min(p.refractory, 3.0), round(p.refractory * share))
        return p

    def ladder(self) -> list[tuple[int, int]]:
        """The (m, span) steps, shortest first: span, span / ratio, ... down to ``min_span`` (0: span alone)."""
        span, m = int(self.span), int(self.m)
        steps = [(m, span)]
        k = span / self.ratio
        while self.min_span and k >= self.min_span - 1e-9:
            steps.append((max(1, round(m * k / span)), int(round(k))))
            k /= self.ratio
        return steps[::-1]


_WINDOWS_PER_LEARNING = 13  # ARTime: the learning period holds 13 feature windows of downsampled values


@dataclass
class ResonanceParams(KindParams):
    """Learning rows and the few constants of the method (ARTime's values)."""

    KIND = "resonance"
    learning: float = 600
    window: float = 8
    levels: float = 80
    chomp: float = 0.075
    margin: float = 0.5
    spike: float = 0.1
    initial_rho: float = 0.8
    cap: float = 1024

    def problems(self) -> list[str]:
        out = []
        w = int(self.window)
        if w < 2 or w & (w - 1) or w > 64:
            out.append("window must be a power of two in 2..64 (the Haar transform)")
        if self.learning < 2 * self.window or self.learning > 10**6:
            out.append("need 2 * window <= learning <= 1e6")
        if self.levels < 2 or self.levels > 10_000 or not 0 <= self.chomp < 1 or not 0 <= self.spike < 1:
            out.append("need 2 <= levels <= 10000, 0 <= chomp < 1, 0 <= spike < 1")
        if not 0 <= self.margin <= 10 or not 0 < self.initial_rho < 1 or self.cap < 16 or self.cap > 10**5:
            out.append("need 0 <= margin <= 10, 0 < initial_rho < 1, 16 <= cap <= 1e5")
        return out

    @property
    def step(self) -> int:
        return max(1, int(self.learning) // (int(self.window) * _WINDOWS_PER_LEARNING))

    @property
    def trend(self) -> int:
        """Downsampled steps in the learning period (ARTime's trend window)."""
        return int(self.learning) // self.step

    def state_bytes(self) -> int:
        return int(8 * self.learning + 2 * 8 * 4 * self.window * self.cap + 8 * self.trend * 3 + 8 * self.levels) + 2048


# the kinds this format defines, by name; a new kind adds its schema here
SCHEMAS: dict[str, type[KindParams]] = {p.KIND: p for p in (NoParams, LikelihoodParams, LevelsParams, NoveltyParams,
                                                                   ResonanceParams)}


def spec_problems(spec: PostProcess) -> list[str]:
    """What keeps a card's post-process from running (unknown kind or parameter, out of range), or []."""
    if spec.kind == MAX_KIND:
        return [p for part in spec.parts for p in spec_problems(part)]
    schema = SCHEMAS.get(spec.kind)
    if schema is None:
        return [f"unknown post-process kind {spec.kind!r}: this edgewatch knows "
                f"{', '.join(repr(k) for k in [*SCHEMAS, MAX_KIND])}"]
    try:
        schema.from_dict(dict(spec.params), spec.kind)
    except BadModelFile as exc:
        return [str(exc)]
    return []


def state_bytes(spec: PostProcess) -> int:
    """Per-stream memory estimate of a (valid) post-process: the sum over a 'max' step's parts."""
    if spec.kind == MAX_KIND:
        return sum(state_bytes(part) for part in spec.parts) + 128
    return SCHEMAS[spec.kind].from_dict(dict(spec.params), spec.kind).state_bytes()
