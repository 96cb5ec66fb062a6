"""The one place that knows what a model file means when it runs.

:mod:`edgewatch.contract` says what a file *says*; a :class:`ModelRuntime`
says what it *means* here, built from (model file, run-time overrides): the
resolved window, stride, threshold and k/n, the anomaly_score scale
(:mod:`edgewatch.agent.score_scale`), the post-processor, the episode
tracker and the drift watch. Everything that could stop the
scoring loop is tried while building (the post-process is built and fed a
dry-run batch of the graph's own output, the drift reference is checked
against the features, k/n and the threshold are checked), so building
fails with the reason, off the loop, and a runtime that was built runs.

The agent holds one runtime and swaps the whole reference between two
batches; ``edgewatch eval`` scores model files through the same object, so
evaluation and deployment cannot drift apart.

Where a candidate is checked before anything is built from it: the
:data:`CandidateCheck` callables given to :func:`load_runtime` see the
file's path and its bytes (read once; the session is built from those
bytes) and raise :class:`BadModelFile` to refuse it. Signature checks
(``--trust-key``) plug in there, for the model given at start, a watched
file and a model received over MQTT alike.

Fails with :class:`BadModelFile` (exit 3) for what is wrong in the file and
:class:`BadOverride` (exit 2 at start) for a run-time value that
contradicts it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.agent.episodes import MAX_M, EpisodeTracker
from edgewatch.agent.isolation import check_isolation
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.postprocess import PostProcessor, make_postprocessor
from edgewatch.agent.score_scale import check_sensitivity, scale_for
from edgewatch.contract import ModelCard, Quantization
from edgewatch.contract.postprocess import state_bytes
from edgewatch.errors import BadModelFile, BadOverride

log = logging.getLogger(__name__)

MAX_N = 62  # the tracker keeps the last n decisions in one machine word
# memory the streams may take in all: the unit's MemoryMax=512M less the agent itself (~90 MiB with ORT and
# the S0 model), the queue, ORT's arena and a margin
STREAM_MEMORY_BUDGET = 256 * 2**20
MAX_STREAMS_CAP = 10_000  # the default never exceeds this, however cheap a stream is
STREAM_OVERHEAD = 2048  # dict/list entries, tracker, counters per stream (measured with S0: ~2 KiB)

CandidateCheck = Callable[[Path, bytes], None]
"""Called with a candidate's path and bytes before anything is built; raises BadModelFile to refuse it."""


@dataclass(frozen=True)
class Overrides:
    """Run-time values that replace the file's (``None``: take the file's)."""

    stride: int | None = None
    threshold: float | None = None
    k: int | None = None
    n: int | None = None
    m: int | None = None  # quiet windows before an episode ends (``--close-after``)
    sensitivity: float = 1.0  # scales anomaly_score; the agent alerts above 1 (agent/score_scale.py)
    quiet_start: float = 0.0  # seconds of each stream's own time whose episodes are held (``--quiet-start``)


@dataclass(frozen=True)
class DriftSettings:
    """How the running drift check samples a stream (see :class:`~edgewatch.agent.watch.drift_watch.DriftWatch`)."""

    every: int = 512  # messages per stream between checks; 0 turns drift checks off
    sample: int = 512  # inputs kept per stream for the KS check
    keep_every: int = 10  # keep every n-th input, so the sample spans n x sample messages
    min_statistic: float = 0.25  # and a KS distance at least this large
    range_rows: int = 120  # each stream's first rows checked against the training range (0: not)


