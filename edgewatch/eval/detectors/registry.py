"""Detector names accepted by ``edgewatch eval nab --detector``."""

from __future__ import annotations

import enum
import tempfile
from pathlib import Path

from edgewatch.errors import BadInput
from edgewatch.eval.detectors.baselines import NullDetector, RandomDetector, WindowedGaussianDetector


class BuiltIn(str, enum.Enum):
    NULL = "null"
    RANDOM = "random"
    WINDOWED_GAUSSIAN = "windowed-gaussian"
    NOVELTY = "novelty"


NAMES = [b.value for b in BuiltIn]


def resolve(name: str, seed: int = 42, stride: int = 1):  # noqa: ANN201 - a runner.Detector
    """A built-in detector by name, or ``model:PATH`` for any edgewatch model file of one feature.

    ``novelty`` is written to a temporary model file and run from there, so
    its figures are those of the file ``edgewatch eval make-detector`` writes.
    """
    from edgewatch.eval.runner import ModelDetector

    if name.startswith("model:"):
        path = Path(name[len("model:"):])
        return ModelDetector(path, stride=stride)
    try:
        which = BuiltIn(name)
    except ValueError:
        raise BadInput(f"unknown detector {name!r}: use one of {', '.join(NAMES)} or model:PATH.onnx") from None
    if which is BuiltIn.NULL:
        return NullDetector()
    if which is BuiltIn.RANDOM:
        return RandomDetector(seed)
    if which is BuiltIn.WINDOWED_GAUSSIAN:
        return WindowedGaussianDetector()
    from edgewatch.eval.detectors.novelty import write_model

    with tempfile.TemporaryDirectory(prefix="edgewatch-novelty-") as tmp:
        det = ModelDetector(write_model(Path(tmp) / "novelty.onnx"), stride=stride)  # session holds the graph
    det.name = "novelty"
    return det
