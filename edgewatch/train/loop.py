"""A generic training loop every family reuses.

:func:`fit` trains any ``nn.Module`` on in-memory tensors: mini-batches
shuffled by a seeded generator, Adam, an ``ExponentialLR`` schedule
**stepped once per batch** (``lr_gamma=1.0`` switches it off), a tqdm bar
showing the loss, and optional validation with early stopping that restores
the best weights. Targets default to the inputs (autoencoders); a family
with another objective passes ``targets`` and/or its own ``loss_fn``.
``input_noise > 0`` trains a denoising model: Gaussian noise is added to
each training batch's inputs (not to targets, not to validation), so the
model cannot learn the identity and reproduce noise it should flag.

Determinism: call :func:`seed_everything` (``fit`` does it with
``config.seed``). ``config.threads`` sets ``torch.set_num_threads`` for the
run (1 by default: the machines are shared).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgewatch.errors import BadInput, require_torch

if TYPE_CHECKING:
    import torch


@dataclass
class TrainConfig:
    """Optimisation settings; fields are the constructor's arguments so configs round-trip."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    lr_gamma: float = 0.9995  # ExponentialLR factor, applied after every batch
    weight_decay: float = 0.0
    patience: int = 0  # early stopping: epochs without validation improvement; 0 = off
    min_delta: float = 0.0  # improvement smaller than this does not count
    clip_grad_norm: float | None = None
    input_noise: float = 0.0  # std of Gaussian noise added to training inputs (denoising); targets stay clean
    seed: int = 0
    threads: int = 1
    progress: bool = True
    desc: str = "train"


@dataclass
class TrainResult:
    train_loss: list[float] = field(default_factory=list)  # mean per epoch
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1  # index into the lists; -1 without validation
    epochs_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    final_lr: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run can be repeated exactly."""
    torch = require_torch()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fit(model: torch.nn.Module, inputs: torch.Tensor, config: TrainConfig | None = None, *,
        targets: torch.Tensor | None = None,
        val_inputs: torch.Tensor | None = None, val_targets: torch.Tensor | None = None,
        loss_fn: Callable | None = None) -> TrainResult:
    """Train ``model`` in place and return the loss history.

    Inputs are whole tensors in memory (edge models train on at most a few
    hundred thousand small windows). Validation, when given, runs after each
    epoch in eval mode; with ``patience > 0`` training stops after that many
    epochs without improvement and the best weights are put back.
    """
    torch = require_torch()
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    if len(inputs) == 0:
        raise BadInput("no training samples: the data is shorter than one window")
    if targets is not None and len(targets) != len(inputs):
        raise BadInput(f"{len(inputs)} inputs but {len(targets)} targets")
    loss_fn = loss_fn or torch.nn.MSELoss()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    result = TrainResult()
    best = math.inf
    best_state = None
    stale = 0
    n = len(inputs)
    n_batches = math.ceil(n / cfg.batch_size)
    started = time.perf_counter()
    bar = tqdm(total=cfg.epochs * n_batches, desc=cfg.desc, unit="batch", disable=not cfg.progress,
               dynamic_ncols=True, leave=True)
    try:
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for b in range(n_batches):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                xb = inputs[idx]
                yb = xb if targets is None else targets[idx]
                if cfg.input_noise > 0:
                    xb = xb + cfg.input_noise * torch.randn(xb.shape, generator=gen, dtype=xb.dtype)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                if not torch.isfinite(loss):
                    raise BadInput(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}: "
                                   "lower the learning rate or check the data for extreme values")
                loss.backward()
                if cfg.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(idx)
                bar.update(1)
                if b % 10 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3g}")
            result.train_loss.append(total / n)
            result.epochs_run = epoch + 1
            if val_inputs is not None and len(val_inputs):
                val = evaluate(model, val_inputs, val_targets, loss_fn, cfg.batch_size)
                result.val_loss.append(val)
                bar.set_postfix(epoch=epoch + 1, loss=f"{result.train_loss[-1]:.3g}", val=f"{val:.3g}")
                if val < best - cfg.min_delta:
                    best, stale, result.best_epoch = val, 0, epoch
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                    if cfg.patience and stale >= cfg.patience:
                        result.stopped_early = True
                        break
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    result.final_lr = float(optimizer.param_groups[0]["lr"])
    return result


def evaluate(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None,
             loss_fn: Callable | None = None, batch_size: int = 512) -> float:
    """Mean loss of ``model`` over a data set, in eval mode and without gradients."""
    torch = require_torch()
    loss_fn = loss_fn or torch.nn.MSELoss()
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            xb = inputs[start:start + batch_size]
            yb = xb if targets is None else targets[start:start + batch_size]
            total += loss_fn(model(xb), yb).item() * len(xb)
    return total / max(1, len(inputs))
