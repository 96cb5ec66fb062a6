"""MQTT as every part of edgewatch uses it: one broker connection, the public topics and payloads.

The agent, the fleet tools and the simulator all talk MQTT; what they share
lives here, so none of them imports another for it:

* :mod:`connection`: :class:`~connection.BrokerConnection` (TLS, login, reconnect, one paho client per
  broker) and :class:`~connection.Connections` (one per broker, shared by an agent's sinks, sources and
  fleet parts); :mod:`client` is paho's client as the connection drives it, imported only when a
  connection is made;
* :mod:`topics`: :class:`~topics.Topics`, the only spelling of ``PREFIX/AGENT/<kind>``;
* :mod:`payloads`: the fleet contract's messages (model, status, command), versioned.

Imports :mod:`edgewatch.errors` and :mod:`edgewatch.wire` only (docs/architecture.md).
"""
