"""The source registry: URL scheme -> factory. A new protocol is one module and one ``@register``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgewatch.agent.sources.base import Source, SourceConfigError, SourceContext, SourceSpec
from edgewatch.agent.urls import port_problem

Factory = Callable[[SourceSpec, SourceContext], Source]

_FACTORIES: dict[str, Factory] = {}


def register(*schemes: str) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(spec, context) -> Source`` builds the sources of these URL schemes."""
    def add(factory: Factory) -> Factory:
        for scheme in schemes:
            if scheme in _FACTORIES and _FACTORIES[scheme] is not factory:
                raise ValueError(f"source scheme {scheme!r} is registered twice")
            _FACTORIES[scheme] = factory
        return factory
    return add


def schemes() -> list[str]:
    return sorted(_FACTORIES)


def scheme_of(url: str) -> str:
    """``ws://x`` -> ``ws``, ``replay:f.csv`` -> ``replay``, ``-`` / ``stdin`` -> ``stdin``."""
    if url in ("-", "stdin"):
        return "stdin"
    head, sep, _ = url.partition(":")
    return head.lower() if sep else ""


def parse_spec(spec: str | Mapping[str, Any]) -> SourceSpec:
    """A ``--source`` string, or a TOML table with ``url`` and protocol keys."""
    if isinstance(spec, Mapping):
        table = {str(k): v for k, v in spec.items()}
        url = table.pop("url", None)
        if not isinstance(url, str) or not url:
            raise SourceConfigError(f"a [[source]] table needs url = \"...\" (got keys {sorted(spec)})")
    elif isinstance(spec, str):
        url, table = spec.strip(), {}
    else:
        raise SourceConfigError(f"a source is a URL string or a table with url = ..., not {spec!r}")
    return SourceSpec(url=url, scheme=scheme_of(url), options=table)


def make_source(spec: str | Mapping[str, Any], features: Sequence[str], idle_timeout: float = 10.0,
                **context: Any) -> Source:
    """Build a source from its ``--source`` form (or TOML table); ``context`` fills :class:`SourceContext`."""
    parsed = parse_spec(spec)
    factory = _FACTORIES.get(parsed.scheme)
    if factory is None:
        raise SourceConfigError(f"unknown source {parsed.url!r}: the schemes are {', '.join(schemes())} "
                                "(ws://host:port/path, replay:FILE.csv[?rate=HZ], stdin, mqtt://host:port/topic or "
                                "mqtt://host:port/plant/{stream}/{feature}, "
                                "opcua://host:port/Objects/2:Name, modbus://host:port/unit?registers=...)")
    problem = port_problem(parsed.url)
    if problem is not None:
        raise SourceConfigError(f"source {problem}")
    ctx = SourceContext(features=list(features), idle_timeout=idle_timeout, **context)
    return factory(parsed, ctx)
