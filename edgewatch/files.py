"""Writing files so that a reader never sees half of one.

Every file edgewatch produces (model files, checkpoints, reports, recorded
data) is written to a temporary name beside its destination and moved into
place with ``os.replace`` only when complete; a failure leaves the old file,
or none, and no debris.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


@contextmanager
def replacing(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, move it to ``path``.

    ``suffix`` lets writers that infer the format from the name (``.npz``,
    ``.png``) see the right one. The file gets ordinary permissions
    (``0666`` less the umask), not ``mkstemp``'s owner-only ``0600``, so a
    service account can read a model written by root.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
