"""One path for every model an agent may run: ``accept(agent, candidate, gate) -> Outcome``.

A model arrives from four places: the ``--model`` file at start, the model
store (the live model a restart resumes), a watched file (``--watch-model``)
and the model topic (``--model-topic``). Each goes through the same checks,
in this order, each once: its size (``--max-model-mb``), its sha256 against
what it must be (a ``--model-sha256`` pin, a model message's header), the
trust policy (signed by a ``--trust-key``, or unsigned allowed, see
:class:`~edgewatch.agent.lifecycle.signing.TrustPolicy`), with trusted
keys the release against the highest this agent has run (its
:class:`~edgewatch.agent.lifecycle.store.ModelStore`), then the runtime is
built with the agent's overrides from the very bytes checked (a card that
cannot run, a post-process parameter the kind does not know, a drift
reference that does not fit, k > n, all fail here, off the scoring loop) and
must read the running model's features. Only a model received over MQTT is
written to disk, after the checks and before the build (``keep``), so a
refusal leaves nothing unchecked on disk.

What it becomes: ``model_swapped`` (queued live; the agent swaps it in
between two batches, so no message is dropped, and the release mark moves
to it), ``model_shadow`` (scored beside the live model, never alerting),
``model_unchanged`` (the model that runs already), or ``model_refused``
(``edgewatch_model_swaps_total{result="refused"}``, the log says why, a
``model_refused`` event goes to the sinks, and the running model keeps
running). At start there is no running model yet: :meth:`Gate.admit` is
the same checks, and a refusal ends the start with the reason (exit 3).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewatch import digests
from edgewatch.agent import events
from edgewatch.agent.lifecycle.shadow import PromotionRule, ShadowScorer
from edgewatch.agent.lifecycle.signing import TrustPolicy, Verified
from edgewatch.agent.lifecycle.store import ModelStore
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import DriftSettings, ModelRuntime, Overrides
from edgewatch.errors import BadModelFile, EdgewatchError

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent

log = logging.getLogger(__name__)


class Origin(enum.StrEnum):
    """Where a candidate model comes from (the ``origin`` of a ``model_refused`` event)."""

    START = "start"  # --model
    STORE = "store"  # the model store's live model, resumed at start (it came over MQTT)
    FILE = "file"  # --watch-model
    MQTT = "mqtt"  # --model-topic

    @property
    def remote(self) -> bool:
        """Sent by whoever may publish on the broker: unsigned only with ``--allow-unsigned-models``."""
        return self in (Origin.STORE, Origin.MQTT)


class Verdict(enum.StrEnum):
    """What became of a candidate: the fleet contract's event for it (docs/fleet.md)."""

    SWAPPED = "model_swapped"
    SHADOW = "model_shadow"
    UNCHANGED = "model_unchanged"
    REFUSED = "model_refused"


@dataclass(frozen=True)
class Candidate:
    """A model file offered to the agent, and what it is offered for."""

    path: Path  # where it is, or (with ``keep``) where it will be kept
    origin: Origin
    data: bytes | None = None  # its bytes, when the caller has them (a model message's file); else read once
    sha256: str | None = None  # what its bytes must hash to (a --model-sha256 pin, a model message's header)
    shadow: bool = False  # score beside the live model instead of replacing it
    rule: PromotionRule | None = None  # a shadow's --promote-if
    granted: int | None = None  # the release a signed rollback gives it in place of its own
    info: Mapping[str, Any] = field(default_factory=dict)  # the fleet message's id, action, note: into the event
    keep: Callable[[bytes], Path] | None = None  # writes the checked bytes to disk, returns where (MQTT)
    label: str = ""  # how messages name it ("--model PATH", "model 'x.onnx' (ab12...) from MQTT"); default the path

    @property
    def name(self) -> str:
        return self.label or str(self.path)


@dataclass(frozen=True)
class Checked:
    """A candidate's bytes that passed size, sha256, trust and release, not yet built into a runtime."""

    candidate: Candidate
    data: bytes
    sha256: str
    verified: Verified | None
    release: int | None  # the signed release it would run as (trusted keys and a store only)
    release_how: str  # how the release is told in messages: ", signed by ... at ..." or " (granted ...)"


@dataclass(frozen=True)
class Admitted:
    """A candidate that passed every check, built: its runtime, and the release it runs as (trusted keys only)."""

    checked: Checked
    runtime: ModelRuntime

    @property
    def sha256(self) -> str:
        return self.checked.sha256

    @property
    def release(self) -> int | None:
        return self.checked.release


@dataclass(frozen=True)
class Outcome:
    """What :func:`accept` did with a candidate, and why (``reason``, for a refusal)."""

    verdict: Verdict
    sha256: str | None
    reason: str = ""
    runtime: ModelRuntime | None = None
    release: int | None = None

    @property
    def changed(self) -> bool:
        """True when the live or the shadow model changes."""
        return self.verdict in (Verdict.SWAPPED, Verdict.SHADOW)


