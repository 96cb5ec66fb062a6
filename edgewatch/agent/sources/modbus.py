"""``modbus://``: registers of a Modbus TCP device, polled (``pymodbus`` client, extra ``[modbus]``).

``modbus://HOST:PORT/UNIT?registers=ADDR:TYPE[:SCALE[:OFFSET]],...&interval=SECONDS``
with one register spec per feature, in the model's order; ``TYPE`` is
``u16``, ``i16``, ``u32``, ``i32`` or ``f32`` (32-bit types over two registers,
``&word_order=big`` (default: high word first) or ``little``); the value is
``raw * SCALE + OFFSET``. Holding registers unless ``&table=input``. A TOML
``[[source]]`` table may map them by feature name instead::

    [[source]]
    url = "modbus://10.0.0.9:502/1"
    interval = 0.5
    table = "holding"
    word_order = "big"
    registers = { cpu = "0:u16:0.01", memory = "1:u16:0.01", traffic = "2:f32", fan = "4:i16:0.1:-5" }

All registers are read in as few requests as fit (at most 125 registers
each). Every reply is checked against its request before a word of it is
used. Bad input: an exception response (``exception_response``, by code in
``exceptions_by_code``), a reply with another function code or register
count than asked, or bytes that do not decode as one (``bad_reply``, by
kind in ``bad_replies``), no answer within ``timeout`` (``timeout``), an
infinite f32 (``non_finite``). An f32 that is NaN is a missing value, held
from the register's last value by the rules of every source (:mod:`.rows`:
up to ``max_age``, by default three polling intervals; then
``stale_feature``). Three timeouts in a row, a
reply that does not decode (the byte stream may be out of step), or a lost
connection drop the connection; it is opened again with jittered backoff,
forever, and the stream's windows reset (a gap).
"""

from __future__ import annotations

import logging
import math
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgewatch.agent.sources.feature_map import feature_table
from edgewatch.agent.sources.parsing import BadReason, Measurement
from edgewatch.agent.sources.rows import RowAssembler, cell_value
from edgewatch.agent.sources.base import (Backoff, Item, Kind, Source, SourceConfigError, SourceContext,
                                          SourceSpec, row_assembler)
from edgewatch.agent.sources.registry import register
from edgewatch.errors import MissingExtra

log = logging.getLogger("edgewatch.agent.sources")

SETTINGS = frozenset({"registers", "interval", "table", "word_order", "timeout", "stream", "max_age"})
WIDTH = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}
MAX_READ = 125  # registers per request (the protocol's limit)
TIMEOUTS_BEFORE_RECONNECT = 3


def require_pymodbus():  # noqa: ANN201 - the pymodbus module
    try:
        import pymodbus
    except ImportError as exc:
        raise MissingExtra("pymodbus", extra="modbus") from exc
    return pymodbus


@dataclass(frozen=True)
class Register:
    address: int
    kind: str
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        return WIDTH[self.kind]

    def decode(self, words: list[int], word_order: str) -> float:
        if self.kind == "u16":
            raw: float = words[0]
        elif self.kind == "i16":
            raw = words[0] - 0x10000 if words[0] & 0x8000 else words[0]
        else:
            hi, lo = (words[0], words[1]) if word_order == "big" else (words[1], words[0])
            bits = hi << 16 | lo
            if self.kind == "u32":
                raw = bits
            elif self.kind == "i32":
                raw = bits - 0x100000000 if bits & 0x80000000 else bits
            else:
                raw = struct.unpack(">f", struct.pack(">I", bits))[0]
        return raw * self.scale + self.offset


def parse_register(text: str) -> Register:
    """``ADDR:TYPE[:SCALE[:OFFSET]]``, e.g. ``0:u16``, ``10:f32:0.1``, ``4:i16:0.1:-5``."""
    parts = str(text).strip().split(":")
    if not 2 <= len(parts) <= 4 or parts[1] not in WIDTH:
        raise SourceConfigError(f"bad register spec {text!r}: use ADDR:TYPE[:SCALE[:OFFSET]] with TYPE one of "
                                f"{', '.join(WIDTH)} (e.g. 0:u16:0.01)")
    try:
        address = int(parts[0], 0)
        scale = float(parts[2]) if len(parts) > 2 else 1.0
        offset = float(parts[3]) if len(parts) > 3 else 0.0
    except ValueError:
        raise SourceConfigError(f"bad register spec {text!r}: address is an integer, scale and offset "
                                "numbers") from None
    if not 0 <= address <= 65535 - WIDTH[parts[1]] + 1 or not (math.isfinite(scale) and math.isfinite(offset)):
        raise SourceConfigError(f"bad register spec {text!r}: address 0..65535, finite scale and offset")
    return Register(address, parts[1], scale, offset)


