"""The sink registry: ``--sink`` scheme -> factory. A new kind of sink is one module and one ``@register``."""

from __future__ import annotations

from collections.abc import Callable

from edgewatch.agent.sinks.base import Sink, SinkConfigError, SinkContext

Factory = Callable[[str, SinkContext], Sink]

_FACTORIES: dict[str, Factory] = {}
_FORMS: dict[str, str] = {}  # scheme -> how its --sink is written, for the error that lists them


def register(*schemes: str, form: str) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(url, context) -> Sink`` builds the sinks of these schemes; ``form`` shows the URL."""
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


def make_sink(url: str, context: SinkContext | None = None) -> Sink:
    """Build a sink from its ``--sink`` form; SinkConfigError names the known forms for an unknown one."""
    factory = _FACTORIES.get(scheme_of(url))
    if factory is None:
        raise SinkConfigError(f"unknown sink {url!r}: use {', '.join(forms())}")
    return factory(url, context or SinkContext())
