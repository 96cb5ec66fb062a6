"""Reading the agents' retained status payloads (contract v1) into rows for ``edgewatch fleet status``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewatch.mqtt import payloads


@dataclass
class AgentStatus:
    """One row of ``edgewatch fleet status``: the agent's retained status, read per the contract."""

    agent: str
    state: str
    model_sha256: str | None = None
    note: str = ""
    since: str | None = None
    shadow_sha256: str | None = None
    uptime_s: float | None = None
    messages_per_s: float | None = None
    bad: int | None = None
    open_episodes: int | None = None
    last_alert: str | None = None
    spool_depth: int | None = None
    version: int | None = None
    age_s: float | None = None
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    previous_sha256: str | None = None  # what a rollback returns it to

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "raw"}
        out["status"] = self.raw
        return out


def read_status(agent: str, payload: bytes, received_at: float, now: float | None = None) -> AgentStatus:
    """An :class:`AgentStatus` from a retained status payload.

    ``state`` is ``online`` only while the agent keeps its status fresh: an
    ``online`` status older than the agent's own ``stale_after_s`` (its
    status interval plus its keepalive) is shown ``offline`` with the
    reason, so a dead agent shows offline even before the broker's last
    will (1.5 keepalives) arrives.
    """
    now = time.time() if now is None else now
    state = payloads.status_state(payload)
    if state is None:
        return AgentStatus(agent, "unknown", reason="status payload does not follow the contract")
    try:
        obj = payloads.loads(payload, "status") if payload[:1] == b"{" else {"state": state}
    except payloads.ContractError as exc:
        return AgentStatus(agent, "unknown", reason=str(exc))
    model = obj.get("model") or {}
    previous = obj.get("previous_model") or {}
    shadow = obj.get("shadow") or {}
    last = obj.get("last_alert") or {}
    ts = obj.get("ts")
    age = now - float(ts) if isinstance(ts, (int, float)) else now - received_at
    reason = str(obj.get("reason") or "")
    stale_after = obj.get("stale_after_s")
    if state == "online" and isinstance(stale_after, (int, float)) and age > stale_after:
        state, reason = "offline", f"no status for {age:.0f} s (expected every {obj.get('interval_s')} s)"
    bad = obj.get("bad")
    return AgentStatus(
        agent, state, model.get("sha256"), str(model.get("note") or ""), model.get("since"), shadow.get("sha256"),
        obj.get("uptime_s"), obj.get("messages_per_s"), bad if isinstance(bad, int) else None,
        obj.get("open_episodes"),
        f"{last.get('time')} {last.get('stream')}" if last else None, obj.get("spool_depth"), obj.get("v"),
        round(age, 1), reason, obj, previous.get("sha256"))


def fleet_rows(statuses: dict[str, tuple[bytes, float]], now: float | None = None) -> list[AgentStatus]:
    return [read_status(agent, payload, when, now) for agent, (payload, when) in sorted(statuses.items())]


def format_table(rows: Sequence[AgentStatus]) -> str:
    head = ["AGENT", "STATE", "MODEL", "NOTE", "SINCE", "SHADOW", "UPTIME", "MSG/S", "BAD", "OPEN",
            "LAST ALERT", "SPOOL"]
    lines = [head]
    for r in rows:
        lines.append([r.agent, r.state + (f" ({r.reason})" if r.reason and r.state != "online" else ""),
                      (r.model_sha256 or "-")[:12], (r.note or "-")[:30], (r.since or "-")[:19],
                      (r.shadow_sha256 or "-")[:12], _duration(r.uptime_s),
                      "-" if r.messages_per_s is None else f"{r.messages_per_s:.1f}", _num(r.bad),
                      _num(r.open_episodes), (r.last_alert or "-")[:40], _num(r.spool_depth)])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def _num(v: Any) -> str:
    return "-" if v is None else str(v)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"
