"""One conformance suite for every model family present: train tiny, checkpoint, export, parity, agent.

Each family gets a tiny real training (seconds, one thread) on small
synthetic data; then the same checks run on each. Ids read
``test_x[deepant]``, ``test_x[conv-ae]`` ...
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from edgewatch.agent.engine import SCORE_BATCH
from edgewatch.agent.model import ScoringModel
from edgewatch.contract import Quantization
from edgewatch.export.invariance import CHECK_BATCH, MAX_REL_DIFF, BatchDependentScores
from edgewatch.export.onnx import export_family, export_model
from edgewatch.export.scoring import score_batches
from edgewatch.models import family_module
from edgewatch.train.checkpoint import card_from_fields, load_checkpoint, save_checkpoint
from edgewatch.train.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@dataclass
class Tiny:
    """What a tiny training of one family left behind."""

    checkpoint: Path
    scorer: torch.nn.Module
    train_loss: list[float]


def _sines(n: int, features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return (np.sin(2 * np.pi * t / 25 + np.arange(features)) + rng.uniform(-0.05, 0.05, (n, features))
            ).astype(np.float32)


def _train(**kw: object) -> TrainConfig:
    opts = dict(batch_size=32, lr=1e-2, lr_gamma=1.0, progress=False, seed=0)
    opts.update(kw)
    return TrainConfig(**opts)


def tiny_deepant(out: Path) -> Tiny:
    from edgewatch.models.deepant import DeepAntConfig
    from edgewatch.train.deepant import train_deepant

    values = _sines(600, 1, 0)[:, 0] * 100 + 300
    values[400] += 150  # one spike so that parity sees a window over the threshold
    run = train_deepant(values, DeepAntConfig(channels=8, hidden=8), _train(epochs=4))
    save_checkpoint(out, "deepant", run.model_config.to_dict(), run.scorer.state_dict(), run.card_fields,
                    calibration=run.windows)
    return Tiny(out, run.scorer, run.train_result.train_loss)


def tiny_rnn_ae(out: Path) -> Tiny:
    from edgewatch.models.rnn_ae import RnnAeConfig
    from edgewatch.train.rnn_ae import train_rnn_ae

    run = train_rnn_ae(_sines(800, 2, 0), RnnAeConfig(window=20, n_features=2, hidden=8), stride=5,
                       train_config=_train(epochs=4))
    save_checkpoint(out, "rnn-ae", run.model_config.to_dict(), run.scorer.state_dict(), run.card_fields,
                    calibration=run.calibration)
    return Tiny(out, run.scorer, run.train_result.train_loss)


def _tiny_images(n: int, seed: int) -> np.ndarray:
    """Bright blobs at random places on a dark 28x28 field: learnable in seconds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
    r = rng.uniform(3, 6, (n, 1, 1))
    return (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))).astype(np.float32)


def tiny_conv_ae(out: Path) -> Tiny:
    from edgewatch.models.conv_ae import ConvAeConfig
    from edgewatch.train.conv_ae import train_conv_ae

    run = train_conv_ae(_tiny_images(160, 0), _tiny_images(64, 1), ConvAeConfig(channels=[4, 8, 8], dense=[32, 16]),
                        _train(epochs=4, lr=3e-3))
    save_checkpoint(out, "conv-ae", run.model_config.to_dict(), run.scorer.state_dict(), run.card_fields,
                    calibration=run.calibration)
    return Tiny(out, run.scorer, run.train_result.train_loss)


def tiny_lstm_ae(out: Path) -> Tiny:
    from edgewatch.train.lstm_ae import LstmAeConfig, train_lstm_ae

    values = (0.5 + 0.4 * _sines(1200, 4, 0)).clip(0, 1)
    cfg = LstmAeConfig(window=10, hidden=12, latent=6, train=_train(epochs=4), n_export_samples=128)
    res = train_lstm_ae(values, ["a", "b", "c", "d"], cfg, out, source="sines")
    return Tiny(res.checkpoint, res.scorer, res.history.train_loss)


def tiny_conv1d_ae(out: Path) -> Tiny:
    from edgewatch.models.conv1d_ae import Conv1dAutoencoder, model_config
    from edgewatch.train.window_ae import WindowAeConfig, train_window_ae

    values = _sines(400, 3, 0)
    run = train_window_ae(lambda n: Conv1dAutoencoder(n, (8, 4)), "conv1d-ae", values, ["a", "b", "c"],
                          WindowAeConfig(window=16, train=_train(epochs=4, lr=3e-3)))
    save_checkpoint(out, "conv1d-ae", model_config(3, 16, (8, 4)), run.scorer.state_dict(), run.card_fields,
                    calibration=run.calibration)
    return Tiny(out, run.scorer, run.history.train_loss)


