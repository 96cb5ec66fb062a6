"""The ``edgewatch`` command.

Subcommands are imported only when used, so that ``edgewatch agent run``
never pays for (or needs) the training stack, and ``--help`` stays fast.
Each subcommand lives in ``edgewatch/commands/<name>.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from edgewatch import __version__
from edgewatch.errors import BadInput, BadModelFile, BadOverride, EdgewatchError, MissingExtra, NotCalibrated


class LazyGroup(click.Group):
    """A click group whose subcommands are ``"module:attribute"`` strings."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        present = {n for n, target in self.lazy.items() if importlib.util.find_spec(target.split(":")[0])}
        return sorted(set(super().list_commands(ctx)) | present)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except EdgewatchError as exc:
            raise CommandFailed(exc) from exc


class CommandFailed(click.ClickException):
    """An :class:`EdgewatchError` shown as ``error: ...`` with its documented exit code."""

    def __init__(self, exc: EdgewatchError) -> None:
        super().__init__(str(exc))
        self.exit_code = exit_code_for(exc)


def exit_code_for(exc: BaseException) -> int:
    """Exit codes, documented in the README: 0 ok, 1 failure, 2 usage, 3 bad model file,
    4 bad input data, 5 not calibrated, 6 missing optional dependency."""
    for cls, code in ((BadOverride, 2), (BadModelFile, 3), (BadInput, 4), (NotCalibrated, 5), (MissingExtra, 6)):
        if isinstance(exc, cls):
            return code
    return 1


def lazy_group(name: str, help: str, lazy: dict[str, str]) -> click.Group:
    """A subcommand group (``train``, ``export`` ...) whose commands load on use."""
    return LazyGroup(name=name, help=help, lazy=lazy)


C = "edgewatch.commands."

main = LazyGroup(
    name="edgewatch",
    help="Anomaly detection next to the equipment: train, export to ONNX, run the agent.",
    lazy={
        "simulate": C + "simulate:simulate",
        "fit": C + "fit:command",
        "train": C + "train:train",
        "export": C + "export:export",
        "agent": C + "agent:agent",
        "data": C + "data:data",
        "score": C + "score:score",
        "eval": C + "eval:eval_group",
        "drift": C + "drift:drift",
        "plot": C + "plot:plot",
        "bench": C + "bench:bench",
        "demo": C + "demo:demo",
        "model": C + "model:model",
        "fleet": C + "fleet:fleet",
    },
)
main = click.version_option(__version__, package_name="edgewatch")(main)
main = click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).",
                    expose_value=False, is_eager=True,
                    callback=lambda ctx, p, v: _setup_logging(v))(main)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