def plan_reads(registers: list[Register]) -> list[tuple[int, int]]:
    """(start, count) requests covering every register, each at most MAX_READ long."""
    spans = sorted({(r.address, r.address + r.width) for r in registers})
    reads: list[list[int]] = []
    for lo, hi in spans:
        if reads and hi - reads[-1][0] <= MAX_READ:
            reads[-1][1] = max(reads[-1][1], hi)
        else:
            reads.append([lo, hi])
    return [(lo, hi - lo) for lo, hi in reads]


@dataclass(frozen=True)
class Polling:
    """How a unit is read: every ``interval`` seconds, from which table, in which word order, how patiently."""

    interval: float = 1.0
    table: str = "holding"  # or "input"
    word_order: str = "big"  # of 32-bit values over two registers
    timeout: float = 1.0


class ModbusSource(Source):
    """Polls one unit's registers at ``interval``; see the module docstring."""

    def __init__(self, name: str, host: str, port: int, unit: int, registers: list[Register],
                 polling: Polling | None = None, stream: str | None = None, backoff: Backoff | None = None,
                 rows: RowAssembler | None = None) -> None:
        super().__init__()
        p = polling or Polling()
        self.name = name
        self.host, self.port, self.unit = host, port, unit
        self.registers = registers
        self.reads = plan_reads(registers)
        self.interval = p.interval
        self.table = p.table
        self.word_order = p.word_order
        self.timeout = p.timeout
        self.stream = stream or name
        self.rows = rows or RowAssembler([str(r.address) for r in registers])
        self.backoff = backoff or Backoff(base=0.2, cap=10.0)
        self.connects = 0
        self.polls = 0
        self.measurements = 0
        self.timeouts = 0
        self.exceptions_by_code: dict[int, int] = {}
        self.bad_replies: dict[str, int] = {}  # by kind: function_code, register_count, undecodable, error
        self.last_error: str | None = None
        self._reply_bytes = 0  # bytes received for the request in flight (pymodbus's packet trace)

    def run(self) -> None:
        require_pymodbus()
        from pymodbus.client import ModbusTcpClient

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs every timeout; we count them
        while not self.stopping:
            client = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout, retries=0,
                                     trace_packet=self._trace)
            try:
                if not client.connect():
                    self._failed(f"cannot connect to {self.host}:{self.port}")
                    continue
                if self.connects:
                    self._put(Item(Kind.RESET, self.name, None, time.time()))
                self.connects += 1
                self.backoff.reset()
                self.last_error = None
                log.info("Modbus %s: connected (connection %d)", self.name, self.connects)
                self._poll(client)
            finally:
                client.close()

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("Modbus %s: %s; retrying with backoff", self.name, reason)
        self.last_error = reason
        self._stop.wait(self.backoff.next_delay())

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._reply_bytes += len(data)
        return data

    def _poll(self, client: Any) -> None:
        from pymodbus.exceptions import ConnectionException, ModbusIOException

        read = client.read_holding_registers if self.table == "holding" else client.read_input_registers
        function = 3 if self.table == "holding" else 4
        next_t = time.monotonic()
        timeouts_in_row = 0
        while not self.stopping:
            self.polls += 1
            words: dict[int, int] = {}
            outcome: BadReason | None = None
            resync = None  # why the connection must be dropped: its byte stream may be out of step
            try:
                for start, count in self.reads:
                    self._reply_bytes = 0
                    rr = read(start, count=count, device_id=self.unit)
                    outcome = self._check(rr, function, count)
                    if outcome is not None:
                        break
                    words.update(zip(range(start, start + count), rr.registers))
                timeouts_in_row = 0
            except ConnectionException as exc:
                self._failed(f"connection lost ({exc})")
                return
            except ModbusIOException as exc:
                if self._reply_bytes:  # bytes came, but not a reply pymodbus could read
                    outcome = self._bad_reply("undecodable", f"{self._reply_bytes} byte(s) that are not a Modbus "
                                              f"reply ({exc})")
                    resync = "a reply that does not decode"
                else:  # no answer in time
                    self.timeouts += 1
                    timeouts_in_row += 1
                    outcome = BadReason.TIMEOUT
            except OSError as exc:
                self._failed(f"connection lost ({exc})")
                return
            except Exception as exc:  # whatever else a reply nobody foresaw makes the library raise
                outcome = self._bad_reply("error", f"reading a reply raised {type(exc).__name__}: {exc}")
                resync = f"{type(exc).__name__} while reading a reply"
            now = time.time()
            if outcome is None:
                outcome = self._measure(words, now)
            if outcome is not None and not self._put(Item(Kind.BAD, self.name, outcome, now)):
                return
            if resync is not None:
                self._failed(f"{resync}, so the connection is dropped")
                return
            if timeouts_in_row >= TIMEOUTS_BEFORE_RECONNECT:
                self._failed(f"{timeouts_in_row} requests in a row got no answer within {self.timeout}s")
                return
            next_t += self.interval
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_t = time.monotonic()  # behind (a slow device): do not burst to catch up

    def _check(self, rr: Any, function: int, count: int) -> BadReason | None:
        """None when ``rr`` answers a read of ``count`` registers with ``function``; else why not (counted)."""
        fc = int(getattr(rr, "function_code", -1))
        if rr.isError():
            if fc & 0x7F != function:
                return self._bad_reply("function_code", f"exception reply 0x{fc:02x} to a function {function} "
                                       "request")
            code = int(getattr(rr, "exception_code", 0) or 0)
            self.exceptions_by_code[code] = self.exceptions_by_code.get(code, 0) + 1
            return BadReason.EXCEPTION_RESPONSE
        if fc != function:
            return self._bad_reply("function_code", f"a reply with function code {fc} to a function {function} "
                                   "request")
        got = len(getattr(rr, "registers", None) or ())
        if got != count:
            return self._bad_reply("register_count", f"{got} register(s) in a reply to a read of {count}")
        return None

    def _bad_reply(self, kind: str, detail: str) -> BadReason:
        self.bad_replies[kind] = self.bad_replies.get(kind, 0) + 1
        self._note_bad(BadReason.BAD_REPLY, f"bad reply: {detail}")
        return BadReason.BAD_REPLY

    def _measure(self, words: dict[int, int], now: float) -> BadReason | None:
        cells = []
        for r in self.registers:
            v = cell_value(r.decode([words[a] for a in range(r.address, r.address + r.width)], self.word_order))
            if type(v) is BadReason:
                return v
            cells.append(v)
        m = self.rows.row(self.stream, cells, now, now)
        if type(m) is not Measurement:
            return m
        self.measurements += 1
        self._put(Item(Kind.MEASUREMENT, self.name, m, now))
        return None