TRAINERS: dict[str, Callable[[Path], Tiny]] = {
    "lstm-ae": tiny_lstm_ae, "deepant": tiny_deepant, "rnn-ae": tiny_rnn_ae, "conv-ae": tiny_conv_ae,
    "conv1d-ae": tiny_conv1d_ae,
}
FAMILIES = [f for f in TRAINERS if importlib.util.find_spec("edgewatch.models." + f.replace("-", "_"))]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    torch.set_num_threads(1)
    return TRAINERS[request.param](tmp_path_factory.mktemp(request.param) / "model.ckpt")


@pytest.fixture(scope="module")
def exported(tiny: Tiny) -> tuple[Path, object]:
    ck = load_checkpoint(tiny.checkpoint)
    fam = family_module(ck.family)
    out = tiny.checkpoint.with_suffix(".onnx")
    report = export_family(fam.build_scorer(ck.config, ck.state_dict),
                           card_from_fields(ck.card_fields, fam.EXPORT.quantization), out, fam.EXPORT,
                           calibration=ck.calibration)
    assert report.quantization in (fam.EXPORT.quantization, fam.EXPORT.fallback)
    return out, report


def _export(checkpoint: Path) -> Path:
    ck = load_checkpoint(checkpoint)
    fam = family_module(ck.family)
    out = checkpoint.with_suffix(".onnx")
    export_family(fam.build_scorer(ck.config, ck.state_dict), card_from_fields(ck.card_fields, fam.EXPORT.quantization),
                  out, fam.EXPORT, calibration=ck.calibration)
    return out


_SEEDED_RUN = """
import hashlib, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from tests.export.test_family_suite import TRAINERS, _export
for family in sys.argv[3].split(","):
    torch.manual_seed(int(sys.argv[2]))  # whatever the global generator holds before, the family's seed decides
    path = _export(TRAINERS[family](Path(sys.argv[1]) / family / "model.ckpt").checkpoint)
    print(family, hashlib.sha256(path.read_bytes()).hexdigest())
"""


def test_one_seed_gives_one_model_file(tmp_path: Path) -> None:
    """Every family trained and exported in two processes with seed 0: the same bytes. (conv1d-ae built its
    module before the seed was set and wrote the date into its card: four runs gave four thresholds.) Separate
    processes, as a user runs them: within one process TorchScript names a second export's nodes otherwise."""
    runs = []
    for i, other in enumerate((1, 2)):
        proc = subprocess.run([sys.executable, "-c", _SEEDED_RUN, str(tmp_path / str(i)), str(other),
                               ",".join(FAMILIES)], capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(dict(line.split() for line in proc.stdout.splitlines() if line.split()[0] in FAMILIES))
    assert set(runs[0]) == set(FAMILIES)
    assert runs[0] == runs[1]


def test_tiny_training_lowers_the_loss(tiny: Tiny) -> None:
    assert len(tiny.train_loss) >= 2
    assert tiny.train_loss[-1] < tiny.train_loss[0]


def test_checkpoint_round_trip_rebuilds_the_same_scorer(tiny: Tiny) -> None:
    ck = load_checkpoint(tiny.checkpoint)
    rebuilt = family_module(ck.family).build_scorer(ck.config, ck.state_dict)
    samples = ck.calibration[:64]
    want, want_fe = score_batches(tiny.scorer, samples)
    got, got_fe = score_batches(rebuilt, samples)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_fe, want_fe, rtol=1e-6, atol=1e-7)
    card = card_from_fields(ck.card_fields, Quantization.NONE)
    assert card.family == ck.family and np.isfinite(card.threshold)
    assert want_fe.shape == (len(samples), card.n_features)


def test_export_keeps_decisions_and_quantizes_what_it_claims(tiny: Tiny, exported: tuple) -> None:
    path, report = exported
    ck = load_checkpoint(tiny.checkpoint)
    assert path.is_file() and report.export_seconds < 60
    assert report.decision_agreement >= 0.99
    assert report.n_parity_samples == min(len(ck.calibration), 2048)
    if report.quantization is Quantization.NONE:
        assert report.n_quantized_nodes == 0
        assert report.max_rel_err < 1e-3
    else:
        assert report.n_quantized_nodes > 0, report.quantized_ops


