"""A trained S0 model (LSTM-AE, window 10) in each of its forms, for the agent benchmarks.

Agent throughput, memory and latency should run the model a user runs, and
the int8/fp32 decision agreement only means something with trained weights
and a calibrated threshold. The benchmarks train the shipped architecture
(160/60) briefly on simulator data and export every form from one set of
weights: the sentinel int8 file (what ships, stream-isolated), fp32 (what
the agent ran before issue 28), and, for network timings only, the plain
dynamic int8 file (batch-dependent: the agent refuses it) and the unrolled
int8 form. The PyTorch loop runs the checkpoint itself. A short training
is enough: the figures are about speed and about quantization changing
decisions, not about detection quality.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.agent.sinks import MemorySink
from edgewatch.bench.models import Engine
from edgewatch.contract import ModelCard, Quantization
from edgewatch.errors import require_torch

log = logging.getLogger(__name__)

FEATURES = ["cpu", "memory", "traffic", "fan"]


@dataclass
class S0Files:
    paths: dict[Engine, Path]  # ORT_INT8: the sentinel int8 file (ships); ORT_FP32: the fp32 file it replaced
    train_seconds: float
    checkpoint: Path  # the torch checkpoint the files came from (the PyTorch loop runs it)
    dynamic_int8: Path  # plain dynamic int8: batch-dependent, network timings only (the agent refuses it)
    unrolled_int8: Path  # the other isolated int8 form, network timings only

    @property
    def shipped(self) -> Path:
        return self.paths[Engine.ORT_INT8]


def train_s0(out_dir: Path, rows: int = 6000, epochs: int = 3, window: int = 10, seed: int = 0) -> S0Files:
    """Train the S0 LSTM-AE for ``epochs`` on ``rows`` nominal rows and export its forms.

    Reuses files already in ``out_dir`` (a session cache).
    """
    out_dir = Path(out_dir)
    paths = {Engine.ORT_FP32: out_dir / "s0-fp32.onnx", Engine.ORT_INT8: out_dir / "s0-sentinel-int8.onnx"}
    checkpoint = out_dir / "s0.ckpt"
    dynamic, unrolled = out_dir / "s0-dynamic-int8.onnx", out_dir / "s0-unrolled-int8.onnx"
    files = S0Files(paths, 0.0, checkpoint, dynamic, unrolled)
    if all(p.is_file() for p in [*paths.values(), checkpoint, dynamic, unrolled]):
        return files
    torch = require_torch()
    import time

    from edgewatch.data.simulator import Simulator
    from edgewatch.export.onnx import export_model
    from edgewatch.train.calibrate import mixed_samples
    from edgewatch.train.loop import TrainConfig
    from edgewatch.train.lstm_ae import LstmAeConfig, train_lstm_ae

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        values = Simulator.nominal(rows, seed=seed)
        cfg = LstmAeConfig(window=window, stride=2, train=TrainConfig(
            epochs=epochs, batch_size=64, lr=1e-2, lr_gamma=0.9995, seed=seed, progress=False, desc="bench s0"))
        out_dir.mkdir(parents=True, exist_ok=True)
        outcome = train_lstm_ae(values, FEATURES, cfg, checkpoint, source="simulator (bench)")
        calib = mixed_samples(outcome.calibration, 512, seed)
        card = ModelCard(**outcome.card_fields, quantization=Quantization.NONE)
        for path, quant in ((paths[Engine.ORT_FP32], Quantization.NONE),
                            (paths[Engine.ORT_INT8], Quantization.SENTINEL_INT8),
                            (unrolled, Quantization.UNROLLED_INT8), (dynamic, Quantization.DYNAMIC_INT8)):
            # the parity gate is off here: the agreement figure is what measures it, and must be reported;
            # the dynamic-int8 file (batch-dependent, refused for real use) skips the invariance check
            export_model(outcome.scorer, card, path, quantization=quant, calibration=calib,
                         min_agreement=0.0, check_invariance=quant is not Quantization.DYNAMIC_INT8)
    finally:
        torch.set_num_threads(previous)
    files.train_seconds = time.perf_counter() - t0
    return files


@dataclass
class Agreement:
    nominal_windows: int
    nominal_agreement: float  # share of nominal windows with the same over/under decision as fp32
    faulty_windows: int  # windows overlapping an injected fault
    faulty_agreement: float
    over_fp32: int  # over the threshold, nominal and faulty windows together
    over_int8: int
    alerts_fp32: int
    alerts_int8: int
    alert_agreement: float  # starts matched within one window, over all starts of both (1.0 = the same alerts)


def simulator_windows(rows: int, seeds: tuple[int, ...], window: int = 10, stride: int = 3
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(nominal windows, faulty windows) from the simulator: each seed once clean, once with random faults.

    A faulty window overlaps an injected fault (the simulator's truth);
    windows of the faulty runs that do not are left out of both sets.
    """
    from edgewatch.data.faults import RandomFaults
    from edgewatch.data.simulator import simulate_series

    nominal, faulty = [], []
    for seed in seeds:
        clean = np.asarray(simulate_series(rows, seed=seed).values, np.float32)
        idx = np.arange(window, rows + 1, stride)
        nominal.append(np.stack([clean[i - window:i] for i in idx]))
        series = simulate_series(rows, seed=seed, faults=RandomFaults(every=300, seed=seed))
        values, labels = np.asarray(series.values, np.float32), np.asarray(series.labels)
        hit = np.array([labels[i - window:i].any() for i in idx])
        faulty.append(np.stack([values[i - window:i] for i in idx[hit]]))
    return np.concatenate(nominal), np.concatenate(faulty)