@register("modbus")
def build(spec: SourceSpec, ctx: SourceContext) -> ModbusSource:
    """``modbus://host:port/unit?registers=...&interval=S[&table=input][&word_order=little][&timeout=S]``."""
    require_pymodbus()
    settings = spec.checked(SETTINGS)
    parts = urlsplit(spec.url)
    if not parts.hostname:
        raise SourceConfigError(f"bad Modbus source {spec.name!r}: use modbus://host:port/unit?registers=...")
    unit_text = parts.path.strip("/") or "1"
    if not unit_text.isdigit() or not 0 <= int(unit_text) <= 255:
        raise SourceConfigError(f"source {spec.name!r}: the unit id (the path) is 0..255, got {unit_text!r}")
    specs = settings.get("registers")
    if specs is None:
        raise SourceConfigError(f"source {spec.name!r} names no registers: add ?registers=ADDR:TYPE,... (one per "
                                f"feature: {', '.join(ctx.features)})")
    if isinstance(specs, dict):
        specs = list(feature_table(spec.name, "registers", specs, ctx.features).values())
    elif isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    registers = [parse_register(s) for s in specs]
    if len(registers) != len(ctx.features):
        raise SourceConfigError(f"source {spec.name!r} has {len(registers)} register specs; the model reads "
                                f"{len(ctx.features)} features {ctx.features}, in that order")
    table = str(settings.get("table", "holding"))
    word_order = str(settings.get("word_order", "big"))
    if table not in ("holding", "input") or word_order not in ("big", "little"):
        raise SourceConfigError(f"source {spec.name!r}: table is holding or input, word_order big or little")
    try:
        interval = float(settings.get("interval", 1.0))
        timeout = float(settings.get("timeout", 1.0))
    except (TypeError, ValueError):
        raise SourceConfigError(f"source {spec.name!r}: interval and timeout are seconds") from None
    if not (interval > 0 and timeout > 0):
        raise SourceConfigError(f"source {spec.name!r}: interval and timeout must be positive")
    host = parts.hostname
    port = parts.port or 502
    shown = f"[{host}]" if ":" in host else host
    name = f"modbus://{shown}:{port}/{int(unit_text)}"
    return ModbusSource(name, host, port, int(unit_text), registers, Polling(interval, table, word_order, timeout),
                        stream=settings.get("stream"), rows=row_assembler(name, ctx.features, settings.get("max_age")))