def test_metadata_round_trips_through_the_model_file(tiny: Tiny, exported: tuple) -> None:
    path, report = exported
    ck = load_checkpoint(tiny.checkpoint)
    card = ScoringModel(path).card
    # the sentinel form records the range it clips the network's input to; nothing else adds to the card
    assert (card.input_clip is not None) == (report.quantization is Quantization.SENTINEL_INT8)
    assert card == card_from_fields(ck.card_fields, report.quantization).with_overrides(input_clip=card.input_clip)
    assert card.drift_reference is not None and len(card.drift_reference.quantiles) == card.n_features


def test_agent_scores_with_torch_blocked(tiny: Tiny, exported: tuple, tmp_path: Path) -> None:
    path, _ = exported
    ck = load_checkpoint(tiny.checkpoint)
    samples = ck.calibration[:32]
    np.save(tmp_path / "x.npy", samples)
    script = f"""
import sys, json
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'onnxscript', 'sklearn', 'matplotlib'):
            raise ImportError(name + ' is blocked in this test')
sys.meta_path.insert(0, _Block())
import numpy as np
from edgewatch.agent.model import ScoringModel
m = ScoringModel({str(path)!r})
b = m.score_many(np.load({str(tmp_path / 'x.npy')!r}))
print(json.dumps({{"scores": b.scores.tolist(), "fe_shape": list(b.feature_error.shape),
                  "n_features": m.card.n_features, "heavy": sorted(k for k in sys.modules if k.split('.')[0] == 'torch')}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    scores = np.array(out["scores"])
    assert scores.shape == (len(samples),) and np.isfinite(scores).all()
    assert out["fe_shape"] == [len(samples), out["n_features"]]
    assert out["heavy"] == []
    want, _ = score_batches(tiny.scorer, samples)
    rtol = 1e-3 if ScoringModel(path).card.quantization is Quantization.NONE else 0.5
    np.testing.assert_allclose(scores, want, rtol=rtol, atol=1e-4)


def test_anomaly_score_is_0_on_typical_normal_data_and_1_at_the_threshold(exported: tuple, tiny: Tiny) -> None:
    """One scale for every family: the agent's anomaly_score puts the same decisions at 1 as the raw threshold."""
    from edgewatch.agent.score_scale import ScaleOrigin, scale_for

    path, _ = exported
    model = ScoringModel(path)
    card = model.card
    scale = scale_for(card, card.threshold)
    assert scale.basis is ScaleOrigin.NORMAL_MEDIAN  # each family records its normal scores, below its threshold
    assert scale.score(card.score_stats["normal"].p50) == 0.0 and scale.score(card.threshold) == 1.0
    scores = model.score_many(load_checkpoint(tiny.checkpoint).calibration[:256]).scores.astype(np.float64)
    np.testing.assert_array_equal(scale.scores(scores) > 1, scores > card.threshold)


def test_export_checked_batch_invariance(exported: tuple, tiny: Tiny) -> None:
    """A window's score is the same alone or beside any windows, extreme ones included (stream isolation)."""
    path, report = exported
    inv = report.invariance
    assert inv is not None and inv.n_extreme > 0 and inv.max_batch == max(SCORE_BATCH, CHECK_BATCH)
    assert inv.max_rel_diff <= MAX_REL_DIFF
    model = ScoringModel(path)
    samples = load_checkpoint(tiny.checkpoint).calibration[:5]
    single = np.array([model.score_one(s)[0] for s in samples])
    absurd = samples[:1].copy()
    absurd.reshape(-1)[0] = 1e20
    batch = model.score_many(np.concatenate([samples, absurd])).scores[:5]
    np.testing.assert_allclose(batch, single, rtol=MAX_REL_DIFF, atol=0)


