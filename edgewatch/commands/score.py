"""``edgewatch score``: score a batch of images (or samples) with a model file, no torch needed."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from edgewatch.errors import BadInput
from edgewatch.accuracy import auroc


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_truth(path: Path) -> np.ndarray:
    """0/1 per sample from a text file (one per line) or a .npy array."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.uint8).ravel()
    try:
        return np.array([int(v) for v in read_lines(path)], dtype=np.uint8)
    except ValueError as exc:
        raise BadInput(f"{path}: expected one 0/1 per line: {exc}") from exc


def save_histogram(scores: np.ndarray, truth: np.ndarray | None, threshold: float, path: Path) -> None:
    """PNG histogram of the scores, clean against corrupted when the truth is known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    bins = np.linspace(float(scores.min()), float(np.quantile(scores, 0.995)), 60)
    if truth is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="all images")
    else:
        ax.hist(scores[truth == 0], bins=bins, color="tab:green", alpha=0.6, label=f"clean ({int((truth == 0).sum())})")
        ax.hist(scores[truth == 1], bins=bins, color="tab:red", alpha=0.6,
                label=f"corrupted ({int(truth.sum())})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("per-image score")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


@click.command("score")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="An edgewatch .onnx model file (an image model such as conv-ae.onnx).")
@click.option("--images", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Images: .npy [n, 28, 28] or an idx file (.gz or not), pixel values 0-255.")
@click.option("--labels-out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write one 0/1 per image here, in input order (1 = over the threshold).")
@click.option("--threshold", type=float, default=None, help="Override the model file's threshold.")
@click.option("--hist-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save a PNG histogram of the scores (clean vs corrupted when --truth is given).")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="0/1 per image (from 'edgewatch data corrupt'); prints AUROC and label accuracy.")
@click.option("--kinds", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Corruption kind per image; default: the .kinds.txt beside --truth. Gives AUROC per kind.")
@click.option("--scores-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the score of each image, one per line.")
@click.option("--batch-size", default=256, show_default=True)
def score(model_path: Path, images: Path, labels_out: Path, threshold: float | None, hist_out: Path | None,
          truth: Path | None, kinds: Path | None, scores_out: Path | None, batch_size: int) -> None:
    """Score every image with ONNX Runtime and write a 0/1 label per image.

    Uses the agent's model loader (ONNX Runtime and NumPy only). The
    threshold is the model file's unless --threshold is given.
    """
    from edgewatch.agent.model import ScoringModel
    from edgewatch.data.images import load_images

    model = ScoringModel(model_path)
    x = load_images(images)
    shape = model.sample_shape
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise BadInput(f"{images} holds samples of shape {list(x.shape[1:])}; {model_path} expects {list(shape)}")
    x = x.reshape((len(x), *shape))
    cut = model.card.threshold if threshold is None else threshold
    scores = np.concatenate([model.score_many(x[i:i + batch_size]).scores for i in range(0, len(x), batch_size)])
    flags = (scores > cut).astype(np.uint8)
    labels_out.parent.mkdir(parents=True, exist_ok=True)
    labels_out.write_text("".join(f"{v}\n" for v in flags))
    if scores_out is not None:
        scores_out.write_text("".join(f"{v:.6g}\n" for v in scores))
    q = np.quantile(scores, [0.5, 0.9, 0.99])
    click.echo(f"{len(scores)} images scored with {model_path.name} ({model.card.family}, "
               f"{model.card.quantization.value})")
    click.echo(f"score: mean {scores.mean():.5f}, std {scores.std():.5f}, min {scores.min():.5f}, "
               f"p50 {q[0]:.5f}, p90 {q[1]:.5f}, p99 {q[2]:.5f}, max {scores.max():.5f}")
    how = model.card.threshold_method if threshold is None else "--threshold"
    click.echo(f"threshold {cut:.5f} ({how}): {int(flags.sum())} images labelled 1 -> {labels_out}")
    y = None
    if truth is not None:
        y = read_truth(truth)
        if len(y) != len(scores):
            raise BadInput(f"{truth} has {len(y)} labels for {len(scores)} images")
        acc = float((flags == y).mean())
        tp, fp = int(((flags == 1) & (y == 1)).sum()), int(((flags == 1) & (y == 0)).sum())
        click.echo(f"labels file accuracy {acc:.4f} ({tp} of {int(y.sum())} corrupted flagged, "
                   f"{fp} of {int((y == 0).sum())} clean flagged)")
        if 0 < y.sum() < len(y):
            click.echo(f"AUROC all corruptions {auroc(scores, y):.4f}")
        kinds_path = kinds or truth.with_name(truth.name.replace(".labels.txt", ".kinds.txt"))
        if kinds_path.is_file() and kinds_path != truth:
            names = np.array(read_lines(kinds_path))
            if len(names) != len(scores):
                raise BadInput(f"{kinds_path} has {len(names)} lines for {len(scores)} images")
            clean = names == "clean"
            for kind in sorted(set(names) - {"clean"}):
                sel = clean | (names == kind)
                if clean.any():
                    recall = float(flags[names == kind].mean())
                    click.echo(f"  {kind:15} AUROC {auroc(scores[sel], ~clean[sel]):.4f}  "
                               f"flagged {recall:.1%} of {int((names == kind).sum())}")
    if hist_out is not None:
        save_histogram(scores, y, cut, hist_out)
        click.echo(f"histogram written to {hist_out}")
