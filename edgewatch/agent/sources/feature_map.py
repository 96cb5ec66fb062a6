"""The plant's names for the model's features, as a source's settings give them (``columns``, ``nodes``, ``registers``).

A model fitted on a historian's CSV knows its features by the column
headers (``PUMP01.FLOW_M3H``); the live server calls the same sensors
otherwise (an OPC UA variable ``Flow``, a topic level ``DischargePressure``).
The name rule of :mod:`.feature_names` bridges spelling, not different
words, so each source takes ``columns``: the source's names for the model's
features, in the model's order, as the CSV replay always has
(``?columns=Flow,DischargePressure,MotorCurrent``, or a TOML list).

A feature table in TOML (``nodes = { ... }``, ``registers = { ... }``) keyed
by a historian name with a dot is a trap: ``PUMP01.FLOW_M3H = "..."``
written bare is TOML's dotted key, a table ``PUMP01`` holding ``FLOW_M3H``.
:func:`feature_table` joins such keys back with the dot (the name the user
typed) so the table means what it says.
"""

from __future__ import annotations

from typing import Any

from edgewatch.agent.sources.base import SourceConfigError


def parse_columns(source: str, value: Any, features: list[str]) -> list[str] | None:
    """The source's names for ``features``, in their order (``A,B,C`` or a list), or None when not given."""
    if value is None:
        return None
    names = [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else \
        [c.strip() for c in str(value).split(",")]
    if len(names) != len(features) or not all(names) or len(set(names)) != len(names):
        raise SourceConfigError(f"source {source!r}: columns must name {len(features)} different names, one for "
                                f"each of the model's features in its order {features} (got {names})")
    return names


def columns_example(features: list[str], names: dict[str, str] | None = None) -> str:
    """``?columns=`` to fill in: a feature's known name, else ``<name for FEATURE>``, in the model's order."""
    names = names or {}
    return ",".join(names.get(f, f"<name for {f}>") for f in features)


def feature_table(source: str, key: str, value: Any, features: list[str]) -> dict[str, Any]:
    """A ``{feature: ...}`` TOML table checked against the model's features (dotted bare keys joined back)."""
    if not isinstance(value, dict):
        raise SourceConfigError(f"source {source!r}: {key} must be a table mapping every feature {features} "
                                f"(got {value!r})")
    flat = _flatten(value)
    missing = [f for f in features if f not in flat]
    extra = sorted(set(flat) - set(features))
    if missing or extra:
        raise SourceConfigError(
            f"source {source!r}: {key} must map every feature {features}; missing {missing}"
            + (f", not features of the model {extra}" if extra else "")
            + ". Write each feature's name in quotes as the key, as the model spells it "
              f"({key} = {{ {', '.join(f'{_quoted(f)} = ...' for f in features[:3])}"
            + (", ..." if len(features) > 3 else "") + " })")
    return {f: flat[f] for f in features}


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
