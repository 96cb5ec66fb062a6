"""Signed model files: Ed25519 over the graph and the whole card, checked by the agent before it runs one.

A model file decides what the agent alerts on, so an agent given trusted
public keys (``--trust-key``) runs only files signed by one of them.

**What is signed.** The signature sits in the file itself, as one more
``metadata_props`` entry, :data:`~edgewatch.contract.SIGNATURE_KEY`, whose
value is a JSON object (format, key id, signer, time, release, two digests
and the signature). The Ed25519 signature covers the canonical JSON of
everything in that object but the signature itself, so it binds:

* ``graph_sha256``: SHA-256 of every top-level ``ModelProto`` record other
  than ``metadata_props``, as raw bytes in file order (graph, initializers,
  opset imports, IR version, producer, functions);
* ``card_sha256``: SHA-256 of the canonical JSON (sorted keys, no spaces,
  ASCII) of *all* other ``metadata_props`` entries, ours and other tools';
* ``release``: the release number the signer gave it (default the signing
  time in nanoseconds), which orders signed files so an agent can refuse
  an older one replayed over a newer (:mod:`edgewatch.agent.lifecycle.releases`).
  Files signed in format 1, before releases existed, carry none and count
  as release 0; a ``release`` written into such an entry is not signed and
  is ignored.

Why this form: it is computed from the raw bytes with a small wire-format
reader (:mod:`edgewatch.wire.onnx_read`), so the agent verifies without the
``onnx`` package or protobuf classes, and signing never re-serializes the
graph (it appends one record), so the signed bytes are the shipped bytes.
Metadata is hashed as a set of key/value pairs rather than bytes, so the
order of the entries does not matter, while any added, removed or changed
entry does. The two digests let a refusal say *what* changed (the card or
the graph). It fails safe: any rewrite of the file by another tool that
changes the graph's bytes, even without changing its meaning, invalidates
the signature (sign last, after quantization or ``.ort`` conversion), and a
file with duplicate metadata keys (which reader wins is unspecified) or with
tensors in external files (which this signature cannot cover) is refused.

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), the forms
``openssl genpkey -algorithm ed25519`` also writes. A private key may be
encrypted; its passphrase comes from ``$EDGEWATCH_KEY_PASSPHRASE``.

``cryptography`` is the ``[trust]`` extra, imported only where a key is
used: an agent without trusted keys never needs it (and refuses unsigned
MQTT models all the same); one given ``--trust-key`` without it exits 6.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from edgewatch.digests import sha256
from edgewatch.wire.onnx_read import ModelBytes, metadata_record
from edgewatch.contract import SIGNATURE_KEY
from edgewatch.errors import BadInput, BadModelFile, MissingExtra, UntrustedModel

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "edgewatch-model-signature/2"
FORMAT_V1 = "edgewatch-model-signature/1"  # read only: no release inside, ordered as release 0
MAX_RELEASE = 2**63 - 1  # fits every JSON reader's 64-bit integer; signing time in ns reaches it in 2262
PASSPHRASE_ENV = "EDGEWATCH_KEY_PASSPHRASE"


def _crypto() -> SimpleNamespace:
    """The parts of ``cryptography`` used here, or MissingExtra (exit 6) naming the extra."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise MissingExtra("cryptography", "trust") from exc
    return SimpleNamespace(InvalidSignature=InvalidSignature, serialization=serialization,
                           Ed25519PrivateKey=ed25519.Ed25519PrivateKey, Ed25519PublicKey=ed25519.Ed25519PublicKey)


class BadKey(BadInput):
    """A key file is missing, unreadable or not an Ed25519 key."""


