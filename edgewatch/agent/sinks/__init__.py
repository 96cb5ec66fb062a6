"""Where alert events go: one registry of sinks keyed by ``--sink`` scheme, like the sources.

``stdout`` (:mod:`.stdout`), ``jsonl:FILE`` (:mod:`.jsonl`),
``mqtt://`` / ``mqtts://`` (:mod:`.mqtt`, spooled on disk by :mod:`.spool`
until the broker's PUBACK), ``http[s]://`` webhooks (:mod:`.webhook`) and
``alertmanager[s]://`` (:mod:`.alertmanager`), both spooled until a 2xx by
:mod:`.http_delivery`, and ``sparkplug[s]://`` (:mod:`.sparkplug`, a Sparkplug B
edge node, one device per stream); :class:`MemorySink` (:mod:`.memory`) for an agent
embedded in Python code. Each module registers its factory with
:func:`register`; a new kind of sink is one module with one ``@register``
and one line below. Importing this package imports no network library:
paho is imported when an MQTT sink connects, http.client and ssl
when an HTTP sink is built.

A sink takes plain dict events (:mod:`edgewatch.agent.events`) and must not
raise for a delivery failure it can recover from. A sink with an
``on_batch(view)`` method is also subscribed to the agent's batches by
``assemble`` (Sparkplug's ``anomaly_score`` follows every scored window), and its
``on_forget(streams)``, if it has one, to the streams the agent drops. Sinks may import the
agent's events, :mod:`edgewatch.mqtt` and :mod:`edgewatch.wire`; never the
engine, the sources or the lifecycle.
"""

from edgewatch.agent.sinks import alertmanager, jsonl, mqtt, sparkplug, stdout, webhook  # noqa: F401 - they register
from edgewatch.agent.sinks.base import Sink, SinkConfigError, SinkContext, SinkSpec
from edgewatch.agent.sinks.jsonl import JsonlSink
from edgewatch.agent.sinks.memory import MemorySink
from edgewatch.agent.sinks.registry import forms, make_sink, register, scheme_of, schemes, url_of
from edgewatch.agent.sinks.stdout import StdoutSink

__all__ = ["JsonlSink", "MemorySink", "Sink", "SinkConfigError", "SinkContext", "SinkSpec", "StdoutSink", "forms",
           "make_sink", "register", "scheme_of", "schemes", "url_of"]
