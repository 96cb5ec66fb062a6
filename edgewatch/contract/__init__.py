"""The model-file contract: what an edgewatch ONNX file says, read the same way by every part of edgewatch.

``from edgewatch.contract import ModelCard`` is the API; the modules:

* :mod:`card`: :class:`ModelCard` (the ``edgewatch.*`` metadata) and the graph's input/output names;
* :mod:`migration`: the format-version table; older cards are upgraded, newer ones read with a warning;
* :mod:`postprocess`: the post-process step spec and each kind's parameter schema (:data:`SCHEMAS`);
* :mod:`drift_reference`: the training data's per-feature summary for the running KS check;
* :mod:`plain`: values as JSON-ready data.

What a file *means* when it runs is the agent's (``edgewatch.agent.runtime``).
This package imports :mod:`edgewatch.errors` and NumPy only (never torch,
onnx or the agent), so everything that reads or writes a card may import it.
"""

from edgewatch.contract.card import (AUX_OUTPUT, FEATURE_ERROR_OUTPUT, HOLD_STEPS, INPUT_NAME, PREFIX,
                                     SCORE_OUTPUT, SIGNATURE_KEY, Decision, ModelCard, Quantization, Scaler,
                                     ScoreStats, Task)
from edgewatch.contract.drift_reference import DriftReference
from edgewatch.contract.migration import FORMAT_VERSION, UPGRADES, Props, upgrade
from edgewatch.contract.plain import to_plain
from edgewatch.contract.postprocess import AUX_INPUT_PREFIX, MAX_KIND, SCORE_INPUT, PostProcess

__all__ = ["AUX_INPUT_PREFIX", "AUX_OUTPUT", "FEATURE_ERROR_OUTPUT", "FORMAT_VERSION", "HOLD_STEPS", "INPUT_NAME",
           "MAX_KIND", "PREFIX", "SCORE_INPUT", "SCORE_OUTPUT", "SIGNATURE_KEY", "UPGRADES", "Decision",
           "DriftReference", "ModelCard", "PostProcess", "Props", "Quantization", "Scaler", "ScoreStats", "Task",
           "to_plain", "upgrade"]
