"""Release order of signed models: an agent never goes back to an older release unless told so, signed.

A signature alone says *who* made a file, not *when*: anyone able to write
the watched file or publish on the model topic could bring back any model
the key ever signed (a weaker one, one with a threshold since corrected).
So every signature carries a ``release`` number (:mod:`edgewatch.agent.lifecycle.signing`;
by default the signing time in nanoseconds, or ``edgewatch model sign
--release N``), and an agent with ``--trust-key`` keeps the highest release
it has run, the :class:`ReleaseMark`, in its model store
(``SPOOL_DIR/models/state.json``), across restarts.

**Older** means a lower release number than the mark, whatever key signed
it: releases are one number line for every key an agent trusts (during a
key rotation the old key's files must not come back either). An equal
release is not older. Files signed before releases existed count as
release 0: they run while no model with a release has run on that agent,
and are refused once one has.

**Going back** is a new release, signed: re-sign the old file (its new
signature is a new release, the sha256 changes, it ships like any model),
or send a :class:`RollbackGrant` (``edgewatch model rollback --key``): a
signed statement that one agent may run its previous model, named by
sha256, as a new release, so the file need not travel again. A grant
binds the agent id and the file, and counts once: after it the mark is its
release, so neither it nor the release rolled back from can be replayed.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgewatch.agent.lifecycle.signing import (TrustedKey, Verified, canonical_json, check_signed, default_release,
                                     default_signer, key_id, release_number, utc_text)
from edgewatch.errors import EdgewatchError, UntrustedModel

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgewatch.agent.lifecycle.store import ModelStore

GRANT_FORMAT = "edgewatch-rollback/1"


class OlderRelease(UntrustedModel):
    """A signed model older than one this agent has run: a replayed release (exit 3 at start)."""


@dataclass(frozen=True)
class ReleaseMark:
    """The highest release an agent has run, the model that had it, and since when."""

    release: int
    sha256: str
    since: str

    @classmethod
    def now(cls, release: int, sha256: str) -> ReleaseMark:
        return cls(release, sha256, utc_text(time.time_ns()))

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sha256": self.sha256, "since": self.since}

    @classmethod
    def from_json(cls, obj: object) -> ReleaseMark:
        """ValueError when ``obj`` is not a mark (the store then says so and keeps none)."""
        if not isinstance(obj, dict):
            raise ValueError(f"release mark {obj!r} is not an object")
        release = obj.get("release")
        if release != 0:
            release_number(release)
        sha, since = obj.get("sha256"), obj.get("since", "")
        if not isinstance(sha, str) or not isinstance(since, str):
            raise ValueError(f"release mark {obj!r} lacks a sha256")
        return cls(int(release), sha, since)  # type: ignore[arg-type]


def check_not_older(mark: ReleaseMark | None, release: int, sha256: str, source: str, how: str = "") -> None:
    """OlderRelease, saying how to go back on purpose, when the file ``sha256`` of ``release`` is below
    ``mark``; the very file of the mark passes (a signed rollback runs it above its own release)."""
    if mark is None or release >= mark.release or sha256 == mark.sha256:
        return
    what = f"release {release}" + (" (signed before releases existed)" if release == 0 else "")
    raise OlderRelease(f"{source} is {what}{how}, older than release {mark.release} that this agent has run "
                       f"(model {mark.sha256[:12]}, since {mark.since}); an older model goes back only as a new "
                       "signed release: re-sign it ('edgewatch model sign FILE --key KEY', a new release by "
                       "default) or send 'edgewatch model rollback --key KEY'")


def admit_at_start(store: ModelStore, verified: Verified, sha256: str, path: str | os.PathLike[str]) -> None:
    """The ``--model`` an agent starts with: OlderRelease (exit 3) when below the store's mark, else the
    mark moves to it, so a later start cannot go back either."""
    s = verified.signature
    try:
        store.admit(s.release, sha256, f"--model {path}", f", signed by {s.signer!r} at {s.signed_at}")
    except OSError as exc:
        raise EdgewatchError(f"cannot record the release of --model {path} in {store.state_path}: {exc.strerror}; "
                             "give --spool-dir a folder this agent may write") from None


@dataclass(frozen=True)
class RollbackGrant:
    """A signed permission for agent ``agent`` to run the model file ``sha256`` as release ``release``."""

    agent: str
    sha256: str
    release: int
    key_id: str
    signer: str
    signed_at: str
    signature: bytes = b""

    def signed_fields(self) -> dict[str, Any]:
        return {"format": GRANT_FORMAT, "agent": self.agent, "sha256": self.sha256, "release": self.release,
                "key_id": self.key_id, "signer": self.signer, "signed_at": self.signed_at}

    def to_json(self) -> dict[str, Any]:
        return {**self.signed_fields(), "signature": base64.b64encode(self.signature).decode("ascii")}

    @classmethod
    def sign(cls, private: Ed25519PrivateKey, agent: str, sha256: str, release: int | None = None,
             signer: str | None = None) -> RollbackGrant:
        now = default_release()
        grant = cls(agent, sha256.lower(), release_number(now if release is None else release),
                    key_id(private.public_key()), signer or default_signer(), utc_text(now))
        return replace(grant, signature=private.sign(canonical_json(grant.signed_fields())))

    @classmethod
    def from_json(cls, obj: object, source: str) -> RollbackGrant:
        """The grant in a rollback message; UntrustedModel when it is not one."""
        try:
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            if obj.get("format") != GRANT_FORMAT:
                raise ValueError(f"unknown format {obj.get('format')!r} (this edgewatch reads {GRANT_FORMAT})")
            fields = {k: obj[k] for k in ("agent", "sha256", "key_id", "signer", "signed_at")}
            if not all(isinstance(v, str) for v in fields.values()):
                raise ValueError("its fields must be strings")
            return cls(release=release_number(obj["release"]),
                       signature=base64.b64decode(obj["signature"], validate=True), **fields)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise UntrustedModel(f"{source}: its grant is damaged: {exc}") from None

    def verify(self, keys: Sequence[TrustedKey], agent: str, source: str) -> TrustedKey:
        """The key that signed it, once it is checked and is for ``agent``; UntrustedModel otherwise."""
        key = check_signed(keys, self.key_id, self.signer, self.signature, canonical_json(self.signed_fields()),
                           source)
        if self.agent != agent:
            raise UntrustedModel(f"{source} is signed for agent {self.agent!r}, not for this agent ({agent!r})")
        return key
