"""sha256 and sha1 for model files and event ids, without loading OpenSSL when Python has its own.

``hashlib`` loads OpenSSL's libcrypto (3.4 MiB of the agent's resident
memory) for two digests that CPython also builds in. The built-in ones are
slower on large inputs, which does not matter here: a model file of 1 MB
hashes in milliseconds, an event id is a few dozen bytes. Where a Python
lacks them, ``hashlib`` is used.
"""

from __future__ import annotations

try:
    from _sha256 import sha256  # CPython 3.11
except ImportError:  # pragma: no cover - CPython 3.12+ names it _sha2
    try:
        from _sha2 import sha256  # type: ignore[no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[no-redef]
try:
    from _sha1 import sha1
except ImportError:  # pragma: no cover
    from hashlib import sha1  # type: ignore[no-redef]

__all__ = ["sha1", "sha256"]
