"""Holding BLAS and OpenMP to a few threads during the drift computations.

On small matrices and a shared machine, the default (one thread per core,
spinning) makes PCA and the classifier several times slower, not faster:
measured 4.8 s against 0.35 s for a 2000 x 784 PCA on 2 busy cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def limited_threads(threads: int = 1) -> Iterator[None]:
    """Limit native thread pools inside the block; a no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - it ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=threads):
        yield
