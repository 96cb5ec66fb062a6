"""The fleet's MQTT payloads: a versioned public contract (docs/fleet.md).

Agents and the operator side (``edgewatch model publish``, ``edgewatch
fleet status``) meet only here, so both work through any MQTT broker: one
mosquitto, bridged ones, or a clustered broker. Every JSON payload carries
``"v": CONTRACT_VERSION``; a reader refuses a higher major version it does
not know (it says so) rather than guess, and ignores unknown fields, so
fields can be added within a version.

The topic names are spelled in :mod:`edgewatch.mqtt.topics` (``PREFIX/AGENT/``
+ status, alerts, drift, events, model, command, shadow); JSON text and
times are :mod:`edgewatch.wire.json`'s, so events and payloads read alike.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewatch import digests
from edgewatch.wire.json import dumps, iso, iso_now

CONTRACT_VERSION = 1

# what an agent does with a model-topic message
INSTALL = "install"
ROLLBACK = "rollback"
PROMOTE = "promote"
ACTIONS = (INSTALL, ROLLBACK, PROMOTE)

SHADOW_REPORT = "shadow_report"  # the one command today: publish a shadow report now
COMMANDS = (SHADOW_REPORT,)


class ContractError(ValueError):
    """A payload that does not follow the contract (the message says which rule)."""


def loads(payload: bytes, what: str) -> dict[str, Any]:
    """A JSON object of a known contract version; ContractError otherwise."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ContractError(f"{what} is not a JSON object")
    v = obj.get("v", CONTRACT_VERSION)
    if not isinstance(v, int) or v > CONTRACT_VERSION or v < 1:
        raise ContractError(f"{what} has contract version {v!r}; this edgewatch speaks version {CONTRACT_VERSION}")
    return obj


# -- the model topic ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelMessage:
    """One retained message on ``PREFIX/AGENT/model``: install a file (live or shadow), roll back, promote.

    ``id`` is unique per publish: an agent remembers the last one it
    applied, so the retained copy it gets again after a restart is not
    applied twice (a rollback stays rolled back). ``grant`` (rollback): the
    signed permission, as JSON, that agents with trusted keys require to go
    back (``edgewatch.agent.lifecycle.releases.RollbackGrant``); carried, not read, here.
    """

    action: str
    id: str
    published_at: str
    note: str = ""
    sha256: str | None = None  # install: of the file; promote: of the shadow model to promote (optional)
    name: str | None = None
    data: bytes | None = None  # install: the model file
    shadow: bool = False
    promote_if: str | None = None
    grant: dict[str, Any] | None = None

    def to_payload(self) -> bytes:
        out: dict[str, Any] = {"v": CONTRACT_VERSION, "action": self.action, "id": self.id,
                               "published_at": self.published_at, "note": self.note}
        if self.action == INSTALL:
            assert self.data is not None
            out.update(sha256=self.sha256, name=self.name, shadow=self.shadow,
                       onnx_b64=base64.b64encode(self.data).decode("ascii"))
            if self.promote_if:
                out["promote_if"] = self.promote_if
        elif self.sha256:
            out["sha256"] = self.sha256
        if self.action == ROLLBACK and self.grant is not None:
            out["grant"] = self.grant
        return dumps(out).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> ModelMessage:
        """Parse a model message; ContractError with the reason when it is not one.

        A message without ``action`` (the first agent versions' form:
        ``sha256``, ``name``, ``onnx_b64``) is a live install whose id is its sha256.
        """
        obj = loads(payload, "model message")
        action = obj.get("action", INSTALL)
        if action not in ACTIONS:
            raise ContractError(f"model message action {action!r} is not one of {list(ACTIONS)}")
        note = str(obj.get("note") or "")[:500]
        if action != INSTALL:
            sha = obj.get("sha256")
            grant = obj.get("grant") if action == ROLLBACK else None
            if grant is not None and not isinstance(grant, dict):
                raise ContractError(f"rollback message 'grant' is {type(grant).__name__}, not a JSON object")
            return cls(action, str(obj.get("id") or f"{action}:{obj.get('published_at')}"),
                       str(obj.get("published_at") or ""), note, str(sha).lower() if sha else None, grant=grant)
        try:
            sha = str(obj["sha256"]).lower()
            data = base64.b64decode(obj["onnx_b64"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError("model message is not JSON with 'sha256' and 'onnx_b64' (base64 of the "
                                f"file): {exc}") from None
        promote_if = obj.get("promote_if")
        return cls(INSTALL, str(obj.get("id") or sha), str(obj.get("published_at") or ""), note, sha,
                   str(obj.get("name") or "model.onnx")[:200], data, bool(obj.get("shadow", False)),
                   str(promote_if) if promote_if else None)


def new_id() -> str:
    return uuid.uuid4().hex


def install_message(path: str | os.PathLike[str], note: str = "", shadow: bool = False,
                    promote_if: str | None = None) -> ModelMessage:
    data = Path(path).read_bytes()
    return ModelMessage(INSTALL, new_id(), iso_now(), note, digests.sha256(data).hexdigest(), Path(path).name, data,
                        shadow, promote_if)


def action_message(action: str, note: str = "", sha256: str | None = None, grant: dict[str, Any] | None = None,
                   message_id: str | None = None) -> ModelMessage:
    return ModelMessage(action, message_id or new_id(), iso_now(), note, sha256, grant=grant)


# -- status --------------------------------------------------------------------------------


def offline_will(agent: str) -> bytes:
    """The last will: what the broker says for an agent whose connection died without a goodbye."""
    return dumps({"v": CONTRACT_VERSION, "agent": agent, "state": "offline", "reason": "connection lost (last will)"}
                 ).encode()


def minimal_status(agent: str, state: str) -> bytes:
    """The status of an agent without a StatusReporter (tests, embedders): state and time only."""
    now = time.time()
    return dumps({"v": CONTRACT_VERSION, "agent": agent, "state": state, "time": iso(now), "ts": now}).encode()


def status_state(payload: bytes) -> str | None:
    """``online`` / ``offline`` of a status payload (JSON of this contract, or the bare words)."""
    if payload in (b"online", b"offline"):
        return payload.decode()
    try:
        obj = loads(payload, "status")
    except ContractError:
        return None
    state = obj.get("state")
    return state if state in ("online", "offline") else None
