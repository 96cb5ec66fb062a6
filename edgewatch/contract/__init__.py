"""The model-file contract: what an edgewatch ONNX file says (its card), read the same way everywhere.

``from edgewatch.contract import ModelCard`` is the API; :mod:`card` holds it.
"""

from edgewatch.contract.card import (AUX_INPUT_PREFIX, AUX_OUTPUT, FEATURE_ERROR_OUTPUT, FORMAT_VERSION, INPUT_NAME,
                                     MAX_KIND, PREFIX, SCORE_INPUT, SCORE_OUTPUT, SIGNATURE_KEY, UPGRADES, Decision,
                                     DriftReference, ModelCard, PostProcess, Props, Quantization, Scaler, ScoreStats,
                                     Task, to_plain, upgrade)

__all__ = ["AUX_INPUT_PREFIX", "AUX_OUTPUT", "FEATURE_ERROR_OUTPUT", "FORMAT_VERSION", "INPUT_NAME", "MAX_KIND",
           "PREFIX", "SCORE_INPUT", "SCORE_OUTPUT", "SIGNATURE_KEY", "UPGRADES", "Decision", "DriftReference",
           "ModelCard", "PostProcess", "Props", "Quantization", "Scaler", "ScoreStats", "Task", "to_plain", "upgrade"]