@pytest.mark.parametrize("quantization", [Quantization.STATIC_QDQ_INT8, Quantization.DYNAMIC_INT8])
def test_int8_exports_quantize_nodes_or_say_they_did_not(tiny: Tiny, quantization: Quantization,
                                                          tmp_path: Path) -> None:
    """The measurement behind each family's EXPORT choice: count what int8 actually quantizes.

    Dynamic int8 is measured with the invariance check off; with it on, a file with any
    dynamically quantized node is refused (its scales depend on the call's other windows).
    """
    ck = load_checkpoint(tiny.checkpoint)
    fam = family_module(ck.family)
    scorer, card = fam.build_scorer(ck.config, ck.state_dict), card_from_fields(ck.card_fields, quantization)
    dynamic = quantization is Quantization.DYNAMIC_INT8
    report = export_model(scorer, card, tmp_path / "q.onnx", quantization=quantization, calibration=ck.calibration,
                          script=fam.EXPORT.script, min_agreement=0.0, check_invariance=not dynamic)
    ops = report.quantized_ops
    if quantization is Quantization.STATIC_QDQ_INT8:
        assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0, ops
        assert report.invariance is not None and report.invariance.max_rel_diff <= MAX_REL_DIFF
    else:
        if ck.family == "rnn-ae":
            # GRU stays fp32 and the decoder's steps sit inside the Loop body, which dynamic int8 does not
            # enter: only the one MatMul outside it is quantized, which is why the family exports fp32
            import onnx

            graph = onnx.load(str(report.path)).graph
            (body,) = [a.g for n in graph.node if n.op_type == "Loop" for a in n.attribute if a.name == "body"]
            assert ops == {"DynamicQuantizeLinear": 1, "MatMulInteger": 1}, ops
            assert "GRU" in [n.op_type for n in graph.node]
            assert not {"MatMulInteger", "DynamicQuantizeLinear"} & {n.op_type for n in body.node}
        assert report.n_quantized_nodes > 0, ops
        with pytest.raises(BatchDependentScores, match="depends on the other windows"):
            export_model(scorer, card, tmp_path / "refused.onnx", quantization=quantization,
                         calibration=ck.calibration, script=fam.EXPORT.script, min_agreement=0.0)
        assert not (tmp_path / "refused.onnx").exists()
    scores = ScoringModel(report.path).score_many(ck.calibration[:16]).scores
    assert np.isfinite(scores).all()


def test_rnn_ae_decoder_exports_as_one_loop(tmp_path: Path) -> None:
    """Scripted decoder -> an ONNX Loop, not 100 unrolled steps; scores equal PyTorch's."""
    import onnx

    from edgewatch.models.rnn_ae import RnnAeConfig
    from edgewatch.train.rnn_ae import train_rnn_ae

    run = train_rnn_ae(_sines(1300, 1, 3), RnnAeConfig(window=100, hidden=8), stride=10,
                       train_config=_train(epochs=1))
    save_checkpoint(tmp_path / "r.ckpt", "rnn-ae", run.model_config.to_dict(), run.scorer.state_dict(),
                    run.card_fields, calibration=run.calibration)
    ck = load_checkpoint(tmp_path / "r.ckpt")
    report = export_model(family_module("rnn-ae").build_scorer(ck.config, ck.state_dict),
                          card_from_fields(ck.card_fields, Quantization.NONE), tmp_path / "r.onnx",
                          quantization=Quantization.NONE, calibration=ck.calibration, script=True)
    graph = onnx.load(str(report.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Loop") == 1 and len(ops) < 100
    # the folded decoder (RnnAutoencoder.for_export): one MatMul a step, the output head after the loop
    (body,) = [a.g for n in graph.node if n.op_type == "Loop" for a in n.attribute if a.name == "body"]
    body_ops = [n.op_type for n in body.node]
    assert body_ops.count("MatMul") == 1 and "Gemm" not in body_ops and len(body_ops) <= 14, body_ops
    assert report.max_rel_err < 1e-4  # export time: printed by the command, figures in docs/families.md
    assert report.invariance is not None and report.invariance.max_rel_diff <= MAX_REL_DIFF


def test_rnn_ae_export_form_computes_the_trained_function() -> None:
    """The folded decoder equals the module it was made from, window by window, alone and in a batch."""
    from edgewatch.export.onnx import export_form
    from edgewatch.models.rnn_ae import FoldedDecoderAutoencoder, RnnAeConfig, RnnAutoencoder

    torch.manual_seed(4)
    ae = RnnAutoencoder(RnnAeConfig(window=30, n_features=3, hidden=12)).eval()
    with torch.no_grad():  # weights far from their initial scale, so a wrong fold shows
        for p in ae.parameters():
            p.mul_(3.0)
    folded = ae.for_export()
    assert isinstance(folded, FoldedDecoderAutoencoder)
    x = torch.randn(9, 30, 3)
    with torch.inference_mode():
        want = ae(x)
        got = folded(x)
        alone = torch.cat([folded(x[i:i + 1]) for i in range(9)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, got, rtol=1e-6, atol=1e-6)
    scorer = family_module("rnn-ae").build_scorer(RnnAeConfig(window=30, n_features=3, hidden=12).to_dict(),
                                                  _rnn_scorer_state(ae))
    form = export_form(scorer)
    assert isinstance(form.model, FoldedDecoderAutoencoder) and isinstance(scorer.model, RnnAutoencoder)
    assert form.training is scorer.training is False


def _rnn_scorer_state(ae: torch.nn.Module) -> dict:
    from edgewatch.export.scoring import InputScaler, MaxStepReconstructionScorer

    return MaxStepReconstructionScorer(ae, InputScaler.identity(3)).state_dict()