@dataclass(frozen=True)
class TrustedKey:
    """A public key the agent trusts, with the file it came from (for messages)."""

    key_id: str
    public: Ed25519PublicKey
    source: str


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte key: short enough to read, long enough to be unique."""
    ser = _crypto().serialization
    raw = public.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return sha256(raw).hexdigest()[:16]


def _passphrase() -> bytes | None:
    text = os.environ.get(PASSPHRASE_ENV)
    return text.encode() if text else None


def generate_keypair(path: str | os.PathLike[str], overwrite: bool = False) -> TrustedKey:
    """Write a new private key to ``path`` (mode 0600) and its public key to ``path.pub`` (0644).

    Refuses to overwrite an existing key unless ``overwrite``: losing a
    release key means re-signing and re-trusting every model.
    """
    path = Path(path)
    pub_path = Path(str(path) + ".pub")
    for p in (path, pub_path):
        if p.exists() and not overwrite:
            raise BadKey(f"{p} exists; refusing to overwrite a key (pass --force to replace it)")
    c = _crypto()
    serialization = c.serialization
    path.parent.mkdir(parents=True, exist_ok=True)
    private = c.Ed25519PrivateKey.generate()
    secret = _passphrase()
    encryption = (serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    public = private.public_key()
    pub_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_tmp = pub_path.with_name(f".{pub_path.name}.tmp")
    pub_tmp.write_bytes(pub_pem)
    os.chmod(pub_tmp, 0o644)
    os.replace(pub_tmp, pub_path)
    return TrustedKey(key_id(public), public, str(pub_path))


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    c = _crypto()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadKey(f"cannot read private key {path}: {exc.strerror}") from None
    try:
        key = c.serialization.load_pem_private_key(data, password=_passphrase())
    except TypeError:
        raise BadKey(f"private key {path} is encrypted: set ${PASSPHRASE_ENV}") from None
    except ValueError as exc:
        hint = " (this looks like a public key: sign with the private one)" if b"PUBLIC KEY" in data else ""
        raise BadKey(f"{path} is not a readable PEM private key{hint}: {exc}") from None
    if not isinstance(key, c.Ed25519PrivateKey):
        raise BadKey(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> TrustedKey:
    c = _crypto()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadKey(f"cannot read trust key {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        raise BadKey(f"{path} is a private key; give the agent only the public one ({path}.pub)")
    try:
        key = c.serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BadKey(f"{path} is not a readable PEM public key: {exc}") from None
    if not isinstance(key, c.Ed25519PublicKey):
        raise BadKey(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return TrustedKey(key_id(key), key, str(path))


def load_trust_keys(paths: Sequence[str | os.PathLike[str]]) -> tuple[TrustedKey, ...]:
    keys: dict[str, TrustedKey] = {}
    for p in paths:
        k = load_public_key(p)
        keys.setdefault(k.key_id, k)
    return tuple(keys.values())


def default_release() -> int:
    """The signing time in nanoseconds: later signatures are newer releases without anyone counting."""
    return time.time_ns()


def release_number(value: object) -> int:
    """``value`` as a release number (an int from 1 to :data:`MAX_RELEASE`); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RELEASE:
        raise ValueError(f"release {value!r} is not a whole number from 1 to {MAX_RELEASE}")
    return value


@dataclass(frozen=True)
class Signature:
    """The content of the signature entry; :meth:`message` is what the Ed25519 signature covers."""

    key_id: str
    signer: str
    signed_at: str
    graph_sha256: str
    card_sha256: str
    signature: bytes = b""
    release: int = 0
    format: str = FORMAT

    def signed_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "key_id": self.key_id, "signer": self.signer,
                               "signed_at": self.signed_at, "graph_sha256": self.graph_sha256,
                               "card_sha256": self.card_sha256}
        if self.format != FORMAT_V1:
            out["release"] = self.release
        return out

    def message(self) -> bytes:
        return canonical_json(self.signed_fields())

    def to_prop(self) -> str:
        return json.dumps({**self.signed_fields(), "signature": base64.b64encode(self.signature).decode("ascii")},
                          sort_keys=True)

    @classmethod
    def from_prop(cls, text: str, source: str) -> Signature:
        try:
            obj = json.loads(text)
            fmt = obj.get("format")
            if fmt not in (FORMAT, FORMAT_V1):
                raise ValueError(f"unknown signature format {fmt!r} (this edgewatch reads {FORMAT} and {FORMAT_V1})")
            sig = base64.b64decode(obj["signature"], validate=True)
            fields = {k: obj[k] for k in ("key_id", "signer", "signed_at", "graph_sha256", "card_sha256")}
            if not all(isinstance(v, str) for v in fields.values()):
                raise ValueError("signature fields must be strings")
            release = 0 if fmt == FORMAT_V1 else release_number(obj["release"])
            return cls(signature=sig, release=release, format=fmt, **fields)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise UntrustedModel(f"{source}: its signature entry is damaged: {exc}") from None

    def describe_release(self) -> str:
        return f"release {self.release}" + (" (signed before releases existed)" if self.format == FORMAT_V1 else "")


