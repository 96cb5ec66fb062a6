"""An agent's retained status on ``PREFIX/AGENT/status``: ``online`` while connected, its last will ``offline``.

One publisher per status topic and broker connection
(:meth:`~edgewatch.mqtt.connection.BrokerConnection.status_publisher`), so the
MQTT sink and the fleet member of one agent never publish two statuses on one
topic: the sink's publisher says online/offline with a minimal payload, and
the fleet member, when there is one, replaces :attr:`StatusPublisher.payload`
with the full status of the fleet contract (docs/fleet.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgewatch.mqtt.payloads import minimal_status, offline_will

if TYPE_CHECKING:
    from edgewatch.mqtt.connection import BrokerConnection
    from edgewatch.mqtt.topics import Topics

log = logging.getLogger(__name__)


class StatusPublisher:
    """Sets the last will (before the connection connects) and publishes the status on every connect."""

    def __init__(self, connection: BrokerConnection, topics: Topics) -> None:
        self.connection = connection
        self.topic = topics.status
        agent = topics.agent_id
        self.payload: Callable[[str], bytes] = lambda state: minimal_status(agent, state)
        self._lock = threading.Lock()  # an "online" from another thread never lands after the final "offline"
        self._closed = False
        connection.set_will(self.topic, offline_will(agent), qos=1, retain=True)
        connection.on_connect(self.publish)

    def publish(self, state: str = "online") -> Any:
        """Publish the retained status now (paho's info, or None when it could not be built or queued)."""
        from edgewatch.mqtt.connection import publish_error, published

        with self._lock:
            if self._closed:
                return None
            if state == "offline":
                self._closed = True
            try:
                payload = self.payload(state)
            except Exception:  # a status that cannot be built must not stop the connection
                log.exception("building the MQTT status failed")
                return None
            info = self.connection.publish(self.topic, payload, qos=1, retain=True)
        if not published(info, queued=True):
            log.warning("MQTT status %r not queued: %s", state, publish_error(info))
            return None
        return info

    def close(self, timeout: float = 2.0) -> None:
        """Say "offline" (once, whoever closes first) and wait up to ``timeout`` for the broker to take it.

        Without a connection there is no goodbye: the broker publishes the last will when it notices; nor
        is there a wait on a connected broker that has stopped answering
        (:attr:`~edgewatch.mqtt.connection.BrokerConnection.answering`).
        """
        from edgewatch.mqtt.connection import published

        if not self.connection.connected:
            with self._lock:
                self._closed = True
            return
        info = self.publish("offline")
        if info is not None and published(info):
            self.connection.wait_published(info, timeout)  # not on a broker that stopped answering
