"""Training checkpoints: weights plus everything export needs, never a pickled module.

A checkpoint is one file written with ``torch.save`` of a plain dict::

    {"edgewatch_checkpoint": 1, "family": str, "config": JSON text,
     "card_fields": JSON text, "state_dict": {name: tensor},
     "calibration": tensor [N, *sample_shape] or None}

and read back with ``torch.load(weights_only=True)``, which refuses
anything but tensors and primitive containers, so a checkpoint from
elsewhere cannot run code. ``config`` and ``card_fields`` go through JSON
so that dataclasses (``ScoreStats``, ``Scaler``, ``DriftReference``) become
plain dicts and come back exactly as they were written.

* ``config``: what the family's ``build_scorer`` needs to construct its
  modules (sizes, window ...); see :mod:`edgewatch.models`.
* ``state_dict``: the state of the export-ready scorer (scaler included).
* ``card_fields``: every :class:`~edgewatch.contract.ModelCard` field except
  ``quantization`` (chosen at export): family, task, sample_shape,
  features, scaler, score, threshold, threshold_method, score_stats,
  trained_on, window, horizon, stride, decision, postprocess,
  drift_reference. :func:`card_from_fields` turns them into a card.
* ``calibration``: a small sample (at most a few hundred) of raw-unit
  held-out samples, used by export for static quantization and parity.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgewatch.contract import PREFIX, ModelCard, Quantization, to_plain
from edgewatch.errors import BadInput, BadModelFile, require_torch
from edgewatch.files import replacing

CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    family: str
    config: dict[str, Any]
    state_dict: dict[str, Any]
    card_fields: dict[str, Any]
    calibration: np.ndarray | None = None


def save_checkpoint(path: str | os.PathLike[str], family: str, config: Mapping[str, Any],
                    state_dict: Mapping[str, Any], card_fields: Mapping[str, Any],
                    calibration: np.ndarray | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename) and return its path.

    A crash mid-write leaves the previous checkpoint intact instead of a
    truncated file that fails at export time.
    """
    torch = require_torch()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "edgewatch_checkpoint": CHECKPOINT_VERSION,
        "family": str(family),
        "config": json.dumps(to_plain(dict(config))),
        "card_fields": json.dumps(to_plain(dict(card_fields))),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "calibration": None if calibration is None
        else torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32)),
    }
    with replacing(out) as tmp, tmp.open("wb") as fh:
        torch.save(payload, fh)
    return out


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``; refuse files that are not ours."""
    torch = require_torch()
    src = Path(path)
    if not src.is_file():
        raise BadInput(f"checkpoint {src} does not exist; train one with 'edgewatch train <family>'")
    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise BadModelFile(f"{src} is not a readable edgewatch checkpoint: "
                           f"{str(exc).splitlines()[0][:300]}") from exc
    if not isinstance(payload, dict) or "edgewatch_checkpoint" not in payload:
        raise BadModelFile(f"{src} is a torch file but not an edgewatch checkpoint "
                           "(train one with 'edgewatch train <family>')")
    if payload["edgewatch_checkpoint"] != CHECKPOINT_VERSION:
        raise BadModelFile(f"{src} has checkpoint version {payload['edgewatch_checkpoint']}, "
                           f"this edgewatch reads {CHECKPOINT_VERSION}: retrain it")
    calibration = payload.get("calibration")
    return Checkpoint(
        family=payload["family"],
        config=json.loads(payload["config"]),
        state_dict=dict(payload["state_dict"]),
        card_fields=json.loads(payload["card_fields"]),
        calibration=None if calibration is None else calibration.numpy(),
    )


def card_from_fields(card_fields: Mapping[str, Any], quantization: Quantization) -> ModelCard:
    """Build the validated model card from checkpoint card fields and the export's quantization.

    Goes through the card's own metadata parser, so a checkpoint can hold
    nothing that a model file could not.
    """
    fields = dict(card_fields)
    fields["quantization"] = Quantization(quantization).value
    props = {PREFIX + k: (v if isinstance(v, str) else json.dumps(to_plain(v))) for k, v in fields.items()}
    return ModelCard.from_props(props, source="checkpoint card fields")
