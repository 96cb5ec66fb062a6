"""A batch drift report: KS per feature, the classifier test, as text, JSON and a PNG."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.drift.classifier import ClassifierResult
from edgewatch.drift.ks import KSResult
from edgewatch.files import replacing, write_bytes


@dataclass
class DriftReport:
    reference: str
    current: str
    kind: str  # "table" or "images"
    n_reference: int
    n_current: int
    reduction: str  # how samples became features
    ks: KSResult
    classifier: ClassifierResult | None = None
    plot: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def drift(self) -> bool:
        """Drift by the KS rule (the issue's decision); the classifier's verdict is reported beside it."""
        return self.ks.drift

    def to_json_dict(self) -> dict[str, Any]:
        ks = asdict(self.ks)
        ks["drifted_features"] = self.ks.drifted_features
        ks["drift"] = self.ks.drift
        out: dict[str, Any] = {
            "drift": self.drift, "reference": self.reference, "current": self.current, "kind": self.kind,
            "n_reference": self.n_reference, "n_current": self.n_current, "reduction": self.reduction,
            "ks": ks, "classifier": None, "plot": self.plot, "meta": self.meta,
        }
        if self.classifier is not None:
            out["classifier"] = {**asdict(self.classifier), "drift": self.classifier.drift,
                                 "top_features": self.classifier.top_features()}
        return out

    def to_text(self, top: int = 10) -> str:
        ks = self.ks
        lines = [
            f"drift report: {self.current} ({self.n_current}) against {self.reference} ({self.n_reference})",
            f"features: {self.reduction}",
            "",
            f"KS per feature, Bonferroni: drift when p < {ks.alpha:g} / {len(ks.features)} = {ks.alpha_corrected:.3g}",
            f"  verdict: {'DRIFT in ' + str(len(ks.drifted_features)) + ' feature(s)' if ks.drift else 'no drift'}",
            f"  {'feature':<28} {'KS D':>7} {'p-value':>10}",
        ]
        for i in ks.ranked()[:top]:
            mark = " *" if ks.p_value[i] < ks.alpha_corrected else ""
            lines.append(f"  {ks.features[i][:28]:<28} {ks.statistic[i]:7.3f} {ks.p_value[i]:10.2e}{mark}")
        if len(ks.features) > top:
            lines.append(f"  ... {len(ks.features) - top} more features (all in the JSON report)")
        c = self.classifier
        if c is not None:
            lines += [
                "",
                f"classifier two-sample test ({c.kind}, mean over {c.folds} held-out folds): "
                f"AUC {c.auc:.3f}, {c.level:.0%} CI [{c.ci_low:.3f}, {c.ci_high:.3f}] (0.5 = no drift)",
                f"  verdict: {'DRIFT (CI above 0.5)' if c.drift else 'no drift (CI reaches 0.5)'}",
            ]
            if c.importance:
                ranked = sorted(c.importance.items(), key=lambda kv: -kv[1])[:min(top, 5)]
                lines.append("  features that drive it (AUC lost when shuffled): "
                             + ", ".join(f"{n} {v:+.3f}" for n, v in ranked))
        if self.plot:
            lines += ["", f"plot: {self.plot}"]
        return "\n".join(lines)


def write_json(report: DriftReport, path: str | os.PathLike[str]) -> Path:
    """Write the JSON report atomically (temporary file, then rename)."""
    return write_bytes(path, json.dumps(report.to_json_dict(), indent=2).encode())


def plot_moved(reference: np.ndarray, current: np.ndarray, ks: KSResult, path: str | os.PathLike[str],
               top: int = 6, title: str = "") -> Path:
    """Histograms and ECDFs of the features that moved most (largest KS D), reference vs current."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        from edgewatch.errors import MissingExtra

        raise MissingExtra("matplotlib", "plot") from exc
    idx = ks.ranked()[:top]
    fig, axes = plt.subplots(2, len(idx), figsize=(3.0 * len(idx), 5.2), squeeze=False)
    for col, i in enumerate(idx):
        r, c = reference[:, i], current[:, i]
        bins = np.histogram_bin_edges(np.concatenate([r, c]), bins=30)
        ax = axes[0, col]
        ax.hist(r, bins=bins, density=True, alpha=0.55, label="reference", color="tab:blue")
        ax.hist(c, bins=bins, density=True, alpha=0.55, label="current", color="tab:orange")
        moved = ks.p_value[i] < ks.alpha_corrected
        ax.set_title(f"{ks.features[i][:22]}\nD={ks.statistic[i]:.2f} p={ks.p_value[i]:.1e}",
                     fontsize=8, color="tab:red" if moved else "black")
        ax.tick_params(labelsize=7)
        ax = axes[1, col]
        for data, name, colour in ((r, "reference", "tab:blue"), (c, "current", "tab:orange")):
            xs = np.sort(data)
            ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post", label=name, color=colour)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].set_ylabel("ECDF", fontsize=8)
    axes[0, 0].set_ylabel("density", fontsize=8)
    fig.suptitle(title or "features that moved most (largest KS statistic)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
