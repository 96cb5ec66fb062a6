"""A 1-D convolutional autoencoder over multivariate windows (the SKAB leaderboard's best kind).

Encoder: two Conv1d stages (kernel 7, stride 2, ReLU, dropout after the
first) ``F -> 32 -> 16`` channels, so a window of ``T`` steps becomes
``T/4`` steps of 16 channels; decoder: two ConvTranspose1d stages
``16 -> 16 -> 32`` that double the length each (kernel 7, stride 2,
padding 3, output padding 1), then a Conv1d ``32 -> F`` with kernel 7 back
to the input. The shape facts (channels, kernel 7, stride 2, dropout 0.2,
Adam 1e-3, early stopping) are those published with SKAB's Conv-AE; the
code is ours. ``T`` must be a multiple of 4 so the decoder lands on it.

Why it suits a pump: the convolutions see the joint shape of all sensors
over some tens of seconds (a valve closing changes flow, pressure and
current together), and the narrow code cannot carry a shape it never saw.

Export: fp32. Static QDQ would quantize the convolutions, but the models
are tiny (about 10k weights) and fp32 keeps the score batch-invariant with
no calibration step.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from edgewatch.contract import Quantization
from edgewatch.export.scoring import InputScaler, ReconstructionScorer
from edgewatch.models import ExportSpec

FAMILY = "conv1d-ae"
EXPORT = ExportSpec(quantization=Quantization.NONE, script=False,
                    why=("not int8: about 10k weights; static int8 was slower at batch 1 (69 vs 64 us) and 11 % "
                         "faster at 16 windows (AMD EPYC), not worth a calibration step"))


class Conv1dAutoencoder(nn.Module):
    """Reconstructs a scaled window ``[B, T, F]`` (``T`` a multiple of 4)."""

    def __init__(self, n_features: int, channels: tuple[int, int] = (32, 16), kernel: int = 7,
                 dropout: float = 0.2) -> None:
        super().__init__()
        c1, c2 = channels
        pad = kernel // 2
        self.encoder = nn.Sequential(
            nn.Conv1d(n_features, c1, kernel, stride=2, padding=pad), nn.ReLU(), nn.Dropout(dropout),
            nn.Conv1d(c1, c2, kernel, stride=2, padding=pad), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(c2, c2, kernel, stride=2, padding=pad, output_padding=1), nn.ReLU(),
            nn.Dropout(dropout),
            nn.ConvTranspose1d(c2, c1, kernel, stride=2, padding=pad, output_padding=1), nn.ReLU(),
            nn.Conv1d(c1, n_features, kernel, padding=pad))

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder(x.transpose(1, 2))
        return self.decoder(z).transpose(1, 2)


def model_config(n_features: int, window: int, channels: tuple[int, int] = (32, 16), kernel: int = 7,
                 dropout: float = 0.2) -> dict[str, Any]:
    return {"n_features": int(n_features), "window": int(window), "channels": [int(c) for c in channels],
            "kernel": int(kernel), "dropout": float(dropout)}


def build_model(config: dict[str, Any]) -> Conv1dAutoencoder:
    return Conv1dAutoencoder(int(config["n_features"]), tuple(config.get("channels", (32, 16))),  # type: ignore[arg-type]
                             int(config.get("kernel", 7)), float(config.get("dropout", 0.2)))


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer: scaler -> autoencoder -> mean squared error over the window."""
    scorer = ReconstructionScorer(build_model(config), InputScaler.identity(int(config["n_features"])))
    scorer.load_state_dict(state_dict)
    return scorer.eval()
