"""RNN autoencoder (system S3): GRU encoder, autoregressive GRU decoder.

The encoder (``nn.GRU``) compresses a window into its last hidden state;
the decoder starts from that state and a zero input and feeds each step
its own previous output, producing the window in reverse order (the most
recent step first, as in Malhotra et al.'s EncDec-AD), which is easier to
learn than the forward order. Because the decoder never sees the input,
a scaled segment cannot be copied through: it shows as a large error.

The decoder cell is a GRU written with two ``nn.Linear`` layers (the
gates by hand) rather than ``nn.GRUCell``: compiled with
``torch.jit.script`` and exported with ``dynamo=False`` it becomes one
ONNX ``Loop`` (fast to export, small graph), where the dynamo exporter
unrolls the loop over all steps and ``nn.GRUCell`` fails under scripting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, List

import torch
from torch import nn

from edgewatch.contract import Quantization
from edgewatch.models import ExportSpec

FAMILY = "rnn-ae"
# script=True: the autoregressive decoder must become an ONNX Loop (docs/families.md)
EXPORT = ExportSpec(quantization=Quantization.NONE, script=True,
                    why=("not int8: ONNX Runtime has no int8 GRU and the decoder's MatMuls sit inside a Loop, which "
                         "dynamic int8 does not enter (0 nodes quantized); static int8 reaches only the few nodes "
                         "outside it"))


@dataclass
class RnnAeConfig:
    """Sizes of the network; round-trips through a checkpoint's ``config``."""

    window: int = 100
    n_features: int = 1
    hidden: int = 64
    layers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GruCell(nn.Module):
    """One GRU step with PyTorch's gate equations, scriptable and exportable as a Loop body."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.ih = nn.Linear(n_in, 3 * hidden)
        self.hh = nn.Linear(hidden, 3 * hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gi = self.ih(x)
        gh = self.hh(h)
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h


class RnnAutoencoder(nn.Module):
    """Maps a scaled window ``[B, T, F]`` to its reconstruction ``[B, T, F]``."""

    def __init__(self, cfg: RnnAeConfig) -> None:
        super().__init__()
        self.n_features = cfg.n_features
        self.encoder = nn.GRU(cfg.n_features, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.cell = GruCell(cfg.n_features, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _seq, h_all = self.encoder(x)
        h = h_all[-1]
        y = torch.zeros(x.shape[0], self.n_features, dtype=x.dtype, device=x.device)
        outs: List[torch.Tensor] = []
        for _step in range(x.shape[1]):
            h = self.cell(y, h)
            y = self.out(h)
            outs.append(y)
        # Decoded most-recent-first: flip back to the input's time order.
        return torch.stack(outs, 1).flip(1)


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer: scaler -> autoencoder -> max over time of the per-step MSE."""
    from edgewatch.export.scoring import InputScaler, MaxStepReconstructionScorer

    cfg = RnnAeConfig(**config)
    scorer = MaxStepReconstructionScorer(RnnAutoencoder(cfg), InputScaler.identity(cfg.n_features))
    scorer.load_state_dict(state_dict)
    return scorer.eval()
