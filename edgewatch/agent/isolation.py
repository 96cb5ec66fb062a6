"""Stream isolation, checked on the machine that runs the model, when the agent loads it.

The agent scores the due windows of many streams in one ONNX Runtime call,
which is only correct if a window's score does not depend on the other
windows of its call. Export checks that (:mod:`edgewatch.export.invariance`),
but on the exporting machine: whether a fused int8 kernel keeps it depends
on how that kernel takes its ranges on the CPU at hand (ORT picks AMX,
VNNI, AVX2 or NEON code at run time; the sentinel form of
:mod:`edgewatch.export.sentinel` rests on its activation functions staying
below two sentinel units). So :func:`check_isolation` repeats a short
version here, every time a runtime is built (at start, on a swap, in
eval): a few windows from the card's own training range scored alone, then
beside companions holding extreme values (100, 1e6, +-1e20, +-inf, NaN, in
one cell and in the whole window) and at other batch sizes. Every score,
feature error and aux value must equal the one alone to
:data:`MAX_REL_DIFF` of the largest such value among the probes (float
rounding, not a shared scale); otherwise the file is refused (:class:`BadModelFile`:
exit 3 at start, ``model_refused`` on a swap). Measured cost with the S0
model on the 2-core AMD EPYC: a few milliseconds (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from edgewatch.errors import BadModelFile

MAX_REL_DIFF = 1e-5
EXTREME_VALUES = (100.0, 1e6, 1e20, -1e20, float("inf"), float("-inf"), float("nan"))
N_PROBES = 4  # windows from the training range, scored alone and beside the companions
BATCH_SIZES = (2, 33)  # besides the probes-and-companions call: a small call and an odd, larger one


@dataclass(frozen=True)
class IsolationCheck:
    """What the load-time check ran: calls, windows, the largest difference seen and its CPU time."""

    calls: int
    windows: int
    max_rel_diff: float
    cpu_ms: float
    int8_path: str


def check_isolation(model: "ScoringModel") -> IsolationCheck:  # noqa: F821
    """Raise :class:`BadModelFile` when a window's result moves with its batch companions on this machine.

    Also when the graph cannot score the companions at all (ONNX Runtime's
    own error, as the reason): an agent must be able to score any window.
    """
    try:
        return _check(model)
    except BadModelFile:
        raise
    except Exception as exc:  # ORT raises its own exception types
        raise BadModelFile(f"{model.path}: the isolation check could not score windows with extreme values: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from exc


def _check(model: "ScoringModel") -> IsolationCheck:  # noqa: F821
    c0 = time.thread_time()
    probes = probe_windows(model.card, N_PROBES)
    companions = extreme_companions(probes)
    alone = [model.score_many(p[None]) for p in probes]
    scale = _scales(alone)
    calls: list[tuple[np.ndarray, list[tuple[int, int]]]] = [  # (the call's windows, [(row, probe)])
        (np.concatenate([companions[:3], probes, companions[3:]]), [(3 + i, i) for i in range(N_PROBES)])]
    for size in BATCH_SIZES:
        rows = [(i, i % N_PROBES) for i in range(size - 1)]
        calls.append((np.concatenate([probes[[p for _, p in rows]], companions[-1:]]), rows))
    worst, windows = 0.0, N_PROBES
    for x, rows in calls:
        got = model.score_many(x)
        windows += len(x)
        for row, probe in rows:
            diff = _row_diff(alone[probe], got, row, scale)
            worst = max(worst, diff)
            if diff > MAX_REL_DIFF:
                raise BadModelFile(
                    f"{model.path}: a window's score changes with the other windows of its ONNX Runtime call on "
                    f"this machine (relative difference {diff:.3g} in a call of {len(x)} windows, allowed "
                    f"{MAX_REL_DIFF:g}; int8 kernel path {int8_kernel_path()}): one stream's data would move "
                    "other streams' alerts. Re-export it with 'edgewatch export onnx' (--quantize auto keeps "
                    "only stream-isolated forms) or use an fp32 file.")
    return IsolationCheck(N_PROBES + len(calls), windows, worst, 1e3 * (time.thread_time() - c0),
                          int8_kernel_path())


def probe_windows(card: "ModelCard", n: int) -> np.ndarray:  # noqa: F821
    """``n`` windows of raw values the card's scaler maps into [0, 1] (a min-max scaler's training range).

    Spread by the golden ratio, not drawn: ``numpy.random`` would import
    ``hashlib`` (OpenSSL, 3.8 MiB resident) into an agent that needs none.
    """
    u = (np.arange(n * int(np.prod(card.sample_shape))) * 0.6180339887498949 % 1.0).reshape(n, *card.sample_shape)
    if not card.is_time_series:
        return u.astype(np.float32)
    scale = np.asarray(card.scaler.scale, np.float64)
    scale = np.where(np.abs(scale) > 1e-12, scale, 1.0)
    return (np.asarray(card.scaler.offset, np.float64) + u / scale).astype(np.float32)


def extreme_companions(probes: np.ndarray) -> np.ndarray:
    """Copies of the probes with each extreme value in one cell (a different one each), then in every cell."""
    out = []
    for whole in (False, True):
        for value in EXTREME_VALUES:
            w = probes[len(out) % len(probes)].copy()
            flat = w.reshape(-1)
            if whole:
                flat[:] = value
            else:
                flat[(7 * len(out) + 3) % flat.size] = value
            out.append(w)
    return np.stack(out).astype(np.float32)


def _scales(alone: list["ScoreBatch"]) -> tuple[float, float, float]:  # noqa: F821
    """The largest finite |score|, |feature error| and |aux| of the probes alone: floors of relative differences.

    Why: an fp32 graph may sum in another order at another batch size (a
    convolution's blocking), which moves a score near 0 by more than 1e-5 of
    itself but not of the scores beside it (measured: 1.1e-5 on a 1-D conv
    autoencoder fitted by ``edgewatch fit``); a batch-dependent scale moves
    every score by a share of the largest (0.86 on plain dynamic int8).
    """
    def top(values: list[np.ndarray | None]) -> float:
        arr = np.concatenate([np.ravel(v) for v in values if v is not None] or [np.zeros(1)]).astype(np.float64)
        arr = np.abs(arr[np.isfinite(arr)])
        return float(arr.max()) if arr.size else 0.0

    return (top([a.scores for a in alone]), top([a.feature_error for a in alone]), top([a.aux for a in alone]))


def _row_diff(alone: "ScoreBatch", got: "ScoreBatch", row: int,  # noqa: F821
              scale: tuple[float, float, float]) -> float:
    parts = [(alone.scores[:1], got.scores[row:row + 1], scale[0]),
             (alone.feature_error[:1], got.feature_error[row:row + 1], scale[1])]
    if alone.aux is not None and got.aux is not None:
        parts.append((alone.aux[:1], got.aux[row:row + 1], scale[2]))
    return max(float(rel_per_row(a, b, floor).max()) for a, b, floor in parts)


def rel_per_row(ref: np.ndarray, got: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Largest relative difference per row, relative to at least ``floor``; non-finite values must match
    exactly (inf with inf, NaN with NaN)."""
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    got = np.asarray(got, np.float64).reshape(len(got), -1)
    finite = np.isfinite(ref) & np.isfinite(got)
    same_special = ~finite & ((ref == got) | (np.isnan(ref) & np.isnan(got)))
    with np.errstate(invalid="ignore", over="ignore"):
        rel = np.abs(got - ref) / np.maximum(np.maximum(np.abs(ref), np.abs(got)), max(floor, 1e-30))
    rel = np.where(finite, rel, np.where(same_special, 0.0, np.inf))
    return rel.max(axis=1) if rel.size else np.zeros(len(ref))


def int8_kernel_path(cpuinfo: str | None = None) -> str:
    """Which int8 GEMM code ONNX Runtime runs here, from the CPU's flags: AMX, VNNI, AVX-512, AVX2, NEON ...

    Read from ``/proc/cpuinfo`` (Linux); ``unknown`` elsewhere. x86: AMX
    (``amx_int8``), VNNI (``avx512_vnni`` or ``avx_vnni``), AVX-512
    (``avx512bw``), AVX2; arm64: i8mm, NEON dot product (``asimddp``), NEON.
    """
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    for path, needs in (("AMX", {"amx_int8"}), ("VNNI", {"avx512_vnni"}), ("VNNI", {"avx_vnni"}),
                        ("AVX-512", {"avx512bw"}), ("AVX2", {"avx2"}), ("i8mm", {"i8mm"}),
                        ("NEON dot product", {"asimddp"}), ("NEON", {"asimd"})):
        if needs <= flags:
            return path
    return "SSE" if "sse4_1" in flags else "unknown"


@functools.cache
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""
