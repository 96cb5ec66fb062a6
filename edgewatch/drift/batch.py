"""One batch comparison: reference versus current, from arrays to a :class:`DriftReport`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.drift.classifier import ClassifierConfig, classifier_test
from edgewatch.drift.encoders import OnnxEncoder, Reduced, ReductionConfig, reduce_pair
from edgewatch.drift.inputs import Batch, InputKind, align
from edgewatch.drift.ks import ks_test
from edgewatch.drift.report import DriftReport, plot_moved, write_json


@dataclass
class DriftOptions:
    alpha: float = 0.05
    reduction: ReductionConfig = field(default_factory=ReductionConfig)
    encoder: str | None = None  # an ONNX encoder for images (overrides the reduction)
    encoder_output: str | None = None
    classifier: ClassifierConfig | None = field(default_factory=ClassifierConfig)  # None: skip it
    max_rows: int = 5000  # per side; larger batches are subsampled (seeded) to keep it quick


def features_of(reference: Batch, current: Batch, options: DriftOptions) -> Reduced:
    """The features to test: table columns as they are, images reduced (encoder or PCA)."""
    if reference.kind is InputKind.TABLE:
        return Reduced(reference.values, current.values, reference.features,
                       f"{len(reference.features)} numeric columns as they are")
    if options.encoder:
        return OnnxEncoder(options.encoder, options.encoder_output).reduce_pair(reference.values, current.values)
    return reduce_pair(reference.values, current.values, options.reduction)


def _subsample(batch: Batch, limit: int, seed: int) -> tuple[Batch, bool]:
    if len(batch.values) <= limit:
        return batch, False
    idx = np.sort(np.random.default_rng(seed).choice(len(batch.values), limit, replace=False))
    return Batch(batch.kind, batch.values[idx], batch.features, batch.source), True


def compare(reference: Batch, current: Batch, options: DriftOptions | None = None,
            report_dir: str | os.PathLike[str] | None = None) -> DriftReport:
    """KS and classifier tests of ``current`` against ``reference``; writes JSON and PNG into ``report_dir``."""
    opts = options or DriftOptions()
    reference, current = align(reference, current)
    seed = opts.reduction.seed
    reference, cut_r = _subsample(reference, opts.max_rows, seed)
    current, cut_c = _subsample(current, opts.max_rows, seed + 1)
    feats = features_of(reference, current, opts)
    ks = ks_test(feats.reference, feats.current, feats.features, opts.alpha)
    clf = None
    if opts.classifier is not None:
        clf = classifier_test(feats.reference, feats.current, feats.features, opts.classifier)
    meta = {"subsampled_to": opts.max_rows} if (cut_r or cut_c) else {}
    report = DriftReport(reference=reference.source, current=current.source, kind=reference.kind.value,
                         n_reference=len(feats.reference), n_current=len(feats.current),
                         reduction=feats.description, ks=ks, classifier=clf, meta=meta)
    if report_dir is not None:
        out = Path(report_dir)
        report.plot = str(plot_moved(feats.reference, feats.current, ks, out / "drift.png",
                                     title=f"{Path(current.source).name} vs {Path(reference.source).name}"))
        write_json(report, out / "drift.json")
    return report