@dataclass
class Gate:
    """What a model must pass on this agent: its trust policy, release mark, size bound and run-time overrides."""

    trust: TrustPolicy = field(default_factory=TrustPolicy)
    store: ModelStore | None = None  # keeps the release mark (with trusted keys) and the models of the topic
    overrides: Overrides = field(default_factory=Overrides)
    drift_settings: DriftSettings = field(default_factory=DriftSettings)
    max_bytes: int | None = None  # a bigger file is refused before it is read further

    @classmethod
    def for_agent(cls, agent: Agent, trust: TrustPolicy | None = None, store: ModelStore | None = None,
                  max_bytes: int | None = None) -> Gate:
        """The gate of ``agent``: its overrides and drift settings, with this trust policy and store."""
        return cls(trust or TrustPolicy(), store, agent.options.overrides(), agent.options.drift_settings(),
                   max_bytes)

    def admit(self, candidate: Candidate, running: ModelRuntime | None = None) -> Admitted:
        """Every check of the module docstring, in its order; BadModelFile (or BadOverride) says which failed."""
        return self.build(self.check(candidate), running)

    def check(self, candidate: Candidate) -> Checked:
        """Size, sha256, trust (once) and release: what needs no runtime. BadModelFile says which failed."""
        c = candidate
        data = c.data if c.data is not None else _read(c.path)
        if self.max_bytes is not None and len(data) > self.max_bytes:
            raise BadModelFile(f"model file of {len(data)} bytes is over the limit of {self.max_bytes} bytes "
                               f"(--max-model-mb); nothing was written")
        sha = digests.sha256(data).hexdigest()
        if c.sha256 and c.sha256.lower() != sha:
            if c.origin is Origin.MQTT:
                raise BadModelFile(f"model message says sha256 {c.sha256} but its file has {sha}: damaged in "
                                   "transit?")
            raise BadModelFile(f"model file {c.path} has sha256 {sha}, expected {c.sha256.lower()}: refusing to "
                               "load it")
        verified = self.trust.check(data, Origin.MQTT.value if c.origin.remote else c.origin.value, c.name)
        release, how = None, ""
        if verified is not None and self.store is not None:  # releases are ordered: before the work of loading
            s = verified.signature
            release, how = ((s.release, f", signed by {s.signer!r} at {s.signed_at}") if c.granted is None
                            else (c.granted, " (granted by a signed rollback)"))
            self.store.check_release(release, sha, c.name, how)
        return Checked(c, data, sha, verified, release, how)

    def build(self, checked: Checked, running: ModelRuntime | None = None) -> Admitted:
        """The runtime of checked bytes (kept on disk first when the candidate says where), which must read
        ``running``'s features; BadModelFile (or BadOverride) when its card cannot run here."""
        c = checked.candidate
        path = c.keep(checked.data) if c.keep is not None else c.path
        # built from the very bytes checked: a file swapped in between cannot slip past
        runtime = ModelRuntime.build(ScoringModel(path, expected_sha256=checked.sha256, data=checked.data),
                                     self.overrides, self.drift_settings)
        if running is not None:
            runtime.check_fits(running)
        if checked.verified is not None:
            log.info("model %s %s", path, checked.verified.describe())
        return Admitted(checked, runtime)

    def record(self, admitted: Admitted) -> None:
        """Move the release mark to a model that is about to run (OSError: the mark cannot be kept)."""
        c = admitted.checked
        if c.release is not None and self.store is not None:
            self.store.admit(c.release, c.sha256, c.candidate.name, c.release_how)


def accept(agent: Agent, candidate: Candidate, gate: Gate) -> Outcome:
    """Check ``candidate`` through ``gate`` and queue it live or in shadow; any failure refuses it.

    Never raises for what a file holds: a refusal is an Outcome (and a
    ``model_refused`` event), the running model stays.
    """
    c = candidate
    try:
        admitted = gate.admit(c, agent.runtime)
        runtime = admitted.runtime
        if c.shadow:
            agent.queue_shadow(ShadowScorer(runtime, agent.threshold, note=str(c.info.get("note") or ""),
                                            rule=c.rule, message_id=c.info.get("message_id"), agent=agent),
                               dict(c.info))
            log.info("model %s (%s) from %s runs in shadow", c.path, admitted.sha256[:12], c.origin.value)
            return Outcome(Verdict.SHADOW, admitted.sha256, runtime=runtime, release=admitted.release)
        if admitted.sha256 == agent.model.sha256:
            return Outcome(Verdict.UNCHANGED, admitted.sha256, runtime=runtime, release=admitted.release)
        gate.record(admitted)  # a mark that cannot be kept refuses the model
        agent.queue_model(runtime, dict(c.info))
    except (EdgewatchError, OSError) as exc:
        return refuse(agent, str(exc), c.sha256, c.origin, c.info)
    except Exception as exc:  # anything else a broken file can provoke
        return refuse(agent, f"{type(exc).__name__}: {exc}", c.sha256, c.origin, c.info)
    log.info("model %s (%s) accepted from %s; swapping in", c.path, admitted.sha256[:12], c.origin.value)
    return Outcome(Verdict.SWAPPED, admitted.sha256, runtime=runtime, release=admitted.release)


def refuse(agent: Agent, reason: str, sha256: str | None, origin: Origin,
           info: Mapping[str, Any] | None = None) -> Outcome:
    """Say that a model was refused (metric, log, ``model_refused`` event); the running model stays."""
    agent.metrics.model_swaps.labels("refused").inc()
    log.error("new model refused (%s), keeping %s: %s", origin.value, agent.model.sha256[:12], reason)
    agent.post_event({**events.model_refused_event(agent=agent.options.agent_id, now=time.time(),
                                                   origin=origin.value, reason=reason, sha256=sha256,
                                                   running=agent.model), **(info or {})})
    return Outcome(Verdict.REFUSED, sha256, reason)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BadModelFile(f"model file {path} does not exist") from None
    except OSError as exc:
        raise BadModelFile(f"cannot read model file {path}: {exc.strerror}") from None
