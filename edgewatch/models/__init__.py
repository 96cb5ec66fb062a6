"""Model families and how to find them by name.

A *family* is a module ``edgewatch.models.<name>`` (``-`` in the name becomes
``_``: ``lstm-ae`` -> ``edgewatch.models.lstm_ae``). Every family module
exposes two names, which is all ``edgewatch export onnx`` needs, so the
exporter has no per-family branches:

``build_scorer(config: dict, state_dict: dict) -> torch.nn.Module``
    Rebuild the *export-ready scorer* from a checkpoint: a module mapping a
    raw-unit batch ``x [B, *sample_shape]`` (float32) to
    ``(score [B], feature_error [B, F])`` with the input scaler and the score
    inside (see :mod:`edgewatch.export.scoring`). The checkpoint's
    ``state_dict`` is the state of that scorer (scaler buffers included),
    so ``build_scorer`` only constructs the modules from ``config`` and
    loads the state.

``EXPORT: ExportSpec``
    The family's preferred export settings: the quantization that measured
    best for it (and what to use when that one fails parity), and whether it
    must be ``torch.jit.script``-ed before export (autoregressive decoders,
    which must become an ONNX ``Loop``).

This package's ``__init__`` imports neither torch nor onnx; the family
modules do (they are train/export-time only).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from edgewatch.contract import Quantization
from edgewatch.errors import BadInput, BadModelFile

__all__ = ["ExportSpec", "family_module", "scorer_from_checkpoint"]


@dataclass(frozen=True)
class ExportSpec:
    """A family's default export settings (used by ``--quantize auto``)."""

    quantization: Quantization = Quantization.NONE
    script: bool = False
    # what --quantize auto exports instead when ``quantization`` fails the parity check (a small model
    # whose threshold sits among many scores loses decisions to int8 rounding); None: fail
    fallback: Quantization | None = None
    why: str = ""  # the measured reason for ``quantization``, printed by the export (why not int8, for fp32)


def family_module(name: str) -> ModuleType:
    """Import the module of family ``name``, failing with the known names when absent."""
    module_name = "edgewatch.models." + name.strip().replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the family exists but one of its imports is missing
        raise BadInput(f"unknown model family {name!r} (no module {module_name}); "
                       f"known families: {', '.join(known_families()) or 'none'}") from exc
    for attr in ("build_scorer", "EXPORT"):
        if not hasattr(module, attr):
            raise BadInput(f"model family {name!r} ({module_name}) does not define {attr}; "
                           "see edgewatch/models/__init__.py for what a family provides")
    return module


def scorer_from_checkpoint(family: str, config: dict[str, Any], state_dict: dict[str, Any], what: str = "") -> Any:
    """The family's export-ready scorer from a checkpoint's config and weights.

    A checkpoint written by another version of a family (a score head with
    more tests, a layer of another size) does not fit the modules this
    code builds; torch then raises a RuntimeError listing missing,
    unexpected and mis-sized tensors. That is a wrong model file, said as
    one: BadModelFile (exit 3) with torch's list, not a traceback.
    """
    module = family_module(family)
    try:
        return module.build_scorer(config, state_dict)
    except RuntimeError as exc:
        if "state_dict" not in str(exc):
            raise
        detail = " ".join(str(exc).split())
        raise BadModelFile(f"{what or 'the checkpoint'} does not fit this version's {family} model "
                           f"(made by another edgewatch version? retrain it): {detail[:600]}") from None


def known_families() -> list[str]:
    """Family names present in this installation (for error messages and --help)."""
    import pkgutil
    from pathlib import Path

    here = Path(__file__).resolve().parent
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_"))
