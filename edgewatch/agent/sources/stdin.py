"""``stdin`` or ``-``: one JSON message per line on standard input.

A line is an array, ``{"values": [...]}``, or an object keyed by feature
name (rows assembled by :mod:`.rows`; a TOML ``[[source]]`` table may set
``max_age``).
"""

from __future__ import annotations

import io
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

from edgewatch.agent.sources.parsing import DEFAULT_MAX_BYTES, BadReason
from edgewatch.agent.sources.base import Item, Kind, Source, SourceContext, SourceSpec, row_assembler
from edgewatch.agent.sources.registry import register

STOP_POLL = 0.25  # seconds a read waits for data before it looks whether the agent is stopping
CHUNK = 65536


class StdinSource(Source):
    """One message per line on standard input (JSON array or object); its end is a clean end.

    Read as bytes, at most ``max_bytes`` a line: text that is not UTF-8 is
    bad input (``binary``, judged by the parser) rather than a decoding
    error that would end the source, and a line without end cannot fill
    the memory (``too_large``, skipped up to its newline).
    """

    name = "stdin"
    finite = True

    def __init__(self, stream: BinaryIO | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__()
        self.stream = stream
        self.max_bytes = max_bytes

    def run(self) -> None:
        """Cut lines from the input's chunks, at most ``max_bytes`` held (longer ones are ``too_large``)."""
        limit = self.max_bytes + 2  # a line of max_bytes and its "\r\n"
        held = bytearray()
        skipping = False  # inside a line already counted too_large, until its newline
        for chunk in self._chunks():
            held += chunk
            while (end := held.find(b"\n")) >= 0:
                line = bytes(held[:end + 1])
                del held[:end + 1]
                if skipping:
                    skipping = False
                elif len(line) > limit:
                    self._put(Item(Kind.BAD, self.name, BadReason.TOO_LARGE, time.time()))
                else:
                    self._line(line)
            if len(held) >= limit and not skipping:
                self._put(Item(Kind.BAD, self.name, BadReason.TOO_LARGE, time.time()))
                skipping = True
            if skipping:
                held.clear()
        if held and not skipping and not self.stopping:  # the last line, without its newline
            self._line(bytes(held))

    def _chunks(self) -> Iterator[bytes]:
        """The input's bytes as they come, until its end or the agent's stop.

        A descriptor is read only when it has data, so a stop is seen while the
        writer stays silent: a blocking ``readline`` could not be interrupted,
        the agent's stop waited forever for a pipe whose writer was still there
        (a service's SIGTERM), and leaving the reader behind aborted the
        interpreter at exit (it held the stdin buffer's lock). An in-memory
        stream (an embedder's, a test's) never blocks and is read as it is.
        """
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fd = None
        while not self.stopping:
            if fd is not None:
                ready, _, _ = select.select([fd], [], [], STOP_POLL)
                if not ready:
                    continue
            chunk = os.read(fd, CHUNK) if fd is not None else stream.read(CHUNK)
            if not chunk:
                return
            yield chunk

    def _line(self, line: bytes) -> None:
        line = line.strip()
        if line:
            self._put(Item(Kind.RAW, self.name, line, time.time()))


@register("stdin")
def build(spec: SourceSpec, ctx: SourceContext) -> StdinSource:
    settings = spec.checked({"max_age"})
    source = StdinSource(max_bytes=ctx.max_message_bytes)
    source.rows = row_assembler(source.name, ctx.features, settings.get("max_age"), ctx.states)
    return source