def decision_agreement(paths: dict[Engine, Path], rows: int = 20_000, seeds: tuple[int, ...] = (7, 9),
                       ) -> Agreement:
    """int8 against fp32: window decisions on nominal and on faulty simulator windows, and alerts."""
    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.sources.parsing import Measurement
    from edgewatch.agent.sources import Item, Kind
    from edgewatch.data.faults import RandomFaults
    from edgewatch.data.simulator import simulate_series

    models = {e: ScoringModel(p) for e, p in paths.items()}
    card = models[Engine.ORT_FP32].card
    nominal, faulty = simulator_windows(rows, seeds, card.window, card.stride)

    def over(engine: Engine, x: np.ndarray) -> np.ndarray:
        m = models[engine]
        return np.concatenate([m.score_many(x[i:i + 512]).scores for i in range(0, len(x), 512)]) > card.threshold

    same = {name: float(np.mean(over(Engine.ORT_FP32, x) == over(Engine.ORT_INT8, x)))
            for name, x in (("nominal", nominal), ("faulty", faulty))}
    n_over = {e: int(over(e, nominal).sum() + over(e, faulty).sum()) for e in (Engine.ORT_FP32, Engine.ORT_INT8)}
    series = simulate_series(rows, seed=seeds[0], faults=RandomFaults(every=400, seed=seeds[0]))
    values = np.asarray(series.values, dtype=np.float32)
    starts: dict[Engine, set[int]] = {}
    for engine, model in models.items():
        sink = MemorySink()
        agent = Agent(model, [sink], AgentOptions(agent_id="bench", drift_every=0))
        items = [Item(Kind.MEASUREMENT, "eq-0", Measurement(row.tolist(), float(i)), float(i))
                 for i, row in enumerate(values)]
        for lo in range(0, len(items), 1024):
            agent.process(items[lo:lo + 1024])
        starts[engine] = {e["seq"] for e in sink.events if e["event"] == "start"}
    a, b = sorted(starts[Engine.ORT_FP32]), sorted(starts[Engine.ORT_INT8])
    matched = _matched(a, b, tolerance=card.window)
    return Agreement(len(nominal), same["nominal"], len(faulty), same["faulty"], n_over[Engine.ORT_FP32],
                     n_over[Engine.ORT_INT8], len(a), len(b), 2 * matched / (len(a) + len(b)) if a or b else 1.0)


def _matched(a: list[int], b: list[int], tolerance: int) -> int:
    """Pairs of episode starts (sorted seqs) at most ``tolerance`` messages apart, each used once."""
    i = j = n = 0
    while i < len(a) and j < len(b):
        if abs(a[i] - b[j]) <= tolerance:
            n, i, j = n + 1, i + 1, j + 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return n
