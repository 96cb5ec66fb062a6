"""``--config agent.toml``: the same settings as the command-line flags, from a file.

Keys are the long flag names with dashes or underscores (``model``,
``source``, ``sink``, ``mqtt-username``, ``metrics`` …); repeatable flags
take a list. A flag given on the command line wins over the file. Unknown
keys are refused, so a misspelt setting cannot be silently ignored::

    model = "/var/lib/edgewatch/equipment-lstm-ae.onnx"
    source = ["ws://10.0.0.5:9000/"]
    sink = ["mqtt://broker.local:1883/plant1"]
    agent-id = "press-7"
    metrics = "127.0.0.1:9108"
    log-json = true

Sections are allowed for readability and are flattened with their name as a
prefix: ``[mqtt] username = "x"`` is ``mqtt-username``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

from edgewatch.errors import BadInput


class ConfigError(BadInput):
    """The config file cannot be read or names a setting that does not exist."""


def read_config(path: str | Path) -> dict[str, Any]:
    """The file's settings, flattened, with keys in flag form (``mqtt-username``)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[_flag(f"{key}-{sub}")] = v
        else:
            flat[_flag(key)] = value
    return flat


def _flag(key: str) -> str:
    return key.strip().lower().replace("_", "-")


def to_default_map(command: click.Command, settings: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Map flag-named settings onto the command's parameter names (click's ``default_map``)."""
    by_flag: dict[str, click.Parameter] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("--"):
                by_flag[opt[2:]] = param
    unknown = sorted(k for k in settings if k not in by_flag or k == "config")
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {unknown}; known: {sorted(set(by_flag) - {'config'})}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        param = by_flag[key]
        if param.multiple and not isinstance(value, list):
            value = [value]
        if key in param.secondary_opts:  # e.g. no-model-topic = true
            value = not value
        out[param.name] = value  # type: ignore[index]
    return out


def load_into_context(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback for an eager ``--config``: the file's settings become the defaults."""
    if value:
        settings = read_config(value)
        try:
            default_map = to_default_map(ctx.command, settings, source=str(value))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=_param) from exc
        ctx.default_map = {**(ctx.default_map or {}), **default_map}
    return value
