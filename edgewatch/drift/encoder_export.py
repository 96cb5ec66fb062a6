"""Export the conv autoencoder's encoder as an ONNX feature extractor for drift checks.

The bottleneck of a model trained on the clean images is a compact,
data-aware description of them: testing its 256 features for drift sees
changes the way the anomaly model sees them. The exported graph takes raw
pixels ``[B, 1, S, S]`` (0–255, like the idx files) and returns ``[B, d]``.

Training side: imports torch (the ``[train]`` extra) when called.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from edgewatch.errors import BadModelFile, require_torch
from edgewatch.files import replacing

ENCODER_INPUT = "images"
ENCODER_OUTPUT = "features"


def export_conv_encoder(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the encoder of a conv-ae checkpoint to ``out`` (ONNX, dynamic batch), atomically."""
    torch = require_torch()
    from edgewatch.models import scorer_from_checkpoint
    from edgewatch.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt.family != "conv-ae":
        raise BadModelFile(f"{checkpoint} is a {ckpt.family!r} checkpoint; only conv-ae has an image "
                           "encoder to export (train one with 'edgewatch train conv-ae')")
    scorer = scorer_from_checkpoint(ckpt.family, dict(ckpt.config), ckpt.state_dict, what=str(checkpoint))
    size = scorer.model.cfg.size

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scorer = scorer

        def forward(self, x):  # noqa: ANN001, ANN202 - traced by the exporter
            return self.scorer.model.encoder(x * self.scorer.pixel_scale)

    module = _Encoder().eval()
    out = Path(out)
    with replacing(out, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is the quick one here
        torch.onnx.export(module, (torch.zeros(2, 1, size, size),), str(tmp), input_names=[ENCODER_INPUT],
                          output_names=[ENCODER_OUTPUT], dynamic_axes={ENCODER_INPUT: {0: "batch"},
                                                                      ENCODER_OUTPUT: {0: "batch"}},
                          opset_version=17, dynamo=False)
    return out
