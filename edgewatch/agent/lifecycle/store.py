"""The models an agent keeps on disk for its fleet: the live one, the previous one, the one in shadow.

``SPOOL_DIR/models/<sha256>.onnx`` plus ``state.json``, written atomically
after every change, so a restarted agent knows which model it ran (and
resumes it rather than the older ``--model`` it was started with), which
one ``rollback`` returns to, which model-topic message it applied last
(the retained copy it receives again after a restart is not applied twice),
and the highest signed release it has run (:mod:`edgewatch.agent.lifecycle.releases`:
with ``--trust-key``, so a restart cannot bring back an older file).
Files no slot refers to are deleted; nothing else in the folder is touched.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgewatch.agent.lifecycle.releases import ReleaseMark, check_not_older
from edgewatch.errors import EdgewatchError
from edgewatch.files import write_bytes

log = logging.getLogger(__name__)

SLOTS = ("live", "previous", "shadow")


@dataclass(frozen=True)
class StoredModel:
    sha256: str
    path: str
    note: str = ""
    since: str = ""  # ISO time it took this slot
    origin: str = ""  # start, file, mqtt
    message_id: str | None = None
    promote_if: str | None = None
    release: int | None = None  # the signed release it runs as (a signed rollback's); None when not verified

    def to_status(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "note": self.note, "since": self.since, "origin": self.origin,
                **({"promote_if": self.promote_if} if self.promote_if else {}),
                **({"release": self.release} if self.release is not None else {})}


class ModelStore:
    """Slots live / previous / shadow over one folder; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgewatchError(f"cannot keep the model store in {self.dir}: {exc.strerror}; give --spool-dir "
                                 "a folder this agent may write") from None
        self.state_path = self.dir / "state.json"
        self.slots: dict[str, StoredModel | None] = dict.fromkeys(SLOTS)
        self.last_message_id: str | None = None
        self.release: ReleaseMark | None = None
        self._lock = threading.RLock()  # the model-topic and the file-watch threads both record
        self._load()

    def _load(self) -> None:
        try:
            obj = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("model store %s unreadable (%s); starting from --model", self.state_path, exc)
            return
        for slot in SLOTS:
            entry = obj.get(slot)
            if isinstance(entry, dict):
                try:
                    self.slots[slot] = StoredModel(**entry)
                except TypeError:
                    log.warning("model store %s: slot %s unreadable; ignored", self.state_path, slot)
        self.last_message_id = obj.get("last_message_id")
        if obj.get("release") is not None:
            try:
                self.release = ReleaseMark.from_json(obj["release"])
            except ValueError as exc:
                log.warning("model store %s: release mark unreadable (%s); ignored", self.state_path, exc)

    def save(self, prune: bool = True) -> None:
        """Write the state; ``prune`` also deletes the files no slot names (not while a new one waits for its slot)."""
        with self._lock:
            obj: dict[str, Any] = {slot: asdict(m) if m else None for slot, m in self.slots.items()}
            obj["last_message_id"] = self.last_message_id
            obj["release"] = self.release.to_json() if self.release else None
            write_bytes(self.state_path, json.dumps(obj, indent=1).encode())
            if prune:
                self._prune()

    def check_release(self, release: int, sha256: str, source: str, how: str = "") -> None:
        """OlderRelease when the file ``sha256`` of ``release`` is below the highest this agent has run."""
        check_not_older(self.release, release, sha256, source, how)

    def admit(self, release: int, sha256: str, source: str, how: str = "") -> None:
        """:meth:`check_release`, then record that ``sha256`` runs as ``release`` (the mark moves up, never
        down), in one step; OSError when the record cannot be written (the model must not run then)."""
        with self._lock:
            check_not_older(self.release, release, sha256, source, how)
            mark = self.release
            if mark is None or release > mark.release or (release == mark.release and sha256 != mark.sha256):
                self.release = ReleaseMark.now(release, sha256)
                self.save(prune=False)

    def _prune(self) -> None:
        keep = {Path(m.path).name for m in self.slots.values() if m}
        for p in self.dir.glob("*.onnx"):
            if p.name not in keep and len(p.stem) == 64:
                p.unlink(missing_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.onnx"

    def put(self, sha256: str, data: bytes) -> Path:
        path = self.path_for(sha256)
        if not path.exists():
            write_bytes(path, data)
        return path

    def get(self, slot: str) -> StoredModel | None:
        m = self.slots[slot]
        if m is not None and not Path(m.path).is_file():
            log.warning("model store: %s model %s is gone from %s", slot, m.sha256[:12], m.path)
            return None
        return m
