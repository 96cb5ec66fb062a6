"""Where measurements come from: one registry of sources keyed by URL scheme.

``ws``/``wss`` (:mod:`.websocket`), ``replay`` (:mod:`.replay`), ``stdin``
(:mod:`.stdin`), ``mqtt``/``mqtts`` (:mod:`.mqtt`), ``opcua`` (:mod:`.opcua`),
``modbus`` (:mod:`.modbus`). Each module registers its factory with
:func:`register`; protocol libraries (asyncua, pymodbus) are imported only
when such a source is built, so the base install runs without them.

Every source names itself by its URL without login or query, reports bad
input as a :class:`~edgewatch.agent.sources.parsing.BadReason` item (counted in
``edgewatch_bad_messages_total{reason}``) and a reconnect as a RESET item
(``edgewatch_source_reconnects_total{source}``, the source's windows reset).
"""

from edgewatch.agent.sources import modbus, mqtt, opcua, replay, stdin, websocket  # noqa: F401 - they register
from edgewatch.agent.sources.base import (Backoff, Item, Kind, Source, SourceConfigError, SourceContext,
                                          SourceSpec)
from edgewatch.agent.sources.registry import make_source, parse_spec, register, schemes
from edgewatch.agent.sources.replay import ReplaySource
from edgewatch.agent.sources.stdin import StdinSource
from edgewatch.agent.sources.websocket import WebSocketSource

__all__ = ["Backoff", "Item", "Kind", "ReplaySource", "Source", "SourceConfigError", "SourceContext", "SourceSpec",
           "StdinSource", "WebSocketSource", "make_source", "parse_spec", "register", "schemes"]