class ModelRuntime:
    """A model file resolved for running: settings plus the per-stream stateful stages.

    Build it with :meth:`build` (or :func:`load_runtime` from a path); the
    constructor does no checking. :meth:`fresh` gives a twin with empty
    state (eval scores each series from scratch).
    """

    def __init__(self, model: ScoringModel, overrides: Overrides, drift_settings: DriftSettings,
                 stride: int, threshold: float, k: int, n: int, warnings: list[str], m: int | None = None) -> None:
        self.model = model
        self.card: ModelCard = model.card
        self.overrides = overrides
        self.drift_settings = drift_settings
        self.window = self.card.window
        self.stride = stride
        self.set_threshold(threshold)
        self.k = k
        self.n = n
        self.m = n if m is None else m
        self.warnings = warnings
        self.post: PostProcessor = make_postprocessor(self.card.postprocess)
        self.tracker = EpisodeTracker(k, n, self.m, quiet_start=overrides.quiet_start)
        self.drift = self._drift_watch()

    @property
    def features(self) -> list[str]:
        return self.card.features

    def set_threshold(self, threshold: float) -> None:
        """Take ``threshold`` in ``--threshold``'s raw meaning: the 1.0 of anomaly_score moves there.

        ``self.threshold`` is then the score the agent alerts above: this
        threshold at sensitivity 1, else where the sensitivity puts
        anomaly_score 1 (:mod:`edgewatch.agent.score_scale`).
        """
        self.model_threshold = float(threshold)
        self.scale = scale_for(self.card, self.model_threshold, self.overrides.sensitivity)
        self.threshold = self.scale.level

    @property
    def sha256(self) -> str:
        return self.model.sha256

    def _drift_watch(self):  # noqa: ANN202 - DriftWatch | None, imported only when a reference exists
        ref, d = self.card.drift_reference, self.drift_settings
        if ref is None or d.every <= 0:
            return None
        from edgewatch.agent.watch.drift_watch import DriftWatch
        from edgewatch.agent.watch.range_check import range_check_for

        return DriftWatch(ref, self.card.features, sample_size=d.sample, check_every=d.every,
                          keep_every=d.keep_every, min_statistic=d.min_statistic, min_sample=d.sample,
                          first_rows=range_check_for(self.card, d.range_rows))

    def check_fits(self, running: ModelRuntime) -> None:
        """Refuse (BadModelFile) to take over from ``running`` when this model reads other features, or codes the texts
        of its state features otherwise (the sources were built with the running model's codes)."""
        if self.card.features != running.card.features:
            raise BadModelFile(f"{self.model.path} reads features {self.card.features}, the running model "
                               f"reads {running.card.features}: refusing to swap")
        if (self.card.states or None) != (running.card.states or None):  # the sources read texts by the codes
            raise BadModelFile(f"{self.model.path} codes its state features' texts as {self.card.states}, the "
                               f"running model as {running.card.states}: refusing to swap (restart the agent "
                               "with the new model)")

    def stream_bytes(self) -> int:
        """Memory one stream can take with this model (windows, drift sample, post-process state), bytes.

        An upper estimate, calibrated on measurements (docs/agent.md); it
        sizes the default ``--max-streams``.
        """
        f = self.card.n_features
        windows = 2 * self.window * f * 4
        drift = self.drift_settings.sample * f * 4 + 12 * f + 40 if self.drift is not None else 0
        return windows + drift + state_bytes(self.card.postprocess) + STREAM_OVERHEAD

    def default_max_streams(self, budget: int = STREAM_MEMORY_BUDGET) -> int:
        """Streams that fit ``budget`` (at most MAX_STREAMS_CAP): 10,000 for S0, ~2,000 with a likelihood step."""
        return max(1, min(MAX_STREAMS_CAP, budget // self.stream_bytes()))

    def fresh(self) -> ModelRuntime:
        """The same model and settings with new, empty per-stream state."""
        return ModelRuntime(self.model, self.overrides, self.drift_settings, self.stride, self.model_threshold,
                            self.k, self.n, list(self.warnings), self.m)

    @classmethod
    def build(cls, model: ScoringModel, overrides: Overrides | None = None,
              drift_settings: DriftSettings | None = None) -> ModelRuntime:
        """Resolve and check everything ``model`` needs to run with ``overrides``; see the module docstring."""
        o = overrides or Overrides()
        d = drift_settings or DriftSettings()
        card = model.card
        where = str(model.path)
        if not card.is_time_series:
            raise BadModelFile(f"{where} scores images (sample shape {card.sample_shape}), not streams; "
                               "use 'edgewatch score' for image sets")
        stride, threshold, k, n, m = resolve(card, o)
        check_sensitivity(o.sensitivity)
        if card.drift_reference is not None:
            from edgewatch.contract.drift_reference import check_reference

            try:
                check_reference(card.drift_reference, card.n_features)
            except BadModelFile as exc:
                raise BadModelFile(f"{where}: {exc}") from None
        try:
            runtime = cls(model, o, d, stride, threshold, k, n,
                          card.format_warnings + threshold_warnings(card, threshold) + isolation_warnings(card), m)
        except BadModelFile as exc:
            raise BadModelFile(f"{where}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise BadModelFile(f"{where}: its card cannot run: {exc}") from exc
        dry_run(runtime)
        check_isolation(model)  # on this machine's int8 kernels: BadModelFile when one window moves another
        for w in runtime.warnings:
            log.warning("%s: %s", where, w)
        return runtime


def resolve(card: ModelCard, o: Overrides) -> tuple[int, float, int, int, int]:
    """Stride, threshold, k, n and m from the card and the overrides; BadOverride when they contradict it.

    ``m`` (quiet windows before an episode ends) is the override, else the
    card's, else ``n`` -- also when ``--n`` alone is given to a card without
    its own ``m``, so an old card keeps its "none of the last n" rule.
    """
    stride = card.stride if o.stride is None else int(o.stride)
    if stride < 1:
        raise BadOverride(f"stride {stride}: it must be at least 1")
    threshold = float(card.threshold if o.threshold is None else o.threshold)
    if not math.isfinite(threshold):
        raise BadOverride(f"threshold {threshold} is not a finite number")
    k = card.decision.k if o.k is None else int(o.k)
    n = card.decision.n if o.n is None else int(o.n)
    if not 1 <= k <= n:
        given = []
        if o.k is not None:
            given.append(f"--k {k}")
        if o.n is not None:
            given.append(f"--n {n}")
        other = (f"the model file's n = {n}" if o.n is None else f"the model file's k = {k}" if o.k is None
                 else "each other")
        hint = " (give --n too)" if o.n is None else " (give --k too)" if o.k is None else ""
        raise BadOverride(f"{' and '.join(given)} contradict{'s' if len(given) == 1 else ''} {other}: an episode "
                          f"needs 1 <= k <= n{hint}")
    if n > MAX_N:
        raise BadOverride(f"n = {n}: at most {MAX_N} recent windows can be counted")
    m = o.m if o.m is not None else card.decision.m if card.decision.m is not None else n
    if not 1 <= int(m) <= MAX_M:
        raise BadOverride(f"--close-after {m}: an episode ends after between 1 and {MAX_M} quiet windows")
    if not 0 <= o.quiet_start < math.inf:
        raise BadOverride(f"--quiet-start {o.quiet_start}: give 0 or more seconds")
    return stride, threshold, k, n, int(m)


def threshold_warnings(card: ModelCard, threshold: float) -> list[str]:
    """Warnings for a threshold that every normal window crosses or that no recorded score comes near.

    Only for models without a post-process: the card's score statistics are
    of the graph's raw score, and a post-processed score lives on another
    scale. Such a threshold still loads (an operator may mean it).
    """
    stats = card.score_stats
    if card.postprocess.kind != "none" or not stats:
        return []
    out = []
    normal = stats.get("normal")
    if normal is not None and threshold < normal.p50:
        out.append(f"threshold {threshold:.6g} is below the median score on normal data ({normal.p50:.6g}): "
                   "most normal windows will cross it and alert")
    top = max(s.max for s in stats.values())
    scale = max([abs(top)] + [s.std for s in stats.values()] + [abs(s.p99) for s in stats.values()])
    if threshold > 100 * scale:
        out.append(f"threshold {threshold:.6g} is far above every score in the card's statistics (largest "
                   f"{top:.6g}, on {', '.join(sorted(stats))}): it may never alert")
    return out


def isolation_warnings(card: ModelCard) -> list[str]:
    """A warning for a file whose scores depend on which windows share its ONNX Runtime call.

    Dynamic int8 picks its activation scales from each call's whole input, so
    one stream's absurd value moves every other stream's score in that batch.
    Files made before export checked batch invariance can still be like this;
    they load (an operator may have nothing else yet) but say so.
    """
    if card.quantization is not Quantization.DYNAMIC_INT8:
        return []
    return ["quantized with dynamic int8: a window's score depends on the other windows of its batch, so one "
            "stream's extreme values can raise every other stream's scores; re-export it with 'edgewatch export "
            "onnx' (fp32 or --quantize unrolled pass the batch-invariance check)"]


def dry_run(runtime: ModelRuntime) -> None:
    """Score two windows and feed a throwaway post-processor, so a card that cannot run fails here."""
    card = runtime.card
    centre = np.asarray(card.scaler.offset, dtype=np.float32)
    x = np.broadcast_to(centre, (2, card.window, card.n_features)).copy()
    x[1] += np.float32(1.0)
    where = str(runtime.model.path)
    try:
        batch = runtime.model.score_many(x)
        if batch.scores.shape != (2,) or batch.feature_error.shape != (2, card.n_features):
            raise BadModelFile(f"{where}: the graph gave scores {batch.scores.shape} and feature_error "
                               f"{batch.feature_error.shape} for 2 windows; expected (2,) and (2, {card.n_features})")
        make_postprocessor(card.postprocess).update_many(np.array([0, 1]), batch.scores, batch.aux)
    except BadModelFile:
        raise
    except Exception as exc:  # ORT's own errors, a post-process that cannot take the graph's output
        raise BadModelFile(f"{where}: a dry run of the model failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from exc


def read_candidate(path: str | os.PathLike[str], checks: Sequence[CandidateCheck] = ()) -> bytes:
    """The candidate's bytes, after every check accepted them."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise BadModelFile(f"model file {p} does not exist") from None
    except OSError as exc:
        raise BadModelFile(f"model file {p} cannot be read: {exc.strerror or exc}") from None
    for check in checks:
        check(p, data)
    return data


def load_runtime(path: str | os.PathLike[str], overrides: Overrides | None = None, *,
                 expected_sha256: str | None = None, checks: Sequence[CandidateCheck] = (),
                 drift_settings: DriftSettings | None = None, threads: int = 1) -> ModelRuntime:
    """Read, check (``checks``, then the sha256 pin), load and build a runtime for the file at ``path``."""
    data = read_candidate(path, checks)
    model = ScoringModel(path, expected_sha256=expected_sha256, threads=threads, data=data)
    return ModelRuntime.build(model, overrides, drift_settings)
