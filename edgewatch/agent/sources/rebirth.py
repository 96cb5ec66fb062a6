"""Sparkplug B rebirth requests: how an agent that starts after the edge nodes learns their aliases.

An edge node sends its births (NBIRTH, then a DBIRTH per device) once per
MQTT session, then data that names its metrics by alias only. An agent
that subscribed later (restarted, updated, its box power-cycled) cannot
read any of it (``unknown_alias``) until the node is born again, which
may be days away. Sparkplug gives a host application the way to ask: an
NCMD on ``spBv1.0/GROUP/NCMD/NODE`` carrying the metric
``Node Control/Rebirth`` = true (Boolean); a node answers with a fresh
NBIRTH and all its DBIRTHs. Sparkplug 3.0 says an NCMD goes out at QoS 0,
not retained, with a timestamp and no sequence number, and so it does here.

How often, and why:

* At most one request per edge node per ``interval`` (30 s). A node
  answers within a second or so, so one request is normally all it takes;
  the data that still arrives by alias meanwhile (in flight, or of devices
  whose DBIRTH comes after the NBIRTH) must not ask again. A request is
  QoS 0 and may be lost (a broker restart, a dropped connection): 30 s
  later the next data message asks again, so a lost request costs 30 s of
  scoring, not days. A node that never answers (no rebirth support, or a
  broker that does not let this agent publish there) gets one ~40-byte
  message every 30 s, which no network notices.
* A node that did answer but whose data again names aliases no birth
  declared (a node that declares fewer aliases than it sends) is asked
  after 30 s, 60 s, 120 s ... up to ``max_interval`` (10 minutes): each
  rebirth starts every window of its devices again, so asking every 30 s
  would keep a model with a longer window from ever scoring that node.
  After a quiet spell of twice the current interval it starts at 30 s again.
* At most ``max_nodes`` edge nodes are remembered (node names come from
  topics anyone allowed to publish there chooses); past that a node whose
  last request is older than its interval is forgotten, else no request is
  sent (logged once).

A publish refused by the client (not connected) is logged once per node,
at warning, with paho's reason; it never stops the source. A broker whose
ACL denies this agent ``spBv1.0/+/NCMD/+`` answers nothing at QoS 0 under
MQTT 3.1.1: some drop the request, so a node that sent no birth within the
interval after a request is logged once, at warning, naming both causes;
mosquitto 2.0 closes the connection instead (measured with 2.0.11: the
agent was thrown off and reconnected at every request). The connection is
shared with the MQTT sink, and every drop restarts the windows and lets
the broker publish the agent's last will, so a connection lost within
``DENIED_WITHIN`` seconds of a request (:meth:`RebirthRequests.lost`) turns
the requests off until the agent restarts, with an error naming the ACL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from edgewatch.agent.sources.sparkplug import DEFAULT_MAX_NODES
from edgewatch.wire.sparkplug import rebirth_request

log = logging.getLogger("edgewatch.agent.sources")

REBIRTH_INTERVAL = 30.0
REBIRTH_MAX_INTERVAL = 600.0
# a connection lost this soon after a request was the broker refusing it (mosquitto 2 closes an MQTT 3.1.1
# client that publishes where its ACL denies); the drop follows the request by milliseconds
DENIED_WITHIN = 2.0


def rebirth_topic(node: str) -> str:
    """``spBv1.0/GROUP/NCMD/NODE`` of a node's stream ``spBv1.0/GROUP/NODE``."""
    namespace, group, name = node.split("/", 2)
    return f"{namespace}/{group}/NCMD/{name}"


@dataclass
class _Asked:
    at: float  # monotonic time of the last request
    interval: float  # no other request before at + interval
    answered: bool = False  # a birth of the node came after the last request
    said_silent: bool = False
    said_failed: bool = False


