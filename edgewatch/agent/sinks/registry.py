"""The sink registry: ``--sink`` scheme -> factory. A new kind of sink is one module and one ``@register``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from edgewatch.agent.sinks.base import Sink, SinkConfigError, SinkContext, SinkSpec
from edgewatch.agent.urls import port_problem

Factory = Callable[[SinkSpec, SinkContext], Sink]

_FACTORIES: dict[str, Factory] = {}
_FORMS: dict[str, str] = {}  # scheme -> how its --sink is written, for the error that lists them


def register(*schemes: str, form: str) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(spec, context) -> Sink`` builds the sinks of these schemes; ``form`` shows the URL."""
    def add(factory: Factory) -> Factory:
        for scheme in schemes:
            if scheme in _FACTORIES and _FACTORIES[scheme] is not factory:
                raise ValueError(f"sink scheme {scheme!r} is registered twice")
            _FACTORIES[scheme] = factory
            _FORMS[scheme] = form
        return factory
    return add


def schemes() -> list[str]:
    return sorted(_FACTORIES)


def forms() -> list[str]:
    """How each kind of sink is written on the command line (``jsonl:FILE``, ...)."""
    return list(dict.fromkeys(_FORMS[s] for s in schemes()))


def scheme_of(url: str) -> str:
    """``stdout`` / ``-`` -> ``stdout``, ``jsonl:a.jsonl`` -> ``jsonl``, ``mqtt://h/p`` -> ``mqtt``."""
    if url in ("-", "stdout"):
        return "stdout"
    head, sep, _ = url.partition(":")
    return head.lower() if sep else ""


def parse_spec(spec: str | Mapping[str, Any]) -> SinkSpec:
    """A ``--sink`` string, or a TOML ``[[sink]]`` table with ``url`` and the sink's keys."""
    if isinstance(spec, Mapping):
        table = {str(k): v for k, v in spec.items()}
        url = table.pop("url", None)
        if not isinstance(url, str) or not url:
            raise SinkConfigError(f"a [[sink]] table needs url = \"...\" (got keys {sorted(spec)})")
    elif isinstance(spec, str):
        url, table = spec.strip(), {}
    else:
        raise SinkConfigError(f"a sink is a URL string or a table with url = ..., not {spec!r}")
    return SinkSpec(url=url, scheme=scheme_of(url), options=table)


def url_of(spec: str | Mapping[str, Any]) -> str:
    """The URL of a ``--sink`` string or ``[[sink]]`` table ("" for a table without one)."""
    return spec if isinstance(spec, str) else str(spec.get("url", ""))


def make_sink(spec: str | Mapping[str, Any], context: SinkContext | None = None) -> Sink:
    """Build a sink from its ``--sink`` form or table; SinkConfigError names the known forms for an unknown one."""
    parsed = parse_spec(spec)
    factory = _FACTORIES.get(parsed.scheme)
    if factory is None:
        raise SinkConfigError(f"unknown sink {parsed.url!r}: use {', '.join(forms())}")
    problem = port_problem(parsed.url)
    if problem is not None:
        raise SinkConfigError(f"sink {problem}")
    return factory(parsed, context or SinkContext())


def no_options(spec: SinkSpec) -> None:
    """For sinks that take no keys: refuse a table's or query's keys rather than ignore them."""
    if spec.options:
        raise SinkConfigError(f"sink {spec.url!r} takes no settings besides url (got {sorted(spec.options)})")
