"""The edge: an agent that scores live streams with an edgewatch model file (ONNX Runtime and NumPy, no torch).

Public names (imported on first use, so ``import edgewatch.agent.sources``
does not load the engine): :class:`Agent`, :class:`AgentOptions`,
:class:`RunSummary` (:mod:`.engine`), :class:`AgentConfig` (:mod:`.config`),
:func:`assemble` and :class:`Assembly` (:mod:`.assemble`),
:class:`ModelRuntime` (:mod:`.runtime`), :class:`ScoringModel` (:mod:`.model`).
``edgewatch/agent/README.md`` maps the folders.

The agent imports the layers below it only (docs/architecture.md): errors,
digests, files, accuracy, contract, wire, mqtt, numpy_models; never train,
export, models, fleet, data or eval, and torch nowhere (a test runs it with
torch blocked). paho, ssl, prometheus_client and asyncio load only when a
flag needs them (tests/agent/test_imports.py).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"Agent": "engine", "AgentOptions": "engine", "RunSummary": "engine", "AgentConfig": "config",
           "assemble": "assemble", "Assembly": "assemble", "ModelRuntime": "runtime", "ScoringModel": "model"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