@dataclass(frozen=True)
class Verified:
    """Who signed a file that passed :func:`verify_bytes`."""

    signature: Signature
    key: TrustedKey

    def describe(self) -> str:
        s = self.signature
        return (f"signed by {s.signer!r} with key {s.key_id} (trusted: {self.key.source}) at {s.signed_at}, "
                f"{s.describe_release()}; graph and card unchanged since")


def canonical_json(obj: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _split(parsed: ModelBytes, source: str) -> tuple[dict[str, str], list[tuple[str, int]]]:
    """The card (every entry but the signature) and the signature entries with their record offsets."""
    card: dict[str, str] = {}
    signatures = []
    for key, value, rec in parsed.metadata:
        if key == SIGNATURE_KEY:
            signatures.append((value, rec.start))
            continue
        if key in card:
            raise BadModelFile(f"{source} has metadata key {key!r} twice; readers disagree which one counts, "
                               "so it cannot be trusted")
        card[key] = value
    return card, signatures


def digests(parsed: ModelBytes, source: str) -> tuple[str, str]:
    """(graph_sha256, card_sha256) of a parsed file, as :class:`Signature` defines them."""
    card, _ = _split(parsed, source)
    return sha256(parsed.body()).hexdigest(), sha256(canonical_json(card)).hexdigest()


def utc_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_bytes(data: bytes, private: Ed25519PrivateKey, signer: str | None = None, source: str = "model",
               release: int | None = None) -> bytes:
    """The file ``data`` with a signature entry (an earlier one is replaced); the rest stays byte for byte.

    ``release`` orders it among the key's files (default: now, in ns); ValueError when out of range.
    """
    parsed = ModelBytes.parse(data, source)
    external = parsed.external_tensors()
    if external:
        raise BadModelFile(f"{source} keeps tensors {external[:3]} in external files, which a signature over "
                           "the file cannot cover; save it as one file")
    _, old = _split(parsed, source)
    graph_sha, card_sha = digests(parsed, source)
    now = default_release()
    unsigned = Signature(key_id(private.public_key()), signer or default_signer(), utc_text(now), graph_sha,
                         card_sha, release=release_number(now if release is None else release))
    signed = replace(unsigned, signature=private.sign(unsigned.message()))
    return parsed.without({start for _, start in old}) + metadata_record(SIGNATURE_KEY, signed.to_prop())


def default_signer() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def read_signature(data: bytes, source: str = "model") -> Signature | None:
    """The file's signature entry, unchecked; None when the file is unsigned."""
    _, entries = _split(ModelBytes.parse(data, source), source)
    if len(entries) > 1:
        raise UntrustedModel(f"{source} carries {len(entries)} signature entries; a signed file has one")
    return Signature.from_prop(entries[0][0], source) if entries else None


def verify_bytes(data: bytes, keys: Sequence[TrustedKey], source: str = "model") -> Verified:
    """Check that ``data`` is signed by one of ``keys`` and unchanged since; UntrustedModel says why not."""
    parsed = ModelBytes.parse(data, source)
    _, entries = _split(parsed, source)
    if not entries:
        raise UntrustedModel(f"{source} is not signed, and this agent runs only models signed by a trusted key "
                             f"({_key_list(keys)}); sign it with 'edgewatch model sign'")
    if len(entries) > 1:
        raise UntrustedModel(f"{source} carries {len(entries)} signature entries; a signed file has one")
    sig = Signature.from_prop(entries[0][0], source)
    key = check_signed(keys, sig.key_id, sig.signer, sig.signature, sig.message(), source)
    _check_unchanged(parsed, sig, source)
    external = parsed.external_tensors()
    if external:
        raise UntrustedModel(f"{source} keeps tensors {external[:3]} in external files, which its signature "
                             "does not cover")
    return Verified(sig, key)


def check_signed(keys: Sequence[TrustedKey], signed_by: str, signer: str, signature: bytes, message: bytes,
                 source: str) -> TrustedKey:
    """The trusted key ``signed_by`` names, once ``signature`` over ``message`` is checked against it;
    UntrustedModel naming ``source`` when the key is not trusted or the signature does not match."""
    key = next((k for k in keys if k.key_id == signed_by), None)
    if key is None:
        raise UntrustedModel(f"{source} is signed by {signer!r} with key {signed_by}, which is not a "
                             f"trusted key ({_key_list(keys)})")
    try:
        key.public.verify(signature, message)
    except _crypto().InvalidSignature:
        raise UntrustedModel(f"{source}: the signature of key {signed_by} does not match its signed fields "
                             "(the signature entry was edited or forged)") from None
    return key


def _check_unchanged(parsed: ModelBytes, sig: Signature, source: str) -> None:
    graph_sha, card_sha = digests(parsed, source)
    changed = [what for what, now, then in (("card (metadata)", card_sha, sig.card_sha256),
                                            ("graph", graph_sha, sig.graph_sha256)) if now != then]
    if changed:
        raise UntrustedModel(f"{source}: its {' and '.join(changed)} changed after it was signed by "
                             f"{sig.signer!r} (key {sig.key_id}) at {sig.signed_at}; refusing it")


def check_digests(data: bytes, source: str = "model") -> Signature | None:
    """Without any key: is a signed file's graph and card still what its signature entry names?

    Catches an edit before a model is shipped; proves nothing about who
    signed (that needs :func:`verify_bytes` with a trusted key).
    """
    sig = read_signature(data, source)
    if sig is not None:
        _check_unchanged(ModelBytes.parse(data, source), sig, source)
    return sig


def _key_list(keys: Sequence[TrustedKey]) -> str:
    return "trusted keys: " + ", ".join(f"{k.key_id} ({k.source})" for k in keys) if keys else "no trusted key"


@dataclass(frozen=True)
class TrustPolicy:
    """Which model files this agent runs.

    With trusted keys, every model (the one it starts with, a watched file,
    one from MQTT) must be signed by one of them. Without keys, the files the
    operator put on disk run as before, but a model arriving over MQTT, which
    anyone allowed to publish on the broker could have sent, is refused unless
    ``allow_unsigned_remote`` (``--allow-unsigned-models``) says otherwise.
    """

    keys: tuple[TrustedKey, ...] = ()
    allow_unsigned_remote: bool = False

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike[str]], allow_unsigned_remote: bool = False
                   ) -> TrustPolicy:
        return cls(load_trust_keys(paths), allow_unsigned_remote)

    def check(self, data: bytes, origin: str, source: str) -> Verified | None:
        """Raise UntrustedModel unless ``data`` may run; the signer when one was verified.

        ``origin`` is ``start``, ``file`` or ``mqtt``.
        """
        if self.keys:
            return verify_bytes(data, self.keys, source)
        if origin == "mqtt" and not self.allow_unsigned_remote:
            raise UntrustedModel(f"{source} came over MQTT and this agent has no --trust-key to verify it; "
                                 "start it with --trust-key KEY.pub (or, on a closed test broker only, "
                                 "--allow-unsigned-models)")
        return None

    def check_file(self, path: str | os.PathLike[str], origin: str) -> tuple[bytes, Verified | None]:
        """Read ``path`` once and :meth:`check` those bytes; returns them for the caller to hash and load."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise BadModelFile(f"cannot read model file {path}: {exc.strerror}") from None
        return data, self.check(data, origin, str(path))
