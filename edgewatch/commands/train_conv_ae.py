"""``edgewatch train conv-ae``: the conv image autoencoder (S2) on MNIST or Fashion-MNIST idx files."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from edgewatch.data.images import ImageDataset


@click.command("conv-ae")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder holding the idx .gz files (or their dataset sub-folders). "
                   "Default: $EDGEWATCH_DATASETS or ../shared/datasets. Nothing is downloaded.")
@click.option("--dataset", type=click.Choice([d.value for d in ImageDataset]), default="fashion-mnist",
              show_default=True, help="Which image set to train on.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("conv-ae.ckpt"),
              show_default=True, help="Checkpoint to write; export it with 'edgewatch export onnx'.")
@click.option("--max-train", default=10_000, show_default=True,
              help="Cap on training images (seeded sample), to fit the time you have on a CPU.")
@click.option("--val-fraction", default=0.1, show_default=True, help="Share of the training pool held out.")
@click.option("--epochs", default=30, show_default=True, help="Upper bound; early stopping usually ends sooner.")
@click.option("--patience", default=3, show_default=True, help="Epochs without validation improvement.")
@click.option("--sigmas", default=3.0, show_default=True,
              help="Threshold = mean + SIGMAS*std of the clean validation losses.")
@click.option("--heldout-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the images never used for training (for 'edgewatch data corrupt') to this .npy.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start from this conv-ae checkpoint's autoencoder weights (same sizes); with --epochs 0 "
                   "only the score head and the threshold are fitted again, on the same split.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the image sample, the validation split, the weight initialisation and the batch shuffling.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(data_dir: Path | None, dataset: str, out: Path, max_train: int, val_fraction: float, epochs: int,
            patience: int, sigmas: float, heldout_out: Path | None, init_from: Path | None, seed: int,
            quiet: bool) -> None:
    """Train the conv autoencoder on clean images with early stopping on validation loss.

    Fashion-MNIST trains on its training images and keeps its 10,000 test
    images for scoring. MNIST here has only its test images: they are split
    (seeded) into a training pool and 2,000 held-out images.
    """
    from edgewatch.data.images import datasets_root, load_dataset_images
    from edgewatch.errors import BadInput
    from edgewatch.models.conv_ae import ConvAeConfig
    from edgewatch.train.checkpoint import load_checkpoint, save_checkpoint
    from edgewatch.train.conv_ae import default_train_config, split_images, train_conv_ae

    root = data_dir or datasets_root()
    ds = ImageDataset(dataset)
    found = load_dataset_images(root, ds)
    rng = np.random.default_rng(seed)
    if "train" in found:
        pool, heldout = found["train"], found.get("test")
    else:
        order = rng.permutation(len(found["test"]))
        n_hold = min(2000, len(order) // 5)
        pool, heldout = found["test"][order[n_hold:]], found["test"][order[:n_hold]]
        click.echo(f"{ds.value}: no training images in {root}; split its {len(order)} test images into "
                   f"{len(pool)} for training/validation and {n_hold} held out")
    if len(pool) > max_train:
        pool = pool[np.sort(rng.choice(len(pool), max_train, replace=False))]
    train, val = split_images(pool, val_fraction, seed)
    init_state, model_config, trained_on = None, None, {"dataset": ds.value, "seed": seed}
    if init_from is not None:
        init = load_checkpoint(init_from)
        if init.family != "conv-ae":
            raise BadInput(f"{init_from} is a {init.family} checkpoint, not conv-ae")
        init_state, model_config = init.state_dict, ConvAeConfig(**init.config)
        trained_on["initialized_from"] = init.card_fields.get("trained_on", {})
    run = train_conv_ae(train, val, model_config=model_config,
                        train_config=default_train_config(epochs=epochs, patience=patience, seed=seed,
                                                          progress=not quiet),
                        sigmas=sigmas, trained_on=trained_on, init_state=init_state)
    res = run.train_result
    if res.epochs_run:
        stop = "early stop" if res.stopped_early else "epoch limit"
        click.echo(f"trained {res.epochs_run} epochs ({stop}) in {res.seconds:.1f} s on {len(train)} images; "
                   f"best validation MSE {min(res.val_loss):.5f} at epoch {res.best_epoch + 1}")
    else:
        click.echo(f"no training epochs: autoencoder weights from {init_from}")
    head = run.card_fields["trained_on"]["score_head"]
    dims, shrink = head["density_dims"], head["ledoit_wolf_shrinkage"]
    click.echo(f"score head: Gaussians of {dims[0]} feature statistics and {dims[1]} image statistics on "
               f"{head['density_images']} training images (Ledoit-Wolf shrinkage {shrink[0]:.4f}, {shrink[1]:.4f}); "
               f"nearest-neighbour banks of {head['bank_images']} training codes ({head['bank_dims'][0]}-d) and "
               f"layouts ({head['bank_dims'][1]}-d); tests {', '.join(head['components'])} standardized on "
               f"{head['standardized_on']} clean validation images"
               + "".join(f" ({name}: fixed scale)" for name in head.get("fixed_scale", [])))
    stats = run.card_fields["score_stats"]
    click.echo(f"clean validation score: mean {stats['normal'].mean:.5f}, p99 {stats['normal'].p99:.5f}; "
               f"corrupted calibration images: mean {stats['corrupted'].mean:.5f}")
    click.echo(f"threshold {run.threshold:.5f} ({run.threshold_method})")
    if heldout_out is not None and heldout is not None:
        heldout_out.parent.mkdir(parents=True, exist_ok=True)
        np.save(heldout_out, heldout.astype(np.uint8))
        click.echo(f"{len(heldout)} held-out images written to {heldout_out}")
    save_checkpoint(out, run.card_fields["family"], run.model_config.to_dict(), run.scorer.state_dict(),
                    run.card_fields, calibration=run.calibration)
    click.echo(f"checkpoint written to {out}; export with: edgewatch export onnx {out}")
