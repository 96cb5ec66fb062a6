"""The simulated equipment over a field protocol: MQTT, OPC UA or Modbus TCP (``simulate --serve URL``).

An outlet takes each batch of measurements the simulator produces (the
same signal, faults and truth file as on the websocket) and puts it where
that protocol's clients read it:

* ``mqtt://HOST:PORT/TOPIC``: each measurement published, QoS 1, as
  ``{"ts", "seq", "values"}`` on ``TOPIC`` (with ``--streams K > 1``: on
  ``TOPIC/eq-<i>``); ``?format=sparkplug`` publishes Sparkplug B instead
  (an NBIRTH, a DBIRTH per equipment with aliases and its first measurement, then DDATA by alias on
  ``spBv1.0/GROUP/DDATA/NODE/eq-<i>``, GROUP and NODE from ``TOPIC``). Like a real edge node it
  answers an NCMD ``Node Control/Rebirth`` = true with a new NBIRTH and every DBIRTH (the last
  values), so an agent started after it gets the aliases it missed.
* ``opcua://HOST:PORT``: an asyncua server with one object per equipment
  (``Objects/2:eq-0`` ...) holding the variables ``cpu, memory, traffic, fan``;
  each measurement is written to all four, stamped with its time.
* ``modbus://HOST:PORT``: holding registers, unit 1; equipment ``i`` at
  address ``16 * i``: four ``f32`` (high word first) at +0, +2, +4, +6, and
  the sequence number as ``u32`` at +8.

Which ``--source`` reads each is in :func:`source_url_for`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from edgewatch.data.faults import FEATURES
from edgewatch.errors import BadInput, MissingExtra

log = logging.getLogger(__name__)

MODBUS_STRIDE = 16


class Outlet(Protocol):
    url: str

    async def open(self, streams: list[str]) -> None: ...

    async def emit(self, index: int, stream: str, values: np.ndarray, first: int, ts: np.ndarray) -> None: ...

    async def close(self) -> None: ...


def make_outlet(url: str) -> Outlet:
    scheme = urlsplit(url).scheme
    if scheme in ("mqtt", "mqtts"):
        return MqttOutlet(url)
    if scheme == "opcua":
        return OpcUaOutlet(url)
    if scheme == "modbus":
        return ModbusOutlet(url)
    raise BadInput(f"--serve {url!r}: use mqtt://HOST:PORT/TOPIC, opcua://HOST:PORT or modbus://HOST:PORT")


def source_url_for(url: str, stream: int = 0, streams: int = 1) -> str:
    """The agent's ``--source`` that reads equipment ``stream`` of ``simulate --serve url``."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}"
    if parts.scheme in ("mqtt", "mqtts"):
        topic = unquote(parts.path).strip("/") or "edgewatch/sim"
        if dict(parse_qsl(parts.query)).get("format") == "sparkplug":
            group, _, node = (topic.split("/") + ["sim"])[:3]
            return f"{parts.scheme}://{host}/spBv1.0/{group}/%23"
        return f"{parts.scheme}://{host}/{topic}" + ("/+" if streams > 1 else "")
    if parts.scheme == "opcua":
        return f"opcua://{host}/Objects/2:eq-{stream}"
    base = MODBUS_STRIDE * stream
    regs = ",".join(f"{base + 2 * j}:f32" for j in range(len(FEATURES)))
    return f"modbus://{host}/1?registers={regs}"


