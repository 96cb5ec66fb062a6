"""Stateful steps between a model's raw score and the threshold (the card's ``postprocess``)."""

from edgewatch.agent.postprocess.base import (KINDS, Identity, Levels, Likelihood, MaxOf, PostProcessor,
                                              log_likelihood, make_postprocessor, register_kind)
from edgewatch.agent.postprocess.novelty import Novelty

__all__ = ["KINDS", "Identity", "Levels", "Likelihood", "MaxOf", "Novelty", "PostProcessor", "log_likelihood",
           "make_postprocessor", "register_kind"]
