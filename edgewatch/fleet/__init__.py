"""The fleet: many agents, one MQTT topic contract (:mod:`edgewatch.fleet.topics`), the operator's tools."""
