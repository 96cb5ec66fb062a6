"""The exceptions edgewatch raises at its boundaries.

Inside the streaming loop nothing is raised for bad data: it is counted and
skipped. These are for the places where continuing would be wrong: a model
file that is not ours, a configuration that cannot work, a missing extra.
Every message says what to do next.
"""

from __future__ import annotations

from pathlib import Path


class EdgewatchError(Exception):
    """Base class: catch this to handle any edgewatch failure."""


class BadModelFile(EdgewatchError):
    """The file is not an edgewatch model, is damaged, or does not fit the data."""


class BadOverride(EdgewatchError):
    """A run-time value (command line, config file) contradicts the model file, e.g. --k above its n.

    A usage error (exit 2) at start; a candidate model it contradicts is refused.
    """


class UntrustedModel(BadModelFile):
    """The model is not signed by a trusted key, or was changed after it was signed."""


class BadInput(EdgewatchError):
    """Input data cannot be used (wrong shape, non-finite values, unreadable file)."""


class NotCalibrated(EdgewatchError):
    """A threshold or score statistics are needed but were never computed."""


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to this installation.

    Why not ``pip install 'edgewatch[extra]'``: edgewatch is not on PyPI,
    and that name there would fetch somebody else's package. From a
    checkout (pyproject.toml beside the package) the command names it.
    """
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        return f"pip install -e '{root}[{extra}]'"
    return f"pip install 'edgewatch-<version>-py3-none-any.whl[{extra}]' (the wheel this edgewatch came from)"


class MissingExtra(EdgewatchError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str = "train") -> None:
        super().__init__(
            f"{module!r} is needed for this command but is not installed; "
            f"install it with: {install_hint(extra)}"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str):  # noqa: ANN201 - returns the module
    """Import an optional library or fail with the extra that brings it (exit 6 at the CLI).

    For the libraries the base install leaves out (scipy, scikit-learn,
    matplotlib, torch): import them through this, inside the function that
    needs them, never at module top, so that the agent's install stays small.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(module.split(".")[0], extra) from exc


def require_torch():  # noqa: ANN201 - returns the torch module
    """Import torch or fail with the install hint; never import it at module top."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised in the torch-absent test
        raise MissingExtra("torch") from exc
    return torch
