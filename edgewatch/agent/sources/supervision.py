"""The agent's side of a source's life: restart a source whose thread died, give up on one that keeps dying.

Why restart at all when every source already catches what one reading
can throw: a bug that slips past those guards once (a library raising
something new on a reply nobody foresaw) must cost a few seconds of that
source, not the agent's whole watch. Why give up: a source that dies over
and over is broken, not unlucky; when every source has ended that way the
agent exits 1, and the service manager (``Restart=on-failure``) starts a
fresh process, with a clear line in the journal saying which source and why.

A replay or stdin source is never restarted: restarting would read its
input again from the start (a replay) or past a gap nobody can see
(stdin); its failure ends it, unexpectedly.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from dataclasses import dataclass, field
from typing import Any

from edgewatch.agent.sources.base import Item, Source

log = logging.getLogger("edgewatch.agent")


@dataclass
class RestartPolicy:
    """A source that died fewer than ``limit`` times in the last ``window`` seconds is started again after
    ``base``·2^(deaths-1) seconds (at most ``cap``, times a random factor in [0.5, 1.5))."""

    limit: int = 5
    window: float = 600.0
    base: float = 1.0
    cap: float = 60.0

    def delay(self, deaths: int, rng: random.Random) -> float:
        return min(self.cap, self.base * 2 ** max(0, deaths - 1)) * (0.5 + rng.random())


@dataclass
class _Life:
    deaths: list[float] = field(default_factory=list)  # monotonic times of deaths within the policy's window
    restart_at: float | None = None
    ended: bool = False
    why: str | None = None  # set when it ended unexpectedly


class SourceSupervisor:
    """Starts the agent's sources, restarts the ones that die, and knows when all have ended.

    Driven by the agent loop's thread only: :meth:`ended` and
    :meth:`failed` for the END and FAILED items it drains, :meth:`tick` on
    every turn to start the restarts that are due.
    """

    def __init__(self, sources: list[Source], q: queue.Queue[Item], metrics: Any,
                 policy: RestartPolicy | None = None, rng: random.Random | None = None) -> None:
        self.sources = sources
        self.queue = q
        self.metrics = metrics
        self.policy = policy or RestartPolicy()
        self.rng = rng or random.Random()
        self.restarts = 0
        self._lives: dict[int, _Life] = {id(s): _Life() for s in sources}
        self._stopping = False

    def start_all(self) -> None:
        for src in self.sources:
            src.start(self.queue)
        self._report_running()

    def stop_all(self) -> None:
        """Tell every source to stop; a restart that was waiting will not happen (that source has ended)."""
        self._stopping = True
        for src in self.sources:
            src.stop()
            life = self._lives[id(src)]
            if life.restart_at is not None:
                life.restart_at = None
                life.ended = True
        self._report_running()

    def ended(self, src: Source) -> None:
        self._lives[id(src)].ended = True
        self._report_running()

    def failed(self, src: Source, why: str) -> None:
        """A source's thread ended without being told to: restart it later, or give it up (logged either way)."""
        life = self._lives[id(src)]
        now = time.monotonic()
        life.deaths = [t for t in life.deaths if now - t < self.policy.window] + [now]
        running = sum(1 for s in self.sources if s is not src and not self._lives[id(s)].ended)
        if self._stopping:
            life.ended = True
        elif src.finite:
            life.ended, life.why = True, why
            log.error("source %s failed: %s; a source with an end (replay, stdin) is not restarted; %d other "
                      "source(s) still running", src.name, why, running)
        elif len(life.deaths) >= self.policy.limit:
            life.ended = True
            life.why = (f"died {len(life.deaths)} times in {self.policy.window:g}s, giving up; last: {why}")
            log.error("source %s %s; %d other source(s) still running", src.name, life.why, running)
        else:
            delay = self.policy.delay(len(life.deaths), self.rng)
            life.restart_at = now + delay
            log.error("source %s died (%s); restarting it in %.1fs (%d death(s) in %gs; given up at %d)",
                      src.name, why, delay, len(life.deaths), self.policy.window, self.policy.limit)
        self._report_running()

    def tick(self) -> None:
        """Start the sources whose restart is due (cheap when none waits)."""
        now = None
        for src in self.sources:
            life = self._lives[id(src)]
            if life.restart_at is None:
                continue
            now = now or time.monotonic()
            if now < life.restart_at:
                continue
            life.restart_at = None
            src.start(self.queue)
            self.restarts += 1
            self.metrics.source_restarts.labels(src.name).inc()
            log.warning("source %s started again (restart %d of this agent)", src.name, self.restarts)
            self._report_running()

    @property
    def all_ended(self) -> bool:
        return all(life.ended for life in self._lives.values())

    def running_names(self) -> list[str]:
        """The sources that have not ended (for the log of a stop that could not wait for them)."""
        return [s.name for s in self.sources if not self._lives[id(s)].ended]

    @property
    def threads_done(self) -> bool:
        return not any(s.alive for s in self.sources)

    def failures(self) -> dict[str, str]:
        """The sources that ended unexpectedly, by name, with why."""
        return {s.name: life.why for s in self.sources if (life := self._lives[id(s)]).why is not None}

    def _report_running(self) -> None:
        self.metrics.sources_running.set(sum(1 for life in self._lives.values()
                                             if not life.ended and life.restart_at is None))
