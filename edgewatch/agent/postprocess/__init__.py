"""Stateful steps between a model's raw score and the threshold (the card's ``postprocess``), per stream.

One module per kind: ``none`` (:mod:`.none`), ``likelihood`` (:mod:`.likelihood`,
Numenta's anomaly likelihood), ``levels`` (:mod:`.levels`, value-level
novelty), ``novelty`` (:mod:`.novelty`, subsequence distance then the
likelihood), ``resonance`` (:mod:`.resonance`, ARTime-like, kept for
comparison) and ``max`` (:mod:`.max`, several parts in one file). Each
kind's parameter schema is the contract's (:mod:`edgewatch.contract.postprocess`);
:class:`PostProcessor` and :class:`PerStream` (:mod:`.base`) are the public
base; :class:`~.sampling.SampledPerStream` (:mod:`.sampling`) the base of a
kind that decides lengths or a transform per stream from its first rows
and their times (``novelty`` and ``levels``, when the card asks);
:func:`make_postprocessor` (:mod:`.registry`) builds a card's step.
The kinds are registered here, by this package, in one list: a new kind is
a schema in the contract, a module here and one line below.

NumPy and the standard library only (this runs in the agent); imports the
contract, never the engine.
"""

from edgewatch.agent.postprocess.base import PerStream, PostProcessor
from edgewatch.agent.postprocess.levels import Levels
from edgewatch.agent.postprocess.likelihood import Likelihood, log_likelihood
from edgewatch.agent.postprocess.max import MaxOf
from edgewatch.agent.postprocess.none import Identity
from edgewatch.agent.postprocess.novelty import Novelty
from edgewatch.agent.postprocess.resonance import Resonance
from edgewatch.agent.postprocess.registry import KINDS, make_postprocessor, register_kind

register_kind("none", lambda _params: Identity())
register_kind("likelihood", Likelihood)
register_kind("levels", Levels)
register_kind("novelty", Novelty)
register_kind("resonance", Resonance)

__all__ = ["KINDS", "Identity", "Levels", "Likelihood", "MaxOf", "Novelty", "PerStream", "PostProcessor", "Resonance",
           "log_likelihood", "make_postprocessor", "register_kind"]
