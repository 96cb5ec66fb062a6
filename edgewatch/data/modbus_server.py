"""A minimal Modbus TCP server: holding and input registers, for the simulator and the tests.

Modbus TCP is small: a 7-byte MBAP header (transaction id, protocol 0,
length, unit id) and a PDU. This server answers function 3 (read holding
registers), 4 (read input registers), 6 and 16 (write holding registers);
anything else gets exception 1 (illegal function), a read past the table
exception 2 (illegal data address). For tests it can also answer every
read with a given exception code, or fall silent (accept and never
answer), and it can be stopped and started again on the same port.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading

log = logging.getLogger(__name__)

_MBAP = struct.Struct(">HHHB")


class ModbusServer:
    """Registers ``holding`` and ``input`` (65536 words each) served on ``host:port`` (0 = a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, unit: int | None = None) -> None:
        self.host = host
        self.port = port
        self.unit = unit  # None: answer every unit id
        self.holding = [0] * 65536
        self.input = [0] * 65536
        self.exception_code: int | None = None  # answer every read with this exception
        self.silent = False  # accept connections, read requests, never answer
        self.requests = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._running = threading.Event()

    @property
    def url(self) -> str:
        return f"modbus://{self.host}:{self.port}"

    def set_registers(self, address: int, words: list[int], table: str = "holding") -> None:
        regs = self.holding if table == "holding" else self.input
        with self._lock:
            regs[address:address + len(words)] = [w & 0xFFFF for w in words]

    def start(self) -> ModbusServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._running.set()
        t = threading.Thread(target=self._accept, args=(sock,), name="modbus-server", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        """Close the listener and every connection (a server restart or crash, as clients see it)."""
        self._running.clear()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for t in self._threads:
            t.join(2.0)
        self._threads = []

    def __enter__(self) -> ModbusServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _accept(self, sock: socket.socket) -> None:
        while self._running.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="modbus-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            while self._running.is_set():
                header = _recv_exact(conn, 7)
                if header is None:
                    return
                tid, proto, length, unit = _MBAP.unpack(header)
                pdu = _recv_exact(conn, length - 1) if length > 1 else b""
                if pdu is None:
                    return
                self.requests += 1
                if proto != 0 or self.silent or (self.unit is not None and unit != self.unit):
                    continue  # a gateway without that unit does not answer either
                reply = self._answer(pdu)
                conn.sendall(_MBAP.pack(tid, 0, len(reply) + 1, unit) + reply)
        except OSError:
            return
        finally:
            self._conns.discard(conn)
            conn.close()

    def _answer(self, pdu: bytes) -> bytes:
        fc = pdu[0] if pdu else 0
        if fc in (3, 4) and len(pdu) == 5:
            if self.exception_code is not None:
                return bytes([fc | 0x80, self.exception_code])
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= 125 or address + count > 65536:
                return bytes([fc | 0x80, 2])
            regs = self.holding if fc == 3 else self.input
            with self._lock:
                words = regs[address:address + count]
            return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *words)
        if fc == 6 and len(pdu) == 5:
            address, value = struct.unpack(">HH", pdu[1:5])
            self.set_registers(address, [value])
            return pdu
        if fc == 16 and len(pdu) >= 6:
            address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
            words = list(struct.unpack(f">{count}H", pdu[6:6 + 2 * count])) if nbytes == 2 * count else None
            if not words:
                return bytes([fc | 0x80, 3])
            self.set_registers(address, words)
            return pdu[:5]
        return bytes([(fc | 0x80) & 0xFF, 1])


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def encode_value(value: float, kind: str, scale: float = 1.0, offset: float = 0.0,
                 word_order: str = "big") -> list[int]:
    """The register words that a source reading ``kind`` with this scale/offset decodes to ``value``."""
    raw = (value - offset) / scale
    if kind == "f32":
        (bits,) = struct.unpack(">I", struct.pack(">f", raw))
    else:
        n = round(raw)
        bits = n & (0xFFFF if kind in ("u16", "i16") else 0xFFFFFFFF)
    if kind in ("u16", "i16"):
        return [bits]
    hi, lo = bits >> 16, bits & 0xFFFF
    return [hi, lo] if word_order == "big" else [lo, hi]
