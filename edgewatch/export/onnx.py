"""torch scorer -> self-describing (quantized) ONNX file, checked before it is kept.

:func:`export_model` is the one export path of every family:

1. export the scorer with a static sample shape and a dynamic batch axis
   (input ``x``, outputs ``score`` and ``feature_error``), with the
   TorchScript-based exporter (``dynamo=False``): it exports the LSTM
   family as native ``LSTM`` nodes in well under a second (measured at
   160/60, window 10: 0.6 s, against 69 s for ``dynamo=True``, which also
   yields LSTM nodes but adds 26 Slice nodes), which
   ``quantize_dynamic`` then turns into ``DynamicQuantizeLSTM``. With
   ``script=True`` the scorer is ``torch.jit.script``-ed first, so that an
   autoregressive decoder becomes an ONNX ``Loop`` instead of being unrolled.
   A submodule with a ``for_export()`` method is exported as what that
   returns (:func:`export_form`): the same function arranged for the graph
   (the RNN-AE folds its decoder); step 4 checks it against the module itself;
2. quantize (:mod:`edgewatch.export.quantize`);
3. merge the card into ``metadata_props`` (other tools' keys are kept);
4. load the file with the agent's :class:`~edgewatch.agent.model.ScoringModel`
   (proves the agent accepts it), compare its scores with PyTorch's on
   the calibration samples (:mod:`edgewatch.export.parity`), and check that
   a window's score is the same alone and in any batch of the agent's size,
   extreme windows included (:mod:`edgewatch.export.invariance`; dynamic
   int8 fails it: it picks its activation ranges per call);
5. only then move it into place (temporary file + ``os.replace``). On any
   failure no file is left at ``out``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgewatch.contract import FEATURE_ERROR_OUTPUT, INPUT_NAME, SCORE_OUTPUT, ModelCard, Quantization
from edgewatch.errors import BadInput, BadModelFile
from edgewatch.export.invariance import CHECK_BATCH, BatchDependentScores, Invariance, check_batch_invariance
from edgewatch.export.parity import MIN_AGREEMENT, ParityFailed, check_parity, compare_scores
from edgewatch.export.quantize import quantize_file, quantized_op_counts
from edgewatch.export.scoring import score_batches

log = logging.getLogger(__name__)

OPSET = 17
MAX_PARITY_SAMPLES = 2048


@dataclass
class ExportReport:
    path: Path
    quantization: Quantization
    n_quantized_nodes: int  # 0 with quantization on means the quantizer skipped every layer
    quantized_ops: dict[str, int]
    max_rel_err: float
    mean_rel_err: float
    decision_agreement: float
    n_parity_samples: int
    n_over_threshold: int
    export_seconds: float
    size_bytes: int
    # a window's score alone vs in batches of the agent's size (extreme windows included); None when
    # the check was skipped (benchmark files kept for comparison only)
    invariance: Invariance | None = None
    fallback_from: str = ""  # why the family's first choice of quantization was not used (export_family)
    detail: str = ""  # what the quantization needed to know or check (the sentinel form's range and headroom)
    why: str = ""  # the family's reason for its choice of quantization (ExportSpec.why), with --quantize auto

    def lines(self) -> list[str]:
        """The report as short lines for a terminal."""
        ops = ", ".join(f"{k} x{v}" for k, v in self.quantized_ops.items()) or "none"
        return [
            f"wrote {self.path} ({self.size_bytes / 1024:.1f} KiB) in {self.export_seconds:.2f} s",
            f"quantization: {self.quantization.value}; quantized nodes: {self.n_quantized_nodes} ({ops})"
            + (f" -- fallback: {self.fallback_from}" if self.fallback_from else ""),
            *([f"why {self.quantization.value}: {self.why}"] if self.why and not self.fallback_from else []),
            *([self.detail] if self.detail else []),
            f"parity vs PyTorch on {self.n_parity_samples} calibration samples "
            f"({self.n_over_threshold} over the threshold): max rel. score error {self.max_rel_err:.3g}, "
            f"mean {self.mean_rel_err:.3g}, decision agreement {self.decision_agreement:.2%}",
            self._invariance_line(),
        ]

    def _invariance_line(self) -> str:
        inv = self.invariance
        if inv is None:
            return "batch invariance: not checked (this file may score a window differently in a batch)"
        return (f"batch invariance: {inv.n_windows} windows ({inv.n_extreme} with extreme values) alone vs in "
                f"{inv.n_batches} batches of up to {inv.max_batch}: max relative difference {inv.max_rel_diff:.3g}")


def export_model(scorer: nn.Module, card: ModelCard, out: str | os.PathLike[str], *,
                 quantization: Quantization, calibration: np.ndarray, script: bool = False,
                 min_agreement: float = MIN_AGREEMENT, check_invariance: bool = True) -> ExportReport:
    """Export, quantize, describe and check ``scorer``; write ``out`` only if it passes.

    ``calibration`` holds raw-unit samples ``[N, *card.sample_shape]``; they
    calibrate static quantization and are the parity set, so they should
    include samples on both sides of the threshold. ``check_invariance=False``
    is for benchmark files that keep a batch-dependent form for comparison;
    a file a user runs should never skip it.
    """
    started = time.perf_counter()
    quantization = Quantization(quantization)
    card = dataclasses.replace(card, quantization=quantization)
    calib = _check_calibration(calibration, card)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scorer = scorer.eval()
    with tempfile.TemporaryDirectory(prefix=".edgewatch-export-", dir=out.parent) as tmpdir:
        fp32 = Path(tmpdir) / "fp32.onnx"
        quantized = Path(tmpdir) / "quantized.onnx"
        final = Path(tmpdir) / out.name
        _export_fp32(scorer, torch.from_numpy(calib[:2].copy()), fp32, script)
        done = quantize_file(fp32, quantized, quantization, calib)
        card = dataclasses.replace(card, **done.card)
        _write_metadata(quantized, final, card)
        ops = quantized_op_counts(final)
        if quantization is not Quantization.NONE and not ops:
            log.warning("%s quantization left every node in fp32 for family %s", quantization.value, card.family)

        from edgewatch.agent.model import ScoringModel

        model = ScoringModel(final)
        parity_set = calib[:MAX_PARITY_SAMPLES]
        ref, _ = score_batches(scorer, parity_set)
        got = model.score_many(parity_set).scores
        parity = compare_scores(ref, got, card.threshold)
        what = f"export of {card.family} to {out} ({quantization.value})"
        check_parity(parity, what, min_agreement)
        invariance = None
        if check_invariance:
            from edgewatch.agent.engine import SCORE_BATCH

            invariance = check_batch_invariance(model, parity_set, max(SCORE_BATCH, CHECK_BATCH), what)
        del model
        os.replace(final, out)
    return ExportReport(
        path=out, quantization=quantization, n_quantized_nodes=sum(ops.values()), quantized_ops=ops,
        max_rel_err=parity.max_rel_err, mean_rel_err=parity.mean_rel_err,
        decision_agreement=parity.decision_agreement, n_parity_samples=parity.n,
        n_over_threshold=parity.n_over_threshold, export_seconds=time.perf_counter() - started,
        size_bytes=out.stat().st_size, invariance=invariance, detail=done.detail)


def export_family(scorer: nn.Module, card: ModelCard, out: str | os.PathLike[str], spec: "ExportSpec", *,  # noqa: F821
                  calibration: np.ndarray, min_agreement: float = MIN_AGREEMENT) -> ExportReport:
    """Export with the family's choice of quantization, or its fallback when that choice fails a check.

    What ``--quantize auto`` does: the checks are parity (decisions kept)
    and batch invariance; the report's ``fallback_from`` says why the first
    choice was not kept.
    """
    try:
        report = export_model(scorer, card, out, quantization=spec.quantization, calibration=calibration,
                              script=spec.script, min_agreement=min_agreement)
        report.why = spec.why
        return report
    except (ParityFailed, BatchDependentScores) as exc:
        if spec.fallback is None:
            raise
        log.warning("%s; exporting %s instead", exc, spec.fallback.value)
        report = export_model(scorer, card, out, quantization=spec.fallback, calibration=calibration,
                              script=spec.script, min_agreement=min_agreement)
        report.fallback_from = f"{spec.quantization.value} refused ({str(exc).split(': ', 1)[-1][:160]})"
        return report


def _check_calibration(calibration: np.ndarray | None, card: ModelCard) -> np.ndarray:
    if calibration is None or len(calibration) == 0:
        raise BadInput("export needs calibration samples for quantization and the parity check: "
                       "use a checkpoint that stores them or pass --calibration-data")
    calib = np.ascontiguousarray(calibration, dtype=np.float32)
    if list(calib.shape[1:]) != list(card.sample_shape):
        raise BadInput(f"calibration samples have shape {list(calib.shape[1:])}, the model expects "
                       f"{card.sample_shape}")
    if not np.isfinite(calib).all():
        raise BadInput("calibration samples contain NaN or inf")
    return calib


def export_form(module: nn.Module) -> nn.Module:
    """``module`` with every submodule that offers ``for_export()`` replaced by its export form.

    A family can keep the module it trains in the plain shape that reads
    like its paper and still ship a faster graph: ``for_export()`` returns a
    module computing the same function (up to float32 rounding) in fewer
    graph operations. The parity check compares the file with ``module``
    itself, so a wrong export form is refused, not shipped. ``module`` is
    left unchanged (the swap happens in a copy).
    """
    if _has_export_form(module):
        return module.for_export().train(module.training)
    if not any(_has_export_form(child) for child in module.modules()):
        return module
    form = copy.deepcopy(module)
    _swap_export_forms(form)
    return form.train(module.training)


def _has_export_form(module: nn.Module) -> bool:
    return callable(getattr(module, "for_export", None))


def _swap_export_forms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if _has_export_form(child):
            setattr(module, name, child.for_export())
        else:
            _swap_export_forms(child)


def _export_fp32(scorer: nn.Module, example: torch.Tensor, path: Path, script: bool) -> None:
    form = export_form(scorer)
    module = torch.jit.script(form) if script else form
    dynamic = {INPUT_NAME: {0: "batch"}, SCORE_OUTPUT: {0: "batch"}, FEATURE_ERROR_OUTPUT: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice, and its LSTM batch-size caution, which does not
        # apply: initial states are zeros built from the input's batch size inside the graph
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks inside nn.LSTM
        try:
            torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=[SCORE_OUTPUT, FEATURE_ERROR_OUTPUT], dynamic_axes=dynamic,
                              opset_version=OPSET, dynamo=False)
        except Exception as exc:  # the exporter raises many types; say which step failed
            raise BadModelFile(f"torch.onnx.export failed for this scorer (script={script}): "
                               f"{str(exc).splitlines()[0][:400]}") from exc


def _write_metadata(src: Path, dst: Path, card: ModelCard) -> None:
    import onnx

    model = onnx.load(str(src))
    card.write_into(model)
    model.producer_name = model.producer_name or "edgewatch"
    onnx.save(model, str(dst))
