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

Export: fp32, plain tracing (no scripting). Dynamic int8
(``DynamicQuantizeLSTM``) was faster but picks its activation scale per
ONNX Runtime call, so one stream's absurd window moved every other
stream's score (:mod:`edgewatch.export.invariance` now refuses it). The
batch-invariant int8 form, ``--quantize unrolled``
(:mod:`edgewatch.export.unroll`: the LSTMs unrolled into int8 MatMuls
with fixed scales, parity 99.8 % on the shipped model), measured on a
2-core AMD EPYC (Zen 3, AVX2, no VNNI), CPU time per window, fp32 /
unrolled int8 / dynamic int8: batch 128: 128 / 112 / 110 µs (88 vs 135
for fp32 in a quieter run); batch 32, the agent's batch: 163 / 153 / 117
µs; batch 1: 0.36 / 1.1 / 0.26 ms a call (the unrolled graph's ~480 nodes
cost more than its arithmetic). At the agent's batch it gains about 7 %
and loses 3x at batch 1, where latency is decided, so fp32 ships: exact
(parity 100 %) and 5x PyTorch eager at batch 1.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from edgewatch.contract import Quantization
from edgewatch.export.scoring import InputScaler, ReconstructionScorer
from edgewatch.models import ExportSpec

FAMILY = "lstm-ae"
EXPORT = ExportSpec(quantization=Quantization.NONE, script=False)


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
