"""MQTT as every part of edgewatch uses it: the public topic layout (:mod:`edgewatch.mqtt.topics`).

The agent, the fleet tools and the simulator all talk MQTT; what they share
lives here, so none of them imports another for it. Imports nothing of
edgewatch above ``errors`` (docs/architecture.md).
"""
