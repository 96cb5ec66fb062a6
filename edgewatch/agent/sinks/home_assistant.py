"""``--ha-discovery``: each stream appears in Home Assistant as a device with a problem sensor and a score.

On the fleet broker (``--fleet-broker``, or the first MQTT sink's), for
every stream the agent scores, retained and QoS 1 (topics spelled by
:class:`~edgewatch.mqtt.topics.HomeAssistantTopics` and
:class:`~edgewatch.mqtt.topics.Topics`):

* ``homeassistant/binary_sensor/<agent>/<stream>/config``: a
  ``device_class: problem`` binary sensor, ON while the stream is in an
  alert episode;
* ``homeassistant/sensor/<agent>/<stream>/config``: its anomaly_score
  (1 = the model's threshold), ``state_class: measurement``;
* both read ``PREFIX/AGENT/streams/<stream>/state``, a retained JSON
  ``{"problem": "ON"|"OFF", "anomaly_score": x}``, published at once when an
  episode starts or ends and otherwise at most once a second when the score
  moved by 0.01 or more;
* both are available while the agent's retained status
  (``PREFIX/AGENT/status``) says ``online``: its last will says
  ``offline``, so Home Assistant greys them out when the agent dies.

Each stream is its own Home Assistant device (``identifiers``
``edgewatch_<agent>_<stream>``); ``unique_id`` is that plus the entity, so
renaming an entity in Home Assistant survives restarts. The configs are
sent again on every connect and when Home Assistant announces itself
(``online`` on ``homeassistant/status``). The prefix is
``--ha-discovery-prefix`` (default ``homeassistant``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from edgewatch import __version__
from edgewatch.mqtt.topics import HaComponent, HomeAssistantTopics, StreamIds, Topics

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between anomaly_score state updates of a stream, at most
DEADBAND = 0.01  # anomaly_score change that is worth a state update


@dataclass
class _Stream:
    stream: str
    problem: bool = False
    score: float | None = None
    sent: tuple[bool, float | None] | None = None  # (problem, score) last published
    announced: bool = False


class HomeAssistantDiscovery:
    """Announces streams to Home Assistant and keeps their states; see the module docstring."""

    def __init__(self, connection: Any, topics: Topics, ha: HomeAssistantTopics, model_family: str = "") -> None:
        self.connection = connection
        self.topics = topics
        self.ha = ha
        self.model_family = model_family
        self.streams: dict[str, _Stream] = {}
        self.ids = StreamIds(HomeAssistantTopics.ha_id, "Home Assistant entity")  # one entity per stream
        self._lock = threading.Lock()
        self._stop = threading.Event()
        connection.on_connect(self._announce_all)
        connection.subscribe(ha.birth, self._on_ha_status, qos=1)
        self._thread = threading.Thread(target=self._loop, name="ha-discovery", daemon=True)
        self._thread.start()

    # -- what Home Assistant reads -----------------------------------------------------

    def configs(self, stream: str) -> dict[str, dict[str, Any]]:
        """The discovery topic -> config of one stream's two entities."""
        agent = self.topics.agent_id
        sid = self.ids.of(stream)
        uid = HomeAssistantTopics.ha_id(f"edgewatch_{agent}_") + sid
        common = {
            "state_topic": self.topics.stream_state(sid),
            "availability": [{"topic": self.topics.status, "value_template": "{{ value_json.state }}",
                              "payload_available": "online", "payload_not_available": "offline"}],
            "device": {"identifiers": [uid], "name": stream, "manufacturer": "edgewatch",
                       "model": f"anomaly detector ({self.model_family})" if self.model_family else "anomaly detector",
                       "sw_version": __version__},
            "qos": 1,
        }
        return {
            self.ha.config(HaComponent.BINARY_SENSOR, agent, sid): {
                **common, "name": "Anomaly", "unique_id": f"{uid}_problem", "device_class": "problem",
                "value_template": "{{ value_json.problem }}", "payload_on": "ON", "payload_off": "OFF"},
            self.ha.config(HaComponent.SENSOR, agent, sid): {
                **common, "name": "Anomaly score", "unique_id": f"{uid}_anomaly_score",
                "value_template": "{{ value_json.anomaly_score }}", "state_class": "measurement",
                "suggested_display_precision": 2, "icon": "mdi:chart-bell-curve"},
        }

    # -- publishing -------------------------------------------------------------------

    def _announce(self, s: _Stream) -> None:
        for topic, config in self.configs(s.stream).items():
            self.connection.publish(topic, json.dumps(config).encode(), qos=1, retain=True)
        s.announced = True
        s.sent = None  # the state follows its configs

    def _announce_all(self) -> None:
        with self._lock:
            for s in self.streams.values():
                self._announce(s)
                self._state(s)

    def _on_ha_status(self, msg: Any) -> None:
        if msg.payload == b"online":
            self._announce_all()

    def _state(self, s: _Stream) -> None:
        """Publish ``s``'s state; nothing when not connected (it is sent at the next connect)."""
        if not self.connection.connected:
            return
        if not s.announced:
            self._announce(s)
        payload = {"problem": "ON" if s.problem else "OFF",
                   "anomaly_score": None if s.score is None else round(s.score, 4)}
        self.connection.publish(self.topics.stream_state(self.ids.of(s.stream)),
                                json.dumps(payload).encode(), qos=1, retain=True)
        s.sent = (s.problem, s.score)

    def _due(self, s: _Stream) -> bool:
        if s.sent is None:
            return True
        problem, score = s.sent
        if problem != s.problem or (score is None) != (s.score is None):
            return True
        return s.score is not None and score is not None and abs(s.score - score) >= DEADBAND

    # -- the agent's side (its loop's thread: quick) -----------------------------------

    def _stream(self, stream: str) -> _Stream:
        s = self.streams.get(stream)
        if s is None:
            s = self.streams[stream] = _Stream(stream)
        return s

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind not in ("start", "end") or not isinstance(event.get("stream"), str):
            return
        with self._lock:
            s = self._stream(event["stream"])
            s.problem = kind == "start"
            if kind == "start" and isinstance(event.get("anomaly_score"), (int, float)):
                s.score = float(event["anomaly_score"])
            self._state(s)

    def on_batch(self, view: Any) -> None:
        with self._lock:
            for w in view.scored:
                s = self._stream(w.stream)
                if math.isfinite(w.anomaly):
                    s.score = float(w.anomaly)

    def on_forget(self, streams: list[str]) -> None:
        """Stop following streams the agent dropped (``--stream-ttl``); their entities keep the last,
        retained state, which the episode's end has already set to OK."""
        with self._lock:
            for stream in streams:
                self.streams.pop(stream, None)
                self.ids.release(stream)

    def _flush(self) -> None:
        """Publish every state that changed since it was last sent."""
        try:
            with self._lock:
                for s in list(self.streams.values()):
                    if self._due(s):
                        self._state(s)
        except Exception:  # a paho error must not end the thread, nor the agent's stop
            log.exception("Home Assistant discovery: publishing a state failed")

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._flush()

    def close(self) -> None:
        """Stop updating, after one last flush; the states stay retained, and the agent's status says offline.

        Why the flush: the loop sends at most once a second, so an agent that
        stopped within a second of its last scored windows (a replay ends in
        well under one) left the score of the batch before an episode's end
        retained: a pump replay stopped with anomaly_score 149.7 in Home
        Assistant, ten hours of normal rows after its fault. The broker's
        acknowledgement of these last states is waited for where every QoS 1
        publish's is, when the connection closes (``BrokerConnection.close``).
        """
        self._stop.set()
        self._thread.join(INTERVAL + 1.0)
        self._flush()
