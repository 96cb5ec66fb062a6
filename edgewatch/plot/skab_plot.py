"""A PNG of one SKAB experiment as a family saw it: sensors, score, threshold, truth, predictions.

The sensors are drawn standardised on the training rows (so eight units
share one axis), the training part shaded; below them the score of every
scored row on a log axis with the threshold, the true anomaly period and
the rows the agent flagged. matplotlib with the Agg backend (headless).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgewatch.data.skab import TRAIN_ROWS, SkabFile
from edgewatch.errors import MissingExtra
from edgewatch.eval.skab_runner import FileRun
from edgewatch.files import replacing


def plot_experiment(f: SkabFile, run: FileRun, family: str, out: str | Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtra("matplotlib", "plot") from exc
    t = np.arange(len(f.values))
    x = f.values.astype(np.float64)
    mu, sd = x[:TRAIN_ROWS].mean(0), x[:TRAIN_ROWS].std(0)
    z = (x - mu) / np.where(sd > 1e-12, sd, 1.0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for j, name in enumerate(f.features):
        ax1.plot(t, np.clip(z[:, j], -15, 15), lw=0.8, label=name)
    ax1.set_ylabel("sensor (std. units of the training rows, clipped at ±15)")
    ax1.legend(ncol=4, fontsize=7, loc="upper left")
    score = run.scores
    ok = np.isfinite(score)
    ax2.semilogy(t[ok], np.maximum(score[ok], 1e-6), color="#1f77b4", lw=0.9, label=f"{family} score")
    ax2.axhline(run.threshold, color="#d62728", lw=1, ls="--", label=f"threshold {run.threshold:.3g}")
    top = np.nanmax(score[ok]) if ok.any() else 1.0
    pred = np.r_[np.zeros(TRAIN_ROWS), run.predicted].astype(bool)
    for ax in (ax1, ax2):
        ax.axvspan(0, TRAIN_ROWS, color="#cccccc", alpha=0.4, lw=0)
        ax.fill_between(t, 0, 1, where=f.anomaly.astype(bool), transform=ax.get_xaxis_transform(),
                        color="#e69f00", alpha=0.25, lw=0)
    ax2.fill_between(t, 0, 0.08, where=pred, transform=ax2.get_xaxis_transform(), color="#d62728", alpha=0.8,
                     lw=0, label="flagged by the agent")
    ax2.plot([], [], color="#e69f00", alpha=0.4, lw=6, label="true anomaly")
    ax2.plot([], [], color="#cccccc", lw=6, label=f"training rows (first {TRAIN_ROWS})")
    ax2.set_ylim(top=top * 3)
    ax2.set_xlabel("row (one a second)")
    ax2.legend(fontsize=7, loc="upper left", ncol=3)
    ax1.set_title(f"SKAB {f.key}: {family}")
    fig.tight_layout()
    out = Path(out)
    with replacing(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out
