"""SIGTERM, SIGINT and SIGHUP held from the ``edgewatch`` program's first call until a command says how it stops.

Why: ``edgewatch agent run`` spends its first ~0.5 s importing NumPy,
ONNX Runtime and paho before its command runs. A stop there (``systemctl
stop`` or ``docker stop`` right after a start) met Python's defaults:
SIGTERM killed the process (exit -15, 143 in a container) and SIGINT was a
``KeyboardInterrupt`` traceback from inside an import, or click's
``Aborted!`` with exit 1. Held here, the signal waits for the command: the
agent takes it (:meth:`EarlySignals.take`) and stops as for any stop while
starting (exit 0); every other command gets Python's handling back
(:meth:`EarlySignals.release`) with the held signal delivered then, so
``edgewatch fit`` stopped during its imports ends as it always did.

Installed by the program's entry (:mod:`edgewatch.cli`'s ``main()``), not
on import: a library or a test importing :mod:`edgewatch.cli` keeps its
own handlers. What it cannot cover: the interpreter's own start and the
import of click before ``main()`` runs (~45 ms measured here); a signal
there still takes the default action, with nothing opened yet.

Only :mod:`signal` is imported here, so the entry can hold before anything heavy.
"""

from __future__ import annotations

import signal

# SIGHUP too: the terminal an agent runs in was closed (an ssh session ended); its default also kills with
# nothing closed. A signal ignored at the start (SIGHUP under nohup) stays ignored.
STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def stop_signals() -> list[int]:
    """The stop signals this process takes: :data:`STOPS` but those it was started ignoring (``nohup``)."""
    return [s for s in STOPS if signal.getsignal(s) is not signal.SIG_IGN]


class EarlySignals:
    """The stop signals of one process, held until a command takes them or hands them back."""

    def __init__(self) -> None:
        self.held: int | None = None  # the first stop signal that came while holding
        self.holding = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Hold the stop signals from now on (once; again after a take or a release is a no-op)."""
        if self.holding or self._previous:
            return
        self.holding = True
        for s in stop_signals():
            self._previous[s] = signal.signal(s, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        if self.held is None:  # a second stop changes nothing: the first is still to be acted on
            self.held = signum

    def take(self) -> int | None:
        """The caller has installed its own handlers: the signal held, if any, is its to act on now."""
        held, self.held = self.held, None
        self.holding = False
        return held

    def release(self) -> None:
        """Python's handlers again, for a command without its own; a held signal is delivered now."""
        if not self.holding:
            return
        self.holding = False
        for s, previous in self._previous.items():
            signal.signal(s, previous)  # type: ignore[arg-type]
        held, self.held = self.held, None
        if held is not None:
            signal.raise_signal(held)


EARLY = EarlySignals()
