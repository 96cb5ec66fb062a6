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

What is exported is not this module but its :meth:`RnnAutoencoder.for_export`
form, the same function with the decoder's algebra folded: the output
head feeds the next step's input gates, so ``W_ih (W_o h + b_o) + b_ih`` is
one matrix product of ``h``, the r and z gates add their input and hidden
parts into one matrix, and the head runs once over all the decoded states
after the loop. A step is then one MatMul and 12 small nodes (it was 52
nodes with three Gemms); the Loop's per-iteration cost dominated the
window's time on ONNX Runtime (docs/benchmarks.md has the figures).
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
                    why=("not int8: ONNX Runtime has no int8 GRU and the decoder's steps sit inside a Loop, which "
                         "dynamic int8 does not enter (1 MatMul quantized, the first step's, and scores then depend "
                         "on the batch); static int8 reaches only the few nodes outside it"))


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

    def for_export(self) -> FoldedDecoderAutoencoder:
        """The export form: the same function with fewer, larger operations per decoder step."""
        return FoldedDecoderAutoencoder(self)


class FoldedDecoderAutoencoder(nn.Module):
    """:class:`RnnAutoencoder` with the decoder folded into one product per step (export only).

    With gate pre-activations ``g = [r+z | input n | hidden n]`` (4H wide),
    step 0 (zero input) uses ``h @ W0 + b0`` with ``W0 = [W_hh,rz | 0 | W_hh,n]``
    and every later step ``h @ W + b`` with ``W = [(W_ih W_o + W_hh)_rz |
    (W_ih W_o)_n | W_hh,n]``; the outputs are ``W_o h_t + b_o`` over the
    stacked states. The products are formed in float64 and rounded once,
    so scores move by float32 rounding only (the export's parity check
    holds it to the trained module's). A window never meets another
    window's values: batch rows stay independent as before.
    """

    __constants__ = ["hidden"]  # a constant to TorchScript: the Split sizes export as constants

    def __init__(self, ae: RnnAutoencoder) -> None:
        super().__init__()
        self.encoder = ae.encoder
        h = ae.cell.hidden
        self.hidden = h
        with torch.no_grad():
            w_ih, b_ih = ae.cell.ih.weight.double(), ae.cell.ih.bias.double()  # [3H, F], [3H]
            w_hh, b_hh = ae.cell.hh.weight.double(), ae.cell.hh.bias.double()  # [3H, H], [3H]
            w_o, b_o = ae.out.weight.double(), ae.out.bias.double()  # [F, H], [F]
            w_fed = w_ih @ w_o  # the input gates of the next step, from this step's state
            b_fed = w_ih @ b_o + b_ih
            rz, n = slice(0, 2 * h), slice(2 * h, 3 * h)
            w_first = torch.cat([w_hh[rz], torch.zeros_like(w_hh[n]), w_hh[n]])
            b_first = torch.cat([b_ih[rz] + b_hh[rz], b_ih[n], b_hh[n]])
            w_next = torch.cat([w_fed[rz] + w_hh[rz], w_fed[n], w_hh[n]])
            b_next = torch.cat([b_fed[rz] + b_hh[rz], b_fed[n], b_hh[n]])
        self.register_buffer("w_first", w_first.t().float().contiguous())  # [H, 4H]
        self.register_buffer("b_first", b_first.float())
        self.register_buffer("w_next", w_next.t().float().contiguous())
        self.register_buffer("b_next", b_next.float())
        self.register_buffer("w_out", ae.out.weight.detach().t().contiguous())  # [H, F]
        self.register_buffer("b_out", ae.out.bias.detach().clone())

    def _step(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # torch.split with constant sizes exports as one Split node (chunk adds shape arithmetic)
        g_rz, i_n, h_n = torch.split(g, [2 * self.hidden, self.hidden, self.hidden], 1)
        r, z = torch.split(torch.sigmoid(g_rz), [self.hidden, self.hidden], 1)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)  # = (1 - z) * n + z * h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _seq, h_all = self.encoder(x)
        h = self._step(torch.matmul(h_all[-1], self.w_first) + self.b_first, h_all[-1])
        states: List[torch.Tensor] = [h]
        for _step in range(x.shape[1] - 1):
            h = self._step(torch.matmul(h, self.w_next) + self.b_next, h)
            states.append(h)
        y = torch.matmul(torch.stack(states, 1), self.w_out) + self.b_out  # [B, T, F]
        return y.flip(1)


def build_scorer(config: dict[str, Any], state_dict: dict[str, Any]) -> nn.Module:
    """The export-ready scorer: scaler -> autoencoder -> max over time of the per-step MSE."""
    from edgewatch.export.scoring import InputScaler, MaxStepReconstructionScorer

    cfg = RnnAeConfig(**config)
    scorer = MaxStepReconstructionScorer(RnnAutoencoder(cfg), InputScaler.identity(cfg.n_features))
    scorer.load_state_dict(state_dict)
    return scorer.eval()