class MqttOutlet:
    def __init__(self, url: str) -> None:
        from edgewatch.mqtt.connection import BrokerConnection, parse_broker_url

        self.url = url
        query = dict(parse_qsl(urlsplit(url).query))
        self.sparkplug = query.get("format") == "sparkplug"
        options, path = parse_broker_url(url.split("?", 1)[0], client_id="edgewatch-simulator")
        self.topic = path.strip("/") or "edgewatch/sim"
        self.conn = BrokerConnection(options)
        self.published = 0
        self.rebirths_asked = 0  # NCMD rebirth requests received (Sparkplug)
        self.rebirths = 0  # answered with NBIRTH and every DBIRTH

    async def open(self, streams: list[str]) -> None:
        import asyncio

        self.streams = streams
        self.conn.start()
        for _ in range(200):
            if self.conn.connected:
                break
            await asyncio.sleep(0.05)
        if not self.conn.connected:
            raise BadInput(f"--serve {self.url}: no MQTT broker answers there ({self.conn.last_error})")
        if self.sparkplug:
            from edgewatch.wire.sparkplug import encode_payload

            group, _, node = (self.topic.split("/") + ["sim"])[:3]
            self.group, self.node = group, node or "sim"
            self._last: dict[str, list[float]] = {}  # born devices: their last row, for a rebirth's DBIRTH
            self._seq = 0
            # an NCMD arrives on paho's thread; the births go out from emit's, so NBIRTH, DBIRTH and
            # DDATA keep their order on the wire
            self._rebirth_asked = threading.Event()
            self.conn.subscribe(f"spBv1.0/{group}/NCMD/{self.node}", self._on_command, qos=0)
            self._node_birth()

    def _on_command(self, msg: Any) -> bool:
        """paho's thread: note a rebirth request; :meth:`emit` answers it before its next message."""
        import struct

        from edgewatch.wire.protobuf import DecodeError
        from edgewatch.wire.sparkplug import asks_rebirth, decode_payload

        try:
            _ts, _seq, metrics = decode_payload(msg.payload)
        except (DecodeError, struct.error) as exc:
            log.warning("simulator: an NCMD on %s that is no Sparkplug B payload (%s); ignored", msg.topic, exc)
            return True
        if asks_rebirth(metrics):
            log.info("simulator: rebirth asked on %s", msg.topic)
            self.rebirths_asked += 1
            self._rebirth_asked.set()
        return True

    def _next_seq(self) -> int:
        """Sparkplug's per-node sequence: 0 on the NBIRTH, then one up per message, modulo 256."""
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _node_birth(self) -> None:
        from edgewatch.wire.sparkplug import BOOLEAN, REBIRTH_METRIC, encode_metric, encode_payload

        self._seq = 0
        now = int(time.time() * 1000)
        self._publish(f"spBv1.0/{self.group}/NBIRTH/{self.node}", encode_payload(
            [encode_metric(REBIRTH_METRIC, False, datatype=BOOLEAN)], timestamp=now, seq=0))

    def _device_birth(self, stream: str, row: list[float], ms: int) -> None:
        from edgewatch.wire.sparkplug import encode_metric, encode_payload

        self._last[stream] = row
        self._publish(f"spBv1.0/{self.group}/DBIRTH/{self.node}/{stream}", encode_payload(
            [encode_metric(f, v, alias=j + 1, timestamp=ms) for j, (f, v) in enumerate(zip(FEATURES, row))],
            timestamp=ms, seq=self._next_seq()))

    def _rebirth(self) -> None:
        """Answer a rebirth request as an edge node does: a new NBIRTH, then each device's DBIRTH."""
        self._rebirth_asked.clear()
        self._node_birth()
        now = int(time.time() * 1000)
        for stream, row in list(self._last.items()):
            self._device_birth(stream, row, now)
        self.rebirths += 1

    def _publish(self, topic: str, payload: bytes) -> None:
        info = self.conn.publish(topic, payload, qos=1)
        if info.rc not in (0, 4):  # success, or queued until the reconnect
            log.warning("simulator MQTT publish failed: rc %s", info.rc)
        self.published += 1

    async def emit(self, index: int, stream: str, values: np.ndarray, first: int, ts: np.ndarray) -> None:
        rows = np.round(values, 5).tolist()
        if self.sparkplug:
            from edgewatch.wire.sparkplug import encode_metric, encode_payload

            if self._rebirth_asked.is_set():
                self._rebirth()
            for i, row in enumerate(rows):
                ms = int(ts[i] * 1000)
                if stream not in self._last:  # a device's birth carries its first measurement
                    self._device_birth(stream, row, ms)
                    continue
                self._last[stream] = row
                self._publish(f"spBv1.0/{self.group}/DDATA/{self.node}/{stream}", encode_payload(
                    [encode_metric(None, v, alias=j + 1, timestamp=ms) for j, v in enumerate(row)],
                    timestamp=ms, seq=self._next_seq()))
            return
        topic = self.topic if len(self.streams) == 1 else f"{self.topic}/{stream}"
        for i, row in enumerate(rows):
            self._publish(topic, json.dumps({"ts": round(float(ts[i]), 6), "seq": first + i, "values": row},
                                            separators=(",", ":")).encode())

    async def close(self) -> None:
        import asyncio

        for _ in range(100):  # let QoS 1 messages in flight reach the broker
            if not self.conn.client._out_messages:
                break
            await asyncio.sleep(0.05)
        self.conn.close()


