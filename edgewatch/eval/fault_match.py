"""Match alerted episodes to ground-truth fault intervals (the demo's scorecard).

A fault is *caught* when an episode starts inside it or within ``slack``
seconds after its end (a start inside a later fault belongs to that one) (a window-based detector sees a fault only once the
window covers it, and a short spike can end before k of n windows agree).
An episode that starts inside no fault's ``[start, end + slack]`` is a
*false alarm*. Several episodes inside one fault count once: the fault was
caught, the extra episodes are listed as repeats, not as false alarms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaultOutcome:
    fault: str
    features: list[str]
    start_ts: float
    end_ts: float
    caught: bool = False
    delay_s: float | None = None  # first episode start minus fault start
    episodes: int = 0


@dataclass
class Scorecard:
    faults: list[FaultOutcome]
    false_alarms: list[float] = field(default_factory=list)  # start times of unmatched episodes

    @property
    def caught(self) -> int:
        return sum(f.caught for f in self.faults)

    @property
    def missed(self) -> list[FaultOutcome]:
        return [f for f in self.faults if not f.caught]


def match_episodes(truth: list[dict[str, Any]], episode_starts: list[float], slack: float) -> Scorecard:
    """Pair episode start times with fault records (dicts with fault/features/start_ts/end_ts)."""
    faults = [FaultOutcome(t["fault"], list(t.get("features", [])), float(t["start_ts"]), float(t["end_ts"]))
              for t in sorted(truth, key=lambda t: t["start_ts"])]
    card = Scorecard(faults)
    for start in sorted(episode_starts):
        # a fault the episode starts inside wins; else the latest fault it follows within the slack
        hit = next((f for f in faults if f.start_ts - 1e-9 <= start <= f.end_ts), None)
        if hit is None:
            hit = next((f for f in reversed(faults) if f.end_ts < start <= f.end_ts + slack), None)
        if hit is None:
            card.false_alarms.append(start)
            continue
        hit.episodes += 1
        if not hit.caught:
            hit.caught = True
            hit.delay_s = start - hit.start_ts
    return card


def format_scorecard(card: Scorecard) -> str:
    """A plain-text table: one row per fault, then the totals."""
    lines = [f"{'fault':<12} {'features':<22} {'length s':>8}  {'result':<7} {'delay s':>7}  episodes",
             "-" * 72]
    for f in card.faults:
        delay = f"{f.delay_s:7.2f}" if f.delay_s is not None else "      -"
        lines.append(f"{f.fault:<12} {','.join(f.features):<22} {f.end_ts - f.start_ts:8.1f}  "
                     f"{'caught' if f.caught else 'MISSED':<7} {delay}  {f.episodes}")
    lines.append("-" * 72)
    lines.append(f"faults injected {len(card.faults)}, caught {card.caught}, missed {len(card.missed)}, "
                 f"false alarms {len(card.false_alarms)}")
    return "\n".join(lines)
