"""Sparkplug B messages as measurements: births, aliases and deaths, per edge node and device.

The bytes of a payload are :mod:`edgewatch.wire.sparkplug`'s. What
Sparkplug leaves implicit is kept here, per edge node and device from its
birth certificate (NBIRTH, DBIRTH) to its death (NDEATH, DDEATH) or next
birth: the aliases it declared and the last value of every feature,
because data messages carry only the metrics that changed (report by
exception). A measurement is the model's features, by metric name (or the
one feature a metric's name matches, :mod:`.feature_names`), after
each birth or data message that touched one of them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.sources.feature_names import FeatureNames
from edgewatch.agent.sources.parsing import DEFAULT_MAX_BYTES, BadReason, Measurement, bad_quality
from edgewatch.wire.protobuf import DecodeError
from edgewatch.wire.sparkplug import TEXT_TYPES, Metric, decode_payload


# Message types (the topic's third level) of Sparkplug B 3.0. Commands and host STATE carry no measurement.
_KINDS = frozenset({"NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"})
_IGNORED = frozenset({"NCMD", "DCMD"})
# Sessions (edge nodes and devices whose birth or data is held) and aliases per edge node, nodes and their
# devices together. An alias the model does not read takes 4 bytes (8 past 2**32) in a sorted array, so the
# defaults hold at most ~40 MB of aliases; docs/sources.md says how to raise them for larger plants.
DEFAULT_MAX_NODES = 1000
DEFAULT_MAX_ALIASES = 10_000


@dataclass(frozen=True)
class Reset:
    """These streams start again (a death or a new birth): rows before it are not the past of rows after."""

    streams: tuple[str, ...]


Decoded = Measurement | BadReason | Reset


@dataclass(eq=False)
class _Session:
    """One edge node or device since its birth: the aliases it declared and its metrics' last values.

    Only the aliases of the model's features map to something; the others are
    kept as one sorted array so that data naming them is told apart from
    data naming an alias no birth declared (``unknown_alias``).
    """

    last: list[float | None]
    feature_aliases: dict[int, int] = field(default_factory=dict)  # alias -> feature index
    other_aliases: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    owners: dict[int, object] = field(default_factory=dict)  # feature -> the metric name feeding it

    @property
    def n_aliases(self) -> int:
        return len(self.feature_aliases) + int(self.other_aliases.size)

    def declares(self, alias: int) -> bool:
        others = self.other_aliases
        if not others.size or alias > int(others[-1]):
            return False
        i = int(others.searchsorted(others.dtype.type(alias)))
        return int(others[i]) == alias


class SparkplugDecoder:
    """Turns Sparkplug B messages into measurements of the model's features (one stream per node or device).

    ``decode`` returns what one message means for the agent, in order: a
    :class:`Reset` of streams whose session ended (a death, or a birth that
    replaces a session), then a Measurement or a BadReason; nothing for a
    message that is neither (a command, a STATE message, data touching none
    of the features).

    Bounds, because every name in the topic and every alias in a birth is
    chosen by whoever may publish: a payload over ``max_bytes`` is
    ``too_large``; at most ``max_nodes`` edge nodes and devices hold a
    session (a new one past it is ``too_many_nodes``); an edge node with its
    devices holds at most ``max_aliases`` aliases (a birth past it is
    ``too_many_aliases`` and holds none). A death drops the session, so its
    aliases are ``unknown_alias`` until the next birth.
    """

    def __init__(self, features: list[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 max_nodes: int = DEFAULT_MAX_NODES, max_aliases: int = DEFAULT_MAX_ALIASES,
                 source: str = "") -> None:
        self.features = list(features)
        self.max_bytes = max_bytes
        self.max_nodes = max_nodes
        self.max_aliases = max_aliases
        self._names = FeatureNames(features, source)  # its log lines name the source
        # a state feature's metric ("Run", a Boolean) read as its code, the one way every source reads it: the row
        # assembler's state_code (stream, feature, value) -> code, unknown_state, or None (no state word); None
        # for a model without state features
        self.state_code: Callable[[str, int, object], float | BadReason | None] | None = None
        self._sessions: dict[str, _Session] = {}  # stream -> session
        self._node_streams: dict[str, set[str]] = {}  # node stream -> its streams holding a session (itself too)
        # streams whose last birth was refused (too large, past a bound), oldest first, at most max_nodes: a
        # rebirth would be refused again, so the source does not ask one for their data (birth_refused)
        self._refused: dict[str, None] = {}

    @property
    def sessions(self) -> int:
        """Edge nodes and devices holding a session now."""
        return len(self._sessions)

    @property
    def aliases(self) -> int:
        """Aliases held now, all sessions."""
        return sum(s.n_aliases for s in self._sessions.values())

    def birth_refused(self, stream: str) -> bool:
        """Whether the last birth of this node or device (``spBv1.0/GROUP/NODE[/DEVICE]``) was refused.

        Why it matters: its data is ``unknown_alias`` like that of a node
        whose birth the agent missed, but asking it to rebirth would bring
        the same birth, refused again, and reset the windows of every
        device of that node for nothing.
        """
        return stream in self._refused

    def _note_refused(self, stream: str) -> None:
        refused = self._refused
        refused.pop(stream, None)
        if len(refused) >= self.max_nodes:  # names come from topics: bounded, the oldest forgotten
            del refused[next(iter(refused))]
        refused[stream] = None

    def decode(self, topic: str, payload: bytes) -> list[Decoded]:
        parts = topic.split("/")
        if len(parts) >= 2 and parts[1] == "STATE":
            return []  # a host application's state (Sparkplug 3.0: spBv1.0/STATE/HOST)
        kind = parts[2] if len(parts) > 2 else ""
        if kind in _IGNORED:
            return []
        if (parts[0] != "spBv1.0" or kind not in _KINDS or len(parts) != (4 if kind[0] == "N" else 5)
                or not all(parts)):
            return [BadReason.UNKNOWN_MESSAGE]
        node_stream = "/".join(("spBv1.0", parts[1], parts[3]))
        stream = node_stream if kind[0] == "N" else f"{node_stream}/{parts[4]}"
        if len(payload) > self.max_bytes:
            if kind.endswith("BIRTH"):
                self._note_refused(stream)
            return [BadReason.TOO_LARGE]
        if kind == "NDEATH":
            return self._end(self._drop_node(node_stream))
        if kind == "DDEATH":
            return self._end(self._drop(stream))
        try:
            ts_ms, _seq, metrics = decode_payload(payload)
        except (DecodeError, struct.error):
            return [BadReason.BAD_PAYLOAD]
        if kind.endswith("BIRTH"):
            out = self._end(self._drop_node(node_stream) if kind == "NBIRTH" else self._drop(stream))
            refused = self._birth(node_stream, stream, metrics)
            if refused is not None:
                self._note_refused(stream)
                return [*out, refused]
            self._refused.pop(stream, None)
            session = self._sessions[stream]
        else:
            out = []
            session = self._sessions.get(stream)
            if session is None:  # data without a birth: names still work, aliases cannot
                session = _Session([None] * len(self.features))
        result = self._update(stream, session, metrics, ts_ms)
        return out if result is None else [*out, result]

    # -- sessions ---------------------------------------------------------------------------

    @staticmethod
    def _end(streams: list[str]) -> list[Decoded]:
        return [Reset(tuple(streams))] if streams else []

    def _drop(self, stream: str) -> list[str]:
        if self._sessions.pop(stream, None) is None:
            return []
        node = _node_of(stream)
        held = self._node_streams.get(node)
        if held is not None:
            held.discard(stream)
            if not held:
                del self._node_streams[node]
        return [stream]

    def _drop_node(self, node_stream: str) -> list[str]:
        """A node's death or new birth ends its devices' sessions too (Sparkplug: they are born again)."""
        streams = sorted(self._node_streams.pop(node_stream, ()))
        for s in streams:
            del self._sessions[s]
        return streams

    def _hold(self, stream: str, session: _Session) -> BadReason | None:
        if stream not in self._sessions:
            if len(self._sessions) >= self.max_nodes:
                return BadReason.TOO_MANY_NODES
            self._node_streams.setdefault(_node_of(stream), set()).add(stream)
        self._sessions[stream] = session
        return None

    def _birth(self, node_stream: str, stream: str, metrics: list[Metric]) -> BadReason | None:
        features: dict[int, int] = {}
        others: list[int] = []
        owners: dict[int, object] = {}
        named: list[tuple[int, int, str]] = []
        for m in metrics:
            if m.alias is None or m.name is None:
                continue
            j = self._names.resolve(m.name)
            if j is None or self._names.claim(owners, j, m.name) is None:
                others.append(m.alias)
            else:
                named.append((m.alias, j, m.name))
        for alias, j, name in named:  # two metrics matching one feature: its exact name, else neither
            if owners[j] == name:
                features[alias] = j
            else:
                others.append(alias)
        held = sum(self._sessions[s].n_aliases for s in self._node_streams.get(node_stream, ()))
        if held + len(features) + len(others) > self.max_aliases:
            return BadReason.TOO_MANY_ALIASES
        return self._hold(stream, _Session([None] * len(self.features), features, _sorted_aliases(others), owners))

    def _update(self, stream: str, session: _Session, metrics: list[Metric], ts_ms: int | None
                ) -> Measurement | BadReason | None:
        update: list[tuple[int, float, str | None]] = []  # feature, value, the name it came by
        bad: list[int] = []  # features whose Quality says Bad: their held value is no longer the sensor's
        refused: BadReason | None = None  # a metric without a number: counted, the message's others still taken
        latest_ms = None
        named = False
        for m in metrics:
            if m.name is not None:
                j = self._names.resolve(m.name)
                if j is not None:
                    j = self._names.claim(session.owners, j, m.name)
                    named = True
            elif m.alias is not None:
                j = session.feature_aliases.get(m.alias)
                if j is None and not session.declares(m.alias):
                    return BadReason.UNKNOWN_ALIAS
            else:
                continue
            if j is None:
                continue
            if m.quality is not None and bad_quality(m.quality):  # the sign bit: Bad or Error, as OPC UA's
                bad.append(j)
                continue
            v = m.value
            if self.state_code is not None and not m.is_null:
                code = self.state_code(stream, j, v)
                if code is BadReason.UNKNOWN_STATE:  # not the state held any more: this session's value goes too
                    bad.append(j)
                    refused = refused or code
                    continue
                if code is not None:
                    v = code
            if (m.is_null or v is None or (m.datatype in TEXT_TYPES and type(v) is not float)
                    or isinstance(v, (str, bytes))):
                refused = refused or BadReason.NOT_NUMBER
                continue
            f = float(v)  # type: ignore[arg-type]
            if not math.isfinite(f):
                refused = refused or BadReason.NON_FINITE
                continue
            update.append((j, f, m.name))
            if m.timestamp is not None:
                latest_ms = m.timestamp if latest_ms is None else max(latest_ms, m.timestamp)
        if named:  # a later metric of this message may have contested an earlier one's feature
            owners = session.owners
            update = [(j, f, n) for j, f, n in update if n is None or owners.get(j) == n]
        for j in bad:
            session.last[j] = None
        if not update:
            return refused or (BadReason.BAD_STATUS if bad else None)
        if stream not in self._sessions:
            refused = self._hold(stream, session)
            if refused is not None:
                return refused
        last = session.last
        for j, f, _ in update:
            last[j] = f
        if refused is not None:  # report by exception: a value dropped here would stand until it changes again
            return refused
        if bad:
            return BadReason.BAD_STATUS
        if any(v is None for v in last):
            return BadReason.WRONG_ARITY
        ms = latest_ms if latest_ms is not None else ts_ms
        return Measurement(list(last), ms / 1000.0 if ms else None, stream)  # type: ignore[arg-type]


def _node_of(stream: str) -> str:
    """``spBv1.0/GROUP/NODE`` of a node's or a device's stream."""
    return "/".join(stream.split("/", 3)[:3])


def _sorted_aliases(aliases: list[int]) -> np.ndarray:
    out = np.unique(np.array(aliases, dtype=np.uint64))
    return out.astype(np.uint32) if out.size and int(out[-1]) <= 0xFFFFFFFF else out
