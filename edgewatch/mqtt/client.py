"""paho's client class as the broker connection uses it (imported only when a connection is made).

Kept apart from :mod:`edgewatch.mqtt.connection` so that an agent without an
MQTT sink or source never imports paho, ssl and urllib.request (about
3 MiB of resident memory; docs/platform.md).
"""

from __future__ import annotations

import struct
import threading
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edgewatch.mqtt.connection import _describe

__all__ = ["CallbackAPIVersion", "_Client", "paho"]


class _Client(paho.Client):
    """paho's client, telling us why a connection attempt failed, and reading in bulk.

    Why the first: paho's loop catches the OSError of a failed connect
    (refused, DNS, TLS certificate verification) and only calls
    ``on_connect_fail`` without it, so an operator would never learn why the
    alerts stay in the spool.

    Why the second: paho reads a packet with three or four ``recv`` calls and
    a ``select`` each, and sends each PUBACK with two ``send`` calls (the
    socket and its wake-up pipe); on a busy 2-core machine those system
    calls were 60 % of an MQTT source's time per message (profiled). Here
    one ``recv`` of up to 64 KiB feeds every packet it holds, and the
    PUBACKs of one read go out as one write. Wire behaviour is unchanged:
    every QoS 1 message is still acknowledged, in order, after its handler.
    """

    _READ_SIZE = 65536
    _ACK_EVERY = 256

    def __init__(self, on_error: Callable[[str], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_error = on_error
        self._rbuf = b""
        self._rpos = 0
        self._batched_acks: list[int] | None = None

    def _create_socket(self) -> Any:
        self._rbuf, self._rpos = b"", 0  # a new connection: nothing of the old one is left to parse
        try:
            return super()._create_socket()
        except Exception as exc:
            self._on_error(_describe(exc))
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self._READ_SIZE)
            if not data:
                return data  # closed by the broker: paho handles it
            self._rbuf, self._rpos = data, 0
        chunk = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        self._batched_acks = []
        try:
            rc = super().loop_read(max_packets)
            # select() cannot see bytes already in our buffer: parse all it holds now, and let the
            # acknowledgements out every few hundred packets so the broker's window keeps moving
            count = 0
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) and self._sock is not None:
                rc = super().loop_read(1)
                count += 1
                if count % self._ACK_EVERY == 0:
                    self._flush_acks()
                    self._packet_write()
        finally:
            self._flush_acks()
            self._batched_acks = None
        return rc

    def _flush_acks(self) -> None:
        acks = self._batched_acks
        if acks and self._sock is not None:
            self._packet_queue(PUBACK, b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in acks), 0, 0)
        if acks:
            acks.clear()

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # the connection routes by itself (one on_message, see BrokerConnection._message_cb): skip
        # paho's per-message look-up in its empty message_callback_add matcher and its topic decode
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def _send_puback(self, mid: int) -> MQTTErrorCode:
        if self._batched_acks is not None and self._thread is not None \
                and threading.get_ident() == self._thread.ident:
            self._batched_acks.append(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._send_puback(mid)


_PUBACK = struct.Struct("!BBH")
PUBACK = 0x40
