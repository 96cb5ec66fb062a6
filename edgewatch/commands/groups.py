"""Click groups whose subcommands load on use, and how an edgewatch error becomes an exit code.

Subcommands are ``"module:attribute"`` strings imported only when run, so
``edgewatch agent run`` never pays for (or needs) the training stack and
``--help`` stays fast. The root command (:mod:`edgewatch.cli`) and every
subcommand group use :class:`LazyGroup`.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from edgewatch.commands.early_signals import EARLY
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

    def resolve_command(self, ctx: click.Context, args: list[str]):  # noqa: ANN201
        """As click's; a command or group that does not take the held stop signals (``takes_stop_signals``) gets
        Python's handling back before it runs (:mod:`.early_signals`).

        A group is handed them back too unless it is marked (``agent``, on the way to ``agent run``): a plain
        click group (``eval``) resolves its commands without this method, and a group run without a
        subcommand (``drift --reference ...``) runs itself, so either ran holding them and a Ctrl-C waited
        for its end."""
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and not getattr(cmd, "takes_stop_signals", False):
            EARLY.release()
        return name, cmd, rest

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


def lazy_group(name: str, help: str, lazy: dict[str, str], epilog: str | None = None) -> click.Group:
    """A subcommand group (``train``, ``export`` ...) whose commands load on use; ``epilog``: its examples."""
    return LazyGroup(name=name, help=help, lazy=lazy, epilog=epilog)
