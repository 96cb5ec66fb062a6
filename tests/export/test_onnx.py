"""Export: tiny trained LSTM-AE -> ONNX (none / dynamic / static) -> the agent's ScoringModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgewatch.agent.model import ScoringModel
from edgewatch.cli import main
from edgewatch.contract import PREFIX, Quantization
from edgewatch.errors import BadInput
from edgewatch.export.invariance import MAX_REL_DIFF, BatchDependentScores
from edgewatch.export.onnx import _write_metadata, export_family, export_model
from edgewatch.export.parity import ParityFailed, compare_scores
from edgewatch.export.quantize import quantized_op_counts
from edgewatch.export.scoring import (ForecastScorer, InputScaler, MaxStepReconstructionScorer, score_batches)
from edgewatch.models import family_module
from edgewatch.train.checkpoint import card_from_fields, load_checkpoint
from edgewatch.train.loop import TrainConfig
from edgewatch.train.lstm_ae import LstmAeConfig, train_lstm_ae

FEATURES = ["cpu", "memory", "traffic", "fan"]


def stand_in_series(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = np.stack([0.5 + 0.35 * np.sin(2 * np.pi * t / 40 + k) for k in range(4)], axis=1)
    return np.clip(v + rng.normal(0, 0.01, v.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    cfg = LstmAeConfig(window=10, hidden=24, latent=8, n_export_samples=256,
                       train=TrainConfig(epochs=5, batch_size=32, patience=0, progress=False, seed=0))
    out = tmp_path_factory.mktemp("ckpt") / "lstm-ae.pt"
    return train_lstm_ae(stand_in_series(), FEATURES, cfg, out, source="stand-in.csv").checkpoint


def export(checkpoint: Path, out: Path, quantization: Quantization):  # noqa: ANN201
    ckpt = load_checkpoint(checkpoint)
    family = family_module(ckpt.family)
    scorer = family.build_scorer(ckpt.config, ckpt.state_dict)
    card = card_from_fields(ckpt.card_fields, quantization)
    report = export_model(scorer, card, out, quantization=quantization, calibration=ckpt.calibration,
                          script=family.EXPORT.script)
    return ckpt, scorer, card, report


def test_fp32_export_scores_like_torch_and_carries_the_card(checkpoint: Path, tmp_path: Path) -> None:
    ckpt, scorer, card, report = export(checkpoint, tmp_path / "m.onnx", Quantization.NONE)
    assert report.path.is_file() and report.size_bytes == report.path.stat().st_size
    assert report.n_quantized_nodes == 0
    assert report.decision_agreement == 1.0 and report.max_rel_err < 1e-4
    assert report.invariance is not None and report.invariance.max_rel_diff <= MAX_REL_DIFF
    assert "batch invariance: 128 windows (32 with extreme values)" in "\n".join(report.lines())
    model = ScoringModel(report.path)
    assert model.card == card  # metadata round trip
    x = ckpt.calibration[:64]
    got = model.score_many(x)
    want_s, want_f = score_batches(scorer, x)
    np.testing.assert_allclose(got.scores, want_s, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.feature_error, want_f, rtol=1e-4, atol=1e-7)
    # dynamic batch axis: one-by-one equals batched
    ones = np.array([model.score_one(s)[0] for s in x[:5]])
    np.testing.assert_allclose(ones, got.scores[:5], rtol=1e-5)
    assert [i.shape for i in model.session.get_inputs()][0][1:] == [10, 4]


def test_dynamic_int8_is_refused_because_a_windows_score_depends_on_its_batch(checkpoint: Path,
                                                                               tmp_path: Path) -> None:
    with pytest.raises(BatchDependentScores, match="depends on the other windows of its call.*--quantize auto"):
        export(checkpoint, tmp_path / "q.onnx", Quantization.DYNAMIC_INT8)
    assert list(tmp_path.iterdir()) == []


def test_dynamic_int8_still_quantizes_the_lstms_when_kept_for_comparison(checkpoint: Path, tmp_path: Path) -> None:
    """The benchmarks keep a dynamic-int8 file to measure what stream isolation costs."""
    ckpt = load_checkpoint(checkpoint)
    scorer = family_module(ckpt.family).build_scorer(ckpt.config, ckpt.state_dict)
    card = card_from_fields(ckpt.card_fields, Quantization.DYNAMIC_INT8)
    report = export_model(scorer, card, tmp_path / "q.onnx", quantization=Quantization.DYNAMIC_INT8,
                          calibration=ckpt.calibration, check_invariance=False)
    assert report.quantized_ops.get("DynamicQuantizeLSTM", 0) == 3 and report.invariance is None
    assert report.decision_agreement >= 0.99 and report.n_over_threshold > 0
    model = ScoringModel(report.path)
    assert model.card.quantization is Quantization.DYNAMIC_INT8 and model.card == card
    x = ckpt.calibration
    ref, _ = score_batches(scorer, x)
    assert np.median(np.abs(model.score_many(x).scores - ref) / ref) < 0.1
    assert quantized_op_counts(report.path) == report.quantized_ops


def test_unrolled_int8_replaces_the_lstms_by_int8_matmuls_and_stays_batch_invariant(checkpoint: Path,
                                                                                    tmp_path: Path) -> None:
    ckpt, scorer, card, report = export(checkpoint, tmp_path / "u.onnx", Quantization.UNROLLED_INT8)
    ops = report.quantized_ops
    graph_ops = [n.op_type for n in onnx.load(str(report.path)).graph.node]
    assert "LSTM" not in graph_ops and "DynamicQuantizeLSTM" not in graph_ops
    # first layer: fp32 input projection, 4 recurrent gates from step 1 on; the other two read hidden
    # states: 4 gates a step, but the forget gate of step 0 has nothing to forget (dropped)
    assert ops["MatMulIntegerToFloat"] == 4 * 9 + 2 * (4 * 10 - 1)
    assert report.decision_agreement >= 0.99 and report.n_over_threshold > 0
    assert report.invariance is not None and report.invariance.max_rel_diff <= MAX_REL_DIFF
    model = ScoringModel(report.path)
    assert model.card.quantization is Quantization.UNROLLED_INT8 and model.card == card
    ref, _ = score_batches(scorer, ckpt.calibration)
    assert np.median(np.abs(model.score_many(ckpt.calibration).scores - ref) / ref) < 0.1


def test_sentinel_int8_is_orts_fused_int8_lstm_and_a_wild_window_moves_only_its_own_row(checkpoint: Path,
                                                                                           tmp_path: Path) -> None:
    ckpt, scorer, card, report = export(checkpoint, tmp_path / "s.onnx", Quantization.SENTINEL_INT8)
    assert report.quantized_ops == {"DynamicQuantizeLSTM": 3}
    nodes = [n for n in onnx.load(str(report.path)).graph.node if n.op_type == "DynamicQuantizeLSTM"]
    hidden = [next(a.i for a in n.attribute if a.name == "hidden_size") for n in nodes]
    assert hidden == [24 + 2, 8 + 2, 24 + 2]  # two sentinel units per layer
    assert report.decision_agreement >= 0.99 and report.n_over_threshold > 0
    assert report.invariance is not None and report.invariance.max_rel_diff <= MAX_REL_DIFF
    text = "\n".join(report.lines())
    assert "input clipped to [" in text and "below the sentinels" in text
    model = ScoringModel(report.path)
    lo, hi = model.card.input_clip
    assert lo < 0 and hi > 1  # the min-max scaled training range [0, 1] lies inside, with room
    assert model.card == card.with_overrides(input_clip=[lo, hi])
    x = ckpt.calibration[:8].copy()
    alone = model.score_many(x).scores
    wild = x.copy()
    wild[3, 4, 1] = 1e6  # clipped for the network, but the score compares the raw value
    wild[5] = np.nan
    wild[6, 0, 0] = np.inf
    got = model.score_many(wild).scores
    keep = [0, 1, 2, 4, 7]
    np.testing.assert_allclose(got[keep], alone[keep], rtol=MAX_REL_DIFF, atol=0)
    assert got[3] > 1e6 * card.threshold and np.isnan(got[5]) and not np.isfinite(got[6])


def test_a_unit_saturating_like_a_sentinel_is_refused_and_auto_exports_fp32(checkpoint: Path,
                                                                            tmp_path: Path) -> None:
    """A real unit as large as the sentinels could move a call's range by ONNX Runtime's rounding: refused."""
    ckpt = load_checkpoint(checkpoint)
    family = family_module(ckpt.family)
    state = dict(ckpt.state_dict)
    bias = state["model.encoder.bias_ih_l0"].clone()
    hidden = bias.numel() // 4
    bias[[0, hidden, 2 * hidden, 3 * hidden]] = 60.0  # unit 0: input, forget, cell and output gates saturated
    state["model.encoder.bias_ih_l0"] = bias
    scorer = family.build_scorer(ckpt.config, state)
    card = card_from_fields(ckpt.card_fields, Quantization.SENTINEL_INT8)
    with pytest.raises(BatchDependentScores, match="comes within .* of its layer's sentinels"):
        export_model(scorer, card, tmp_path / "s.onnx", quantization=Quantization.SENTINEL_INT8,
                     calibration=ckpt.calibration, min_agreement=0.0)
    report = export_family(scorer, card, tmp_path / "a.onnx", family.EXPORT, calibration=ckpt.calibration,
                           min_agreement=0.0)
    assert report.quantization is Quantization.NONE and "sentinel-int8 refused" in report.fallback_from
    assert not (tmp_path / "s.onnx").exists()


def test_auto_falls_back_to_the_familys_second_choice_when_a_check_fails(checkpoint: Path, tmp_path: Path) -> None:
    """A first choice the export refuses (here dynamic int8: batch-dependent) leaves the fallback."""
    from edgewatch.models import ExportSpec

    ckpt = load_checkpoint(checkpoint)
    family = family_module(ckpt.family)
    scorer = family.build_scorer(ckpt.config, ckpt.state_dict)
    card = card_from_fields(ckpt.card_fields, family.EXPORT.quantization)
    spec = ExportSpec(quantization=Quantization.DYNAMIC_INT8, fallback=Quantization.NONE)
    report = export_family(scorer, card, tmp_path / "a.onnx", spec, calibration=ckpt.calibration)
    assert report.quantization is Quantization.NONE and report.decision_agreement == 1.0
    assert "dynamic-int8 refused" in report.fallback_from and "depends on the other windows" in report.fallback_from
    assert "fallback: dynamic-int8 refused" in "\n".join(report.lines())
    assert ScoringModel(report.path).card.quantization is Quantization.NONE
    with pytest.raises(BatchDependentScores):
        export_family(scorer, card, tmp_path / "b.onnx", ExportSpec(quantization=Quantization.DYNAMIC_INT8),
                      calibration=ckpt.calibration)


def test_unrolled_int8_refuses_a_model_without_lstm(tmp_path: Path) -> None:
    from edgewatch.export.quantize import quantize_file

    src = tmp_path / "plain.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), str(src))
    with pytest.raises(BadInput, match="has none"):
        quantize_file(src, tmp_path / "out.onnx", Quantization.UNROLLED_INT8)


def test_static_qdq_inserts_quantize_nodes(checkpoint: Path, tmp_path: Path) -> None:
    _, _, _, report = export(checkpoint, tmp_path / "s.onnx", Quantization.STATIC_QDQ_INT8)
    assert report.quantized_ops.get("QuantizeLinear", 0) > 0
    assert ScoringModel(report.path).card.quantization is Quantization.STATIC_QDQ_INT8


class _EagerOnlyOffset(nn.Module):
    """A scorer whose eager scores differ from its traced graph: the parity check must catch it."""

    def __init__(self, inner: nn.Module, offset: float) -> None:
        super().__init__()
        self.inner = inner
        self.offset = offset

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, f = self.inner(x)
        if torch.jit.is_tracing():
            return s, f
        return s + self.offset, f


def test_broken_parity_fails_the_export_and_leaves_no_file(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(checkpoint)
    scorer = family_module(ckpt.family).build_scorer(ckpt.config, ckpt.state_dict)
    card = card_from_fields(ckpt.card_fields, Quantization.NONE)
    out = tmp_path / "broken.onnx"
    with pytest.raises(ParityFailed, match="agrees with PyTorch on only"):
        export_model(_EagerOnlyOffset(scorer, 2 * card.threshold), card, out, quantization=Quantization.NONE,
                     calibration=ckpt.calibration)
    assert list(tmp_path.iterdir()) == []  # neither the model nor temporary files


def test_calibration_of_the_wrong_shape_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(checkpoint)
    scorer = family_module(ckpt.family).build_scorer(ckpt.config, ckpt.state_dict)
    card = card_from_fields(ckpt.card_fields, Quantization.NONE)
    with pytest.raises(BadInput, match="shape"):
        export_model(scorer, card, tmp_path / "m.onnx", quantization=Quantization.NONE,
                     calibration=ckpt.calibration[:, :5])


def test_metadata_merge_keeps_other_tools_keys(checkpoint: Path, tmp_path: Path) -> None:
    _, _, card, report = export(checkpoint, tmp_path / "m.onnx", Quantization.NONE)
    m = onnx.load(str(report.path))
    entry = m.metadata_props.add()
    entry.key, entry.value = "other.tool", "kept"
    onnx.save(m, str(tmp_path / "with_other.onnx"))
    _write_metadata(tmp_path / "with_other.onnx", tmp_path / "again.onnx", card)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "again.onnx")).metadata_props}
    assert props["other.tool"] == "kept"
    assert {k: v for k, v in props.items() if k.startswith(PREFIX)} == card.to_props()


def test_cli_export_prints_parity_and_writes_an_agent_readable_file(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    res = CliRunner().invoke(main, ["export", "onnx", str(checkpoint), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "sentinel-int8 quantization" in res.output and "decision agreement" in res.output
    assert "batch invariance" in res.output and "why sentinel-int8: " in res.output
    assert ScoringModel(out).card.quantization is Quantization.SENTINEL_INT8
    refused = CliRunner().invoke(main, ["export", "onnx", str(checkpoint), "-o", str(tmp_path / "d.onnx"),
                                        "--quantize", "dynamic"])
    assert refused.exit_code == 3 and "depends on the other windows" in refused.output
    assert not (tmp_path / "d.onnx").exists()


def test_cli_export_of_a_missing_checkpoint_exits_4(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["export", "onnx", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 4 and "does not exist" in res.output


def test_compare_scores_counts_decision_flips() -> None:
    p = compare_scores(np.array([0.1, 0.2, 0.9, 1.1]), np.array([0.1, 0.21, 1.01, 1.1]), threshold=1.0)
    assert p.decision_agreement == 0.75 and p.n_over_threshold == 1
    assert p.max_rel_err == pytest.approx(0.11 / 0.9)


def test_max_step_and_forecast_scorers_follow_their_definitions() -> None:
    x = torch.zeros(2, 6, 3)
    x[0, 2, 1] = 1.0  # one bad step in sample 0
    zero = _Zero()
    s, f = MaxStepReconstructionScorer(zero, InputScaler.identity(3))(x)
    assert s.tolist() == pytest.approx([1.0 / 3, 0.0])  # max over time of the per-step MSE
    assert f[0].tolist() == pytest.approx([0.0, 1.0 / 6, 0.0])  # mean over time per feature
    x = torch.zeros(1, 5, 2)
    x[0, 3:, 0] = torch.tensor([3.0, 4.0])  # horizon 2, forecast zeros: error (3, 4) -> L2 norm 5
    s, f = ForecastScorer(_ZeroForecast(2, 2), InputScaler.identity(2), horizon=2)(x)
    assert s.item() == pytest.approx(5.0)
    assert f[0].tolist() == pytest.approx([3.5, 0.0])
    scripted = torch.jit.script(ForecastScorer(_ZeroForecast(2, 2), InputScaler.identity(2), horizon=2))
    assert scripted(x)[0].item() == pytest.approx(5.0)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class _ZeroForecast(nn.Module):
    def __init__(self, horizon: int, n_features: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.n_features = n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.horizon * self.n_features)


def test_cli_export_with_calibration_csv_and_threshold_override(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "cal.csv"
    np.savetxt(data, stand_in_series(300, seed=3), delimiter=",", header=",".join(FEATURES), comments="",
               fmt="%.6f")
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["export", "onnx", str(checkpoint), "-o", str(out), "--quantize", "none",
                                    "--calibration-data", str(data), "--threshold", "0.5"])
    assert res.exit_code == 0, res.output
    assert "on 97 calibration samples" in res.output  # (300 - 10) // stride 3 + 1 windows
    card = ScoringModel(out).card
    assert card.threshold == 0.5 and card.threshold_method.startswith("set by hand")
    wrong = tmp_path / "wrong.csv"
    np.savetxt(wrong, stand_in_series(50), delimiter=",", header="a,b,c,d", comments="", fmt="%.6f")
    res = CliRunner().invoke(main, ["export", "onnx", str(checkpoint), "-o", str(tmp_path / "w.onnx"),
                                    "--calibration-data", str(wrong)])
    assert res.exit_code == 4 and "columns" in res.output


def test_cli_export_of_a_checkpoint_from_another_version_exits_3_with_the_reason(checkpoint: Path,
                                                                                  tmp_path: Path) -> None:
    """A checkpoint whose tensors do not fit this code's modules is a wrong model file, not a traceback."""
    from edgewatch.train.checkpoint import save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    state = dict(ckpt.state_dict)
    state["score_head.extra"] = torch.zeros(3)  # what a newer score head would carry
    name = next(k for k, v in state.items() if getattr(v, "ndim", 0) == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])  # a layer of another size
    other = save_checkpoint(tmp_path / "other.pt", ckpt.family, ckpt.config, state, ckpt.card_fields,
                            ckpt.calibration)
    res = CliRunner().invoke(main, ["export", "onnx", str(other), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 3, res.output
    assert "does not fit this version's lstm-ae model" in res.output and "score_head.extra" in res.output
    assert name in res.output and not (tmp_path / "m.onnx").exists()