class OpcUaOutlet:
    def __init__(self, url: str) -> None:
        try:
            import asyncua  # noqa: F401
        except ImportError as exc:
            raise MissingExtra("asyncua", extra="opcua") from exc
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", 4840 if parts.port is None else parts.port
        if self.port == 0:  # asyncua binds the port it is given: pick a free one ourselves
            import socket

            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        self.url = f"opcua://{self.host}:{self.port}"
        self.vars: list[list[Any]] = []

    async def open(self, streams: list[str]) -> None:
        from asyncua import Server

        logging.getLogger("asyncua").setLevel(logging.ERROR)
        self.server = server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}")
        server.set_server_name("edgewatch simulator")
        ns = await server.register_namespace("urn:edgewatch:simulator")
        for name in streams:
            obj = await server.nodes.objects.add_object(ns, name)
            self.vars.append([await obj.add_variable(ns, f, 0.0) for f in FEATURES])
        try:
            await server.start()
        except OSError as exc:
            raise BadInput(f"--serve {self.url}: cannot listen there ({exc})") from exc

    async def emit(self, index: int, stream: str, values: np.ndarray, first: int, ts: np.ndarray) -> None:
        from datetime import datetime, timezone

        from asyncua import ua

        nodes = self.vars[index]
        for i, row in enumerate(values.tolist()):
            when = datetime.fromtimestamp(float(ts[i]), tz=timezone.utc)
            for node, v in zip(nodes, row):
                dv = ua.DataValue(ua.Variant(float(v), ua.VariantType.Double), SourceTimestamp=when,
                                  ServerTimestamp=when)
                await self.server.write_attribute_value(node.nodeid, dv)

    async def close(self) -> None:
        await self.server.stop()


class ModbusOutlet:
    def __init__(self, url: str) -> None:
        from edgewatch.data.modbus_server import ModbusServer

        parts = urlsplit(url)
        self.server = ModbusServer(parts.hostname or "127.0.0.1", 502 if parts.port is None else parts.port)
        self.url = f"modbus://{self.server.host}:{self.server.port}"

    async def open(self, streams: list[str]) -> None:
        try:
            self.server.start()
        except OSError as exc:
            raise BadInput(f"--serve {self.url}: cannot listen there ({exc})") from exc
        self.url = f"modbus://{self.server.host}:{self.server.port}"

    async def emit(self, index: int, stream: str, values: np.ndarray, first: int, ts: np.ndarray) -> None:
        from edgewatch.data.modbus_server import encode_value

        row = values[-1].tolist()  # a register holds the latest value: what a poll sees
        seq = first + len(values) - 1
        words: list[int] = []
        for v in row:
            words += encode_value(float(v), "f32")
        words += encode_value(seq, "u32")
        self.server.set_registers(MODBUS_STRIDE * index, words)

    async def close(self) -> None:
        self.server.stop()
