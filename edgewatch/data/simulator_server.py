"""The simulated equipment as a websocket server: one JSON message per measurement.

Every client gets the same live stream (a new client joins where the
stream is, it does not replay it). Messages follow a monotonic-clock
schedule, ``seq / rate`` seconds after the start, and every due message is
sent in the same event-loop tick, so the average rate stays exact at 20 Hz
and at 20,000 Hz alike. ``SimulatorServer`` runs the asyncio server in a
background thread for tests, demos and benchmarks; it can be stopped and
started again on the same port, and the stream then goes on where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from edgewatch.data.faults import FaultPlan, FaultSpec, RandomFaults, ScheduledFaults
from edgewatch.data.simulator import EquipmentStream, Simulator, SimulatorConfig, StreamClock, write_truth
from edgewatch.errors import BadInput, EdgewatchError

log = logging.getLogger(__name__)

MAX_CLIENT_BUFFER = 32 * 2**20
"""A client more than this many bytes behind is disconnected rather than let the server's memory grow."""

MAX_LAG_SECONDS = 2.0
"""When the sender falls this far behind its schedule (machine overloaded), it skips ahead instead of bursting."""


class FaultMode(str, Enum):
    """Where faults come from: none, a fixed schedule, or random draws."""

    NONE = "none"
    SCHEDULE = "schedule"
    RANDOM = "random"


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``edgewatch simulate`` serves. ``port=0`` picks a free port.

    ``count`` (measurements per stream) and ``duration`` (seconds) end the
    stream, whichever comes first; ``None`` runs until stopped.
    ``schedule`` is in messages; ``fault_every`` in seconds.
    """

    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 20.0
    streams: int = 1
    with_time: bool = False
    # ts = the moment a message goes on the wire, not its slot in the schedule: what a delivery-delay
    # measurement needs (the event loop wakes up to a millisecond or more after a slot is due)
    send_time: bool = False
    count: int | None = None
    duration: float | None = None
    seed: int = 0
    faults: FaultMode = FaultMode.NONE
    schedule: tuple[FaultSpec, ...] = ()
    fault_every: float = 15.0
    truth_path: Path | None = None
    signal: SimulatorConfig = field(default_factory=SimulatorConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", FaultMode(self.faults))
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise BadInput(f"--rate must be a positive number of messages per second, got {self.rate}")
        if self.streams < 1:
            raise BadInput(f"--streams must be >= 1, got {self.streams}")
        if self.count is not None and self.count < 0:
            raise BadInput(f"--count must be >= 0, got {self.count}")
        if self.duration is not None and self.duration < 0:
            raise BadInput(f"--duration must be >= 0, got {self.duration}")
        if self.faults is FaultMode.RANDOM and self.fault_every <= 0:
            raise BadInput(f"--fault-every must be a positive number of seconds, got {self.fault_every}")
        if self.faults is FaultMode.SCHEDULE and not self.schedule:
            raise BadInput("--faults schedule needs at least one --fault TYPE@START (or a --schedule file)")
        ScheduledFaults(self.schedule)  # rejects overlapping faults early

    def plan_for(self, index: int) -> FaultPlan:
        """The fault plan of stream ``index`` (random streams each draw their own faults)."""
        if self.faults is FaultMode.RANDOM:
            return RandomFaults(every=max(1, round(self.fault_every * self.rate)), seed=self.seed * 1000 + index)
        if self.faults is FaultMode.SCHEDULE:
            return ScheduledFaults(self.schedule)
        return ScheduledFaults(())


def encode_messages(values: np.ndarray, first_seq: int, ts: np.ndarray | None, stream: str | None) -> list[str]:
    """JSON text of each measurement: a bare array, or an object when time or a stream id is asked for."""
    rows = np.round(values, 5).tolist()
    if ts is None and stream is None:
        return [json.dumps(r, separators=(",", ":")) for r in rows]
    out = []
    for i, r in enumerate(rows):
        msg: dict[str, object] = {}
        if stream is not None:
            msg["stream"] = stream
        if ts is not None:
            msg["ts"] = round(float(ts[i]), 6)
            msg["seq"] = first_seq + i
        msg["values"] = r
        out.append(json.dumps(msg, separators=(",", ":")))
    return out


class SimulatorServer:
    """The simulator served on ``ws://host:port/`` from a background thread.

    Use as a context manager, or ``start()`` / ``stop()``; ``stop()`` then
    ``start()`` serves again on the same port (what a reconnect test needs).
    ``messages_sent`` counts JSON messages produced (measurements × streams),
    whether or not a client was connected; ``wait()`` blocks until a
    ``count`` or ``duration`` limit ends the stream.
    """

    def __init__(self, config: ServerConfig | None = None, serve: str | None = None) -> None:
        """``serve``: a field protocol URL (see :mod:`edgewatch.data.simulator_outlets`) instead of the websocket."""
        self.config = config or ServerConfig()
        self._outlet = None
        if serve is not None:
            from edgewatch.data.simulator_outlets import make_outlet

            self._outlet = make_outlet(serve)
        self.port = self.config.port
        self.messages_sent = 0
        clock = StreamClock(self.config.rate)
        self._streams = [
            EquipmentStream(
                f"eq-{i}",
                Simulator(self.config.seed + i, self.config.signal),
                self.config.plan_for(i),
                clock,
            )
            for i in range(self.config.streams)
        ]
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._truth: IO[str] | None = None
        self._truth_opened = False
        self._clients: set = set()
        self.truth_written = 0

    @property
    def url(self) -> str:
        """Where clients connect, e.g. ``ws://127.0.0.1:8765/`` (or the --serve URL)."""
        if self._outlet is not None:
            return self._outlet.url
        return f"ws://{self.config.host}:{self.port}/"

    @property
    def sequence(self) -> int:
        """The sequence number of the next measurement (per stream)."""
        return self._streams[0].position

    @property
    def clients(self) -> int:
        """How many websocket clients are connected now."""
        return len(self._clients)

    @property
    def running(self) -> bool:
        """True while the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        """Bind (the same port as before on a restart) and start sending; returns once listening."""
        if self.running:
            return self
        self._ready.clear()
        self._finished.clear()
        self._error = None
        if self.config.truth_path is not None:
            mode = "a" if self._truth_opened else "w"
            self._truth = open(self.config.truth_path, mode, buffering=1)
            self._truth_opened = True
        self._thread = threading.Thread(target=self._run, name="edgewatch-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise EdgewatchError(f"the simulator did not start listening within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            self._close_truth()
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and the port; faults still running end here in the truth file."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None
        self._close_truth()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the stream ends by ``count``/``duration`` (or ``stop``); False on timeout."""
        return self._finished.wait(timeout)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _close_truth(self) -> None:
        if self._truth is not None:
            self._truth.close()
            self._truth = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            if not isinstance(exc, EdgewatchError):
                log.exception("simulator server failed")
        finally:
            self._ready.set()
            self._finished.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        close = await (self._open_outlet() if self._outlet is not None else self._open_websocket())
        what = "serving" if self._outlet is not None else "listening on"
        log.info("simulator %s %s (%s stream(s) at %g Hz)", what, self.url, self.config.streams, self.config.rate)
        self._ready.set()
        try:
            await self._run_producer()
        finally:
            self._report(final=True)
            self._finished.set()
            await close()
            log.info("simulator stopped after %d messages", self.messages_sent)

    async def _open_outlet(self) -> Callable[[], Awaitable[None]]:
        """Open the protocol outlet (--serve); returns how to close it."""
        assert self._outlet is not None
        await self._outlet.open([eq.name for eq in self._streams])
        return self._outlet.close

    async def _open_websocket(self) -> Callable[[], Awaitable[None]]:
        """Listen for websocket clients; returns how to stop listening."""
        from websockets.asyncio.server import serve

        try:
            server = await serve(
                self._handle, self.config.host, self.port,
                compression=None, max_size=2**16, ping_interval=20, ping_timeout=20, close_timeout=1,
            )
        except OSError as exc:
            raise EdgewatchError(
                f"cannot listen on {self.config.host}:{self.port} ({exc.strerror}); "
                "choose another --port, or --port 0 for a free one"
            ) from exc
        self.port = server.sockets[0].getsockname()[1]

        async def close() -> None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

        return close

    async def _run_producer(self) -> None:
        assert self._stop is not None
        producer = asyncio.ensure_future(self._produce())
        stopper = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({producer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (producer, stopper):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        if producer.done() and not producer.cancelled() and producer.exception() is not None:
            raise producer.exception()  # type: ignore[misc]

    async def _handle(self, connection) -> None:  # noqa: ANN001 - websockets ServerConnection
        peer = connection.remote_address
        self._clients.add(connection)
        log.info("client %s connected to %s (%d connected)", peer, connection.request.path, len(self._clients))
        try:
            async for _ in connection:  # clients have nothing to say; drain and ignore
                pass
        except Exception:  # noqa: BLE001 - a broken client must not disturb the others
            pass
        finally:
            self._clients.discard(connection)
            log.info("client %s disconnected (%d connected)", peer, len(self._clients))

    def _limit(self) -> int | None:
        """Last sequence number (exclusive) this stream may reach."""
        limits = []
        if self.config.count is not None:
            limits.append(self.config.count)
        if self.config.duration is not None:
            limits.append(self._run_first + math.ceil(self.config.duration * self.config.rate))
        return min(limits) if limits else None

    async def _produce(self) -> None:
        if self._outlet is None:
            from websockets.asyncio.server import broadcast

        loop = asyncio.get_running_loop()
        rate = self.config.rate
        self._run_first = self.sequence
        limit = self._limit()
        t0, sent = loop.time(), 0
        self._clock.anchor(self.sequence, time.time())
        with_time = self.config.with_time
        named = self.config.streams > 1
        # Never put more than ~50 ms of messages (at least 1) in one tick, so the loop can read sockets.
        max_batch = max(1, int(rate * 0.05))
        while limit is None or self.sequence < limit:
            due = int((loop.time() - t0) * rate) + 1 - sent
            if due > rate * MAX_LAG_SECONDS and due > max_batch:
                log.warning("simulator is %.1f s behind its %g Hz schedule; skipping ahead", due / rate, rate)
                t0, sent = loop.time(), 0
                self._clock.anchor(self.sequence, time.time())
                continue
            n = min(due, max_batch)
            if limit is not None:
                n = min(n, limit - self.sequence)
            if n > 0:
                first = self.sequence
                ts = None
                if with_time or self._outlet is not None:
                    ts = np.full(n, time.time()) if self.config.send_time else self._clock.many(first, n)
                for index, eq in enumerate(self._streams):
                    if self._outlet is not None:
                        await self._outlet.emit(index, eq.name, eq.take(n), first, ts)
                        continue
                    texts = encode_messages(eq.take(n), first, ts, eq.name if named else None)
                    if self._clients:
                        targets = [c for c in list(self._clients) if self._keeping_up(c)]
                        for text in texts:
                            broadcast(targets, text)
                sent += n
                self.messages_sent += n * len(self._streams)
                self._report(final=False)
            wake = t0 + sent / rate
            await asyncio.sleep(max(0.0, wake - loop.time()))
        if self.config.duration is not None:  # the stream ends at its duration, not at its last message
            await asyncio.sleep(max(0.0, t0 + self.config.duration - loop.time()))

    def _keeping_up(self, connection) -> bool:  # noqa: ANN001
        transport = connection.transport
        if transport is None or transport.get_write_buffer_size() <= MAX_CLIENT_BUFFER:
            return True
        log.warning("client %s is too slow (more than %d MB queued); closing it",
                    connection.remote_address, MAX_CLIENT_BUFFER >> 20)
        transport.abort()
        self._clients.discard(connection)
        return False

    def _report(self, final: bool) -> None:
        records = []
        for eq in self._streams:
            records.extend(eq.close() if final else eq.finished())
        if records:
            for r in records:
                log.info("fault %s on %s %s ended at message %d", r.fault, r.stream, r.features, r.end_index)
            if self._truth is not None:
                self.truth_written += write_truth(records, self._truth)
