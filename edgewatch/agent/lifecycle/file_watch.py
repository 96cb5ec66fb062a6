"""``--watch-model``: the model file is polled, and a new version that stays put is offered to the agent.

The path is polled (mtime, size, inode); a change that stays put for one
more poll is read once and goes through :func:`~edgewatch.agent.lifecycle.accept.accept`
like every other model. Replace the file atomically (write a temporary file
beside it, then ``mv``/rename): a half-written file is refused, not run.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from edgewatch import digests
from edgewatch.agent.lifecycle.accept import Candidate, Gate, Origin, Outcome, Verdict, accept

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent


class ModelFileWatcher:
    """Polls the model path and offers a changed file to the agent (:meth:`start` runs it in a thread)."""

    def __init__(self, agent: Agent, path: str | os.PathLike[str], gate: Gate, interval: float = 1.0) -> None:
        self.agent = agent
        self.path = Path(path)
        self.gate = gate
        self.interval = interval
        self.accepted = 0
        self.refused = 0
        self.last_outcome: Outcome | None = None
        self._last = self._stat()
        self._seen_sha = agent.model.sha256
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def start(self) -> ModelFileWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> Outcome | None:
        """One poll: offer the file when it changed and then stayed put for one interval (None: not offered)."""
        now = self._stat()
        if now is None or now == self._last:
            return None
        self._stop.wait(min(self.interval, 0.5))
        if self._stat() != now:
            return None  # still being written; next poll
        self._last = now
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        sha = digests.sha256(data).hexdigest()
        if sha == self._seen_sha:
            return None
        self._seen_sha = sha
        outcome = accept(self.agent, Candidate(self.path, Origin.FILE, data=data, sha256=sha), self.gate)
        if outcome.verdict is Verdict.REFUSED:
            self.refused += 1
        elif outcome.changed:
            self.accepted += 1
        self.last_outcome = outcome
        return outcome

    def close(self) -> None:
        self._stop.set()
