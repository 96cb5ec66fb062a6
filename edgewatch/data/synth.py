"""The synthetic benchmark of system S3: noisy sine waves with scaled segments.

Training data is nominal only (sine waves plus uniform noise); the test
series has segments of ``segment`` steps multiplied by ``factor`` and a 0/1
label per step. Everything follows from one seed, so a figure reported for
a seed can be reproduced exactly. Scaling a segment that sits near a zero
crossing changes it little: those segments are hard on purpose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

TRAIN_FILE = "train.npy"
TEST_FILE = "test.npy"
LABELS_FILE = "test_labels.npy"
CSV_FILES = ("train.csv", "test.csv")
INFO_FILE = "synth.json"


@dataclass
class SynthConfig:
    """How the benchmark is drawn; stored beside the data as ``synth.json``."""

    seed: int = 0
    n_features: int = 1
    train_length: int = 10_000
    test_length: int = 10_000
    period_min: float = 40.0
    period_max: float = 80.0
    noise: float = 0.1  # half-width of the uniform noise, in signal amplitude units
    n_segments: int = 10
    segment: int = 10
    factor: float = 2.0


@dataclass
class SynthData:
    train: np.ndarray  # [train_length, n_features] float32
    test: np.ndarray  # [test_length, n_features] float32
    labels: np.ndarray  # [test_length] uint8
    config: SynthConfig

    def segments(self) -> list[tuple[int, int]]:
        """The true anomalous segments as inclusive (start, end) step indices."""
        return label_regions(self.labels)


def label_regions(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of ones as inclusive (start, end) indices."""
    flags = np.asarray(labels).astype(bool).ravel()
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def _sines(rng: np.random.Generator, length: int, cfg: SynthConfig,
           periods: np.ndarray, phases: np.ndarray) -> np.ndarray:
    t = np.arange(length, dtype=np.float64)[:, None]
    clean = np.sin(2 * np.pi * t / periods[None, :] + phases[None, :])
    noise = rng.uniform(-cfg.noise, cfg.noise, size=clean.shape)
    return clean + noise


def make_synth(cfg: SynthConfig | None = None) -> SynthData:
    """Draw the benchmark; the test series continues the training waves' shape."""
    cfg = cfg or SynthConfig()
    if cfg.segment < 1 or cfg.n_segments < 0 or cfg.n_features < 1:
        raise BadInput(f"synth config out of range: {cfg}")
    if cfg.n_segments * cfg.segment * 3 > cfg.test_length:
        raise BadInput(f"{cfg.n_segments} segments of {cfg.segment} steps do not fit in a test "
                       f"series of {cfg.test_length}: lengthen it or use fewer segments")
    rng = np.random.default_rng(cfg.seed)
    periods = rng.uniform(cfg.period_min, cfg.period_max, size=cfg.n_features)
    phases = rng.uniform(0, 2 * np.pi, size=cfg.n_features)
    train = _sines(rng, cfg.train_length, cfg, periods, phases)
    test = _sines(rng, cfg.test_length, cfg, periods, phases)
    labels = np.zeros(cfg.test_length, dtype=np.uint8)
    # Non-overlapping segments with a gap of at least one segment between them.
    slots = cfg.test_length // (2 * cfg.segment)
    chosen = np.sort(rng.choice(np.arange(1, slots - 1), size=cfg.n_segments, replace=False))
    for slot in chosen:
        start = int(slot * 2 * cfg.segment)
        test[start:start + cfg.segment] *= cfg.factor
        labels[start:start + cfg.segment] = 1
    return SynthData(train.astype(np.float32), test.astype(np.float32), labels, cfg)


def save_synth(data: SynthData, out: str | Path) -> list[Path]:
    """Write NPY (for training) and CSV (for people and other tools) plus ``synth.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, arr in ((TRAIN_FILE, data.train), (TEST_FILE, data.test), (LABELS_FILE, data.labels)):
        np.save(out / name, arr)
        written.append(out / name)
    names = [f"x{i}" for i in range(data.train.shape[1])]
    np.savetxt(out / CSV_FILES[0], data.train, delimiter=",", header=",".join(names), comments="", fmt="%.6f")
    test_rows = np.column_stack([data.test, data.labels])
    np.savetxt(out / CSV_FILES[1], test_rows, delimiter=",", header=",".join(names + ["label"]),
               comments="", fmt=["%.6f"] * len(names) + ["%d"])
    written += [out / CSV_FILES[0], out / CSV_FILES[1]]
    info = {"config": asdict(data.config), "segments": data.segments(), "files": {
        TRAIN_FILE: "nominal training series [steps, features] float32",
        TEST_FILE: "test series [steps, features] float32 with scaled segments",
        LABELS_FILE: "0/1 per test step, 1 inside a scaled segment",
    }}
    (out / INFO_FILE).write_text(json.dumps(info, indent=1))
    written.append(out / INFO_FILE)
    return written


def load_synth(directory: str | Path) -> SynthData:
    """Read a folder written by :func:`save_synth` (``edgewatch data synth``)."""
    d = Path(directory)
    missing = [n for n in (TRAIN_FILE, TEST_FILE, LABELS_FILE) if not (d / n).is_file()]
    if missing:
        raise BadInput(f"{d} lacks {missing}: make it with 'edgewatch data synth -o {d}'")
    cfg = SynthConfig()
    if (d / INFO_FILE).is_file():
        cfg = SynthConfig(**json.loads((d / INFO_FILE).read_text())["config"])
    train = np.load(d / TRAIN_FILE, allow_pickle=False).astype(np.float32)
    test = np.load(d / TEST_FILE, allow_pickle=False).astype(np.float32)
    labels = np.load(d / LABELS_FILE, allow_pickle=False).astype(np.uint8)
    if train.ndim == 1:
        train = train[:, None]
    if test.ndim == 1:
        test = test[:, None]
    if len(labels) != len(test) or train.shape[1] != test.shape[1]:
        raise BadInput(f"{d}: test series, labels and training series do not fit together "
                       f"({test.shape}, {labels.shape}, {train.shape})")
    return SynthData(train, test, labels, cfg)
