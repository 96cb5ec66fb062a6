"""S0: the LSTM autoencoder for live supervision of network equipment.

Encoder LSTM ``F -> hidden`` (160), LSTM ``hidden -> latent`` (60) whose
*whole output sequence* (not only its last hidden state) is the code the
decoder LSTM ``latent -> hidden`` reads, then ``Linear hidden -> F`` per
step; batch_first. Trained on nominal windows (5 to 50 steps, default 10)
with MSE, Adam lr 1e-2 and ExponentialLR gamma 0.9995 per batch
(:mod:`edgewatch.train.lstm_ae`).

Passing the whole sequence makes the bottleneck per step (60 numbers per
step instead of 60 per window): the model reconstructs short windows very
well and fails on shapes it never saw (spikes, frozen sensors, overload),
which is what an error score needs.

Export: plain tracing, then the sentinel int8 form
(:mod:`edgewatch.export.sentinel`: ONNX Runtime's fused
``DynamicQuantizeLSTM`` with two sentinel units per layer that fix its
per-call ranges, so a window's score does not depend on its batch), fp32
when that form fails parity or isolation. Measured on the 2-core AMD EPYC
(Zen 3, AVX2, no VNNI), the benchmark's trained S0 weights, one thread,
interleaved rounds, CPU time per window at batch 1 / 16 / 32 / 64: PyTorch
eager 1030 / 184 / 158 / 149 µs, fp32 ``LSTM`` 273 / 85 / 90 / 89, sentinel
int8 147 / 64 / 65 / 64, the unrolled int8 form
(:mod:`edgewatch.export.unroll`) 514 / 82 / 77 / 68, plain dynamic int8
(batch-dependent, refused) 152 / 61 / 61 / 62 (``edgewatch bench``, load
6.4 to 2.5). Decisions against fp32 on simulator windows with the shipped
weights: 99.96 % nominal, 99.65 % faulty (models/README.md).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from edgewatch.contract import Quantization
from edgewatch.export.scoring import InputScaler, ReconstructionScorer
from edgewatch.models import ExportSpec

FAMILY = "lstm-ae"
EXPORT = ExportSpec(quantization=Quantization.SENTINEL_INT8, script=False, fallback=Quantization.NONE,
                    why=("ORT's fused int8 LSTM, stream-isolated by sentinel units: 1.4x fp32 at the agent's 32 "
                         "windows a call, 1.9x at 1 (AMD EPYC, AVX2)"))


class LstmAutoencoder(nn.Module):
    """Reconstructs a scaled window ``[B, T, F]``; any ``T`` works in PyTorch."""

    def __init__(self, n_features: int = 4, hidden: int = 160, latent: int = 60) -> None:
        super().__init__()
        self.encoder = nn.LSTM(n_features, hidden, batch_first=True)
        self.bottleneck = nn.LSTM(hidden, latent, batch_first=True)
        self.decoder = nn.LSTM(latent, hidden, batch_first=True)
        self.output = nn.Linear(hidden, n_features)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.encoder(x)
        z, _ = self.bottleneck(h)  # the whole sequence goes on
        d, _ = self.decoder(z)
        return self.output(d)


def model_config(n_features: int, window: int, hidden: int = 160, latent: int = 60) -> dict[str, Any]:
    """The checkpoint ``config`` that :func:`build_scorer` reads."""
    return {"n_features": int(n_features), "window": int(window), "hidden": int(hidden), "latent": int(latent)}


def build_model(config: dict[str, Any]) -> LstmAutoencoder:
    return LstmAutoencoder(int(config["n_features"]), int(config.get("hidden", 160)),
                           int(config.get("latent", 60)))


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer: scaler -> autoencoder -> mean squared error."""
    scorer = ReconstructionScorer(build_model(config), InputScaler.identity(int(config["n_features"])))
    scorer.load_state_dict(state_dict)
    return scorer.eval()
