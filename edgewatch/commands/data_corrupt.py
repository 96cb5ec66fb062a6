"""``edgewatch data corrupt``: corrupted copies of an image set, with labels (seeded)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np


@click.command("corrupt")
@click.option("--images", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Images: .npy [n, 28, 28] or an idx file (.gz or not), pixel values 0-255.")
@click.option("--corruption", default="gaussian_noise", show_default=True,
              help="Comma-separated kinds. Adding or moving detail: gaussian_noise, stripes, occlusion, "
                   "rotation, brightness; removing detail or contrast: blur, defocus, pixelate, "
                   "low_contrast, jpeg.")
@click.option("--severity", type=click.IntRange(1, 5), default=3, show_default=True, help="1 (subtle) to 5.")
@click.option("--fraction", default=0.5, show_default=True,
              help="Share of images corrupted (kinds dealt in turn); 1.0 corrupts all.")
@click.option("--limit", default=0, show_default=True, help="Use only the first LIMIT images (0 = all).")
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .npy (uint8). Beside it, for -o mixed.npy: mixed.labels.txt (0/1 per image) and "
                   "mixed.kinds.txt (the corruption of each image), what 'edgewatch score --truth' reads.")
def command(images: Path, corruption: str, severity: int, fraction: float, limit: int, seed: int,
            out: Path) -> None:
    """Corrupt a share of the images, writing the mix and which images were corrupted.

    The labels file has one 0/1 per image in order (1 = corrupted); the
    kinds file names the corruption of each image ("clean" otherwise), so
    'edgewatch score --truth' can report AUROC per corruption type.
    """
    from edgewatch.data.corrupt import corrupt_mix, parse_corruptions
    from edgewatch.data.images import load_images

    kinds = parse_corruptions(corruption)
    x = load_images(images)
    if limit:
        x = x[:limit]
    mixed, labels, kind_of = corrupt_mix(x, kinds, severity, fraction, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.round(mixed).astype(np.uint8))
    labels_path, kinds_path = truth_paths(out)
    labels_path.write_text("".join(f"{v}\n" for v in labels))
    names = [k.value for k in kinds]
    kinds_path.write_text("".join(("clean" if k < 0 else names[k]) + "\n" for k in kind_of))
    click.echo(f"{len(mixed)} images written to {out}: {int(labels.sum())} corrupted at severity {severity} "
               f"({', '.join(f'{n} {int((kind_of == i).sum())}' for i, n in enumerate(names))}), "
               f"{int((labels == 0).sum())} clean")
    click.echo(f"truth: {labels_path} (0/1 per image), {kinds_path} (kind per image)")


def truth_paths(out: Path) -> tuple[Path, Path]:
    """Where the labels and kinds files of a corrupted set live."""
    return out.with_suffix(".labels.txt"), out.with_suffix(".kinds.txt")