class RebirthRequests:
    """Decides when to ask an edge node for a rebirth and sends the request (see the module docstring).

    ``send(topic, payload)`` publishes and returns None, or why it could
    not (paho's words). One source's paho thread calls :meth:`ask` and
    :meth:`born`; they hold no lock.
    """

    def __init__(self, source: str, send: Callable[[str, bytes], str | None], interval: float = REBIRTH_INTERVAL,
                 max_interval: float = REBIRTH_MAX_INTERVAL, max_nodes: int = DEFAULT_MAX_NODES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._send = send
        self.interval = interval
        self.max_interval = max(max_interval, interval)
        self.max_nodes = max_nodes
        self._clock = clock
        self._asked: OrderedDict[str, _Asked] = OrderedDict()  # node -> its last request, oldest first
        self._said_full = False
        self.sent = 0
        self.last_sent: float | None = None  # monotonic time of the last request that went out
        self.denied = False  # the broker closed the connection over a request: no more requests this run

    def born(self, node: str) -> None:
        """A birth of the node or one of its devices arrived: the last request (if any) was answered."""
        asked = self._asked.get(node)
        if asked is not None:
            asked.answered = True

    def ask(self, node: str) -> bool:
        """Data of ``node`` (``spBv1.0/GROUP/NODE``) named an alias no held birth declares: ask for a
        rebirth unless one was asked within the node's interval. True when a request went out now."""
        if self.denied:
            return False
        now = self._clock()
        asked = self._asked.get(node)
        if asked is None:
            if len(self._asked) >= self.max_nodes and not self._forget_oldest(now, node):
                return False
            asked = self._asked[node] = _Asked(now, self.interval)
            first = True
        else:
            if now - asked.at < asked.interval:
                return False
            first = False
            if asked.answered:  # born since the last request, yet an alias unknown again
                asked.interval = (min(2 * asked.interval, self.max_interval) if now - asked.at < 2 * asked.interval
                                  else self.interval)
            elif not asked.said_silent:
                asked.said_silent = True
                log.warning("source %s: edge node %s sent no birth within %gs of a rebirth request: it may not "
                            "answer rebirth requests, or the broker drops this agent's publishes to %s (its ACL "
                            "must let the agent's MQTT user publish to spBv1.0/+/NCMD/+; or set "
                            "sparkplug_rebirth=0). Asking again every %gs; logged once per node", self.source, node,
                            asked.interval, rebirth_topic(node), asked.interval)
            asked.at, asked.answered = now, False
            self._asked.move_to_end(node)
        topic = rebirth_topic(node)
        why = self._send(topic, rebirth_request(int(time.time() * 1000)))
        if why is not None:
            if not asked.said_failed:
                asked.said_failed = True
                log.warning("source %s: could not ask edge node %s for a rebirth on %s: %s (tried again in %gs; "
                            "logged once per node)", self.source, node, topic, why, asked.interval)
            return False
        self.sent += 1
        self.last_sent = now
        log.log(logging.INFO if first else logging.DEBUG, "source %s: asked edge node %s for a rebirth (%s, "
                "Node Control/Rebirth): its data names aliases of a birth this agent does not hold",
                self.source, node, topic)
        return True

    def lost(self) -> None:
        """The source's broker connection was lost: if right after a request, the broker refused it."""
        if self.denied or self.last_sent is None or self._clock() - self.last_sent > DENIED_WITHIN:
            return
        self.denied = True
        log.error("source %s: the broker closed the connection within %gs of a Sparkplug rebirth request: its ACL "
                  "most likely does not let this agent's MQTT user publish to spBv1.0/+/NCMD/+ (mosquitto 2 "
                  "closes an MQTT 3.1.1 client that publishes where it may not). No more rebirth requests from "
                  "this source until the agent restarts: allow that topic, or set sparkplug_rebirth=0 and start "
                  "the agent before the edge nodes", self.source, DENIED_WITHIN)

    def _forget_oldest(self, now: float, new: str) -> bool:
        """Make room for ``new``: drop the longest-asked node if it may be asked again anyway."""
        node, oldest = next(iter(self._asked.items()))
        if now - oldest.at < oldest.interval:
            if not self._said_full:
                self._said_full = True
                log.warning("source %s: %d edge nodes were asked for a rebirth within their interval; not asking "
                            "%s now (sparkplug_max_nodes bounds them; logged once)", self.source,
                            len(self._asked), new)
            return False
        del self._asked[node]
        return True
