"""``edgewatch export onnx``: any family's checkpoint -> checked, self-describing ONNX file."""

from __future__ import annotations

import enum
from pathlib import Path

import click
import numpy as np


class QuantizeChoice(str, enum.Enum):
    AUTO = "auto"
    NONE = "none"
    DYNAMIC = "dynamic"
    STATIC = "static"
    UNROLLED = "unrolled"
    SENTINEL = "sentinel"


@click.command("onnx")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model file to write (only written when the parity check passes).")
@click.option("--quantize", "quantize", default=QuantizeChoice.AUTO.value, show_default=True,
              type=click.Choice([c.value for c in QuantizeChoice]),
              help="auto = the family's measured best, fp32 when it fails parity or isolation (lstm-ae: "
                   "sentinel); sentinel = ONNX Runtime's int8 LSTM with sentinel units fixing its ranges; "
                   "static = QDQ int8 calibrated on the calibration samples; unrolled = LSTMs as int8 MatMuls "
                   "with fixed scales. Every file must score a window the same alone and in any batch, so "
                   "dynamic int8 is refused where it quantizes anything.")
@click.option("--calibration-data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV (same columns as training) to cut calibration/parity windows from, instead of "
                   "the samples stored in the checkpoint (time-series families only).")
@click.option("--threshold", type=float, default=None, help="Override the calibrated threshold in the card.")
@click.option("--min-agreement", default=0.99, show_default=True, type=click.FloatRange(0, 1),
              help="Refuse the export when decisions agree with PyTorch on fewer calibration samples.")
def command(checkpoint: Path, output: Path, quantize: str, calibration_data: Path | None,
            threshold: float | None, min_agreement: float) -> None:
    """Export CHECKPOINT to a quantized ONNX file carrying its model card.

    The graph takes raw values [batch, window, features] and returns the
    score and the per-feature error. Parity with PyTorch (relative score
    error, decision agreement at the threshold) is measured on calibration
    samples and printed; below --min-agreement nothing is written.
    """
    from edgewatch.errors import require_torch

    require_torch()
    from edgewatch.contract import Quantization
    from edgewatch.errors import BadInput
    from edgewatch.export.onnx import export_family, export_model
    from edgewatch.models import family_module, scorer_from_checkpoint
    from edgewatch.train.checkpoint import card_from_fields, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    family = family_module(ckpt.family)
    choice = QuantizeChoice(quantize)
    quantization = {
        QuantizeChoice.AUTO: family.EXPORT.quantization,
        QuantizeChoice.NONE: Quantization.NONE,
        QuantizeChoice.DYNAMIC: Quantization.DYNAMIC_INT8,
        QuantizeChoice.STATIC: Quantization.STATIC_QDQ_INT8,
        QuantizeChoice.UNROLLED: Quantization.UNROLLED_INT8,
        QuantizeChoice.SENTINEL: Quantization.SENTINEL_INT8,
    }[choice]
    card = card_from_fields(ckpt.card_fields, quantization)
    if threshold is not None:
        card = card.with_overrides(threshold=threshold,
                                   threshold_method=f"set by hand at export (was {card.threshold:.4g}: "
                                                    f"{card.threshold_method})")
    calibration = ckpt.calibration
    if calibration_data is not None:
        if not card.is_time_series:
            raise BadInput("--calibration-data takes a CSV series; this family's checkpoint must carry its "
                           "own calibration samples")
        from edgewatch.train.csv_series import read_series_csv
        from edgewatch.train.windowing import sliding_windows

        series = read_series_csv(calibration_data)
        if series.features != card.features:
            raise BadInput(f"{calibration_data} has columns {series.features}, the model was trained on "
                           f"{card.features}")
        windows = sliding_windows(series.values, card.window, max(1, card.stride))
        calibration = np.ascontiguousarray(windows[:: max(1, len(windows) // 1024)][:1024])
    scorer = scorer_from_checkpoint(ckpt.family, ckpt.config, ckpt.state_dict, what=str(checkpoint))
    click.echo(f"exporting {ckpt.family} from {checkpoint} with {quantization.value} quantization ...")
    if choice is QuantizeChoice.AUTO:
        report = export_family(scorer, card, output, family.EXPORT, calibration=calibration,
                               min_agreement=min_agreement)
    else:
        report = export_model(scorer, card, output, quantization=quantization, calibration=calibration,
                              script=family.EXPORT.script, min_agreement=min_agreement)
    for line in report.lines():
        click.echo(line)
