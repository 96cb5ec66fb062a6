"""The fleet: many agents, one MQTT topic contract (:mod:`edgewatch.mqtt.payloads`), the operator's tools."""
