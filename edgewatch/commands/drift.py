"""``edgewatch drift``: is the current batch still like the reference one?

``edgewatch drift --reference REF --current CUR`` compares two tables (CSV)
or two image sets (idx .gz or .npy); ``edgewatch drift demo`` measures how
often the tests fire over repeated seeded splits of real data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgewatch.commands.groups import LazyGroup


class _DriftGroup(LazyGroup):
    """Runs the comparison when called with options only, ``demo`` when named."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "--reference REF --current CUR [OPTIONS] | COMMAND [OPTIONS]")


@click.group(cls=_DriftGroup, invoke_without_command=True, lazy={"demo": "edgewatch.commands.drift:demo",
                   "export-encoder": "edgewatch.commands.drift:export_encoder"},
             context_settings={"show_default": True}, epilog="""\b
Examples:
  edgewatch drift --reference last-month.csv --current today.csv
  edgewatch drift demo --seeds 100 --classifier-seeds 100""")
@click.option("--reference", "reference", type=click.Path(dir_okay=False), help="Reference batch: CSV table, "
              "or images as idx (.gz) or .npy [N,28,28] / [N,1,28,28] with pixels 0-255.")
@click.option("--current", "current", type=click.Path(dir_okay=False), help="Current batch, same kind.")
@click.option("--encoder", type=click.Path(dir_okay=False), default=None,
              help="ONNX model [B,...] -> [B,d] that reduces images before the tests (fed raw pixels 0-255). "
                   "Without it images are reduced by PCA fitted on both sets pooled.")
@click.option("--encoder-output", default=None, help="Which encoder output to use (default: its first).")
@click.option("--reduction", type=click.Choice(["pca", "random-projection", "none"]), default="pca",
              help="Default image reduction when no --encoder is given.")
@click.option("--dims", type=click.IntRange(1, 4096), default=32, help="Features kept by the image reduction.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.05,
              help="Family-wise level of the KS tests (Bonferroni over features).")
@click.option("--classifier", type=click.Choice(["logistic", "boosting", "none"]), default="logistic",
              help="Classifier of the two-sample test; 'none' skips it.")
@click.option("--folds", type=click.IntRange(2, 20), default=5, help="Cross-validation folds of the classifier.")
@click.option("--max-rows", type=click.IntRange(10), default=5000,
              help="Rows per side; larger batches are subsampled (seeded).")
@click.option("--seed", type=int, default=0, help="Seed of the subsampling, projection and folds.")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Write drift.json and drift.png (distributions that moved) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of text.")
@click.pass_context
def drift(ctx: click.Context, reference: str | None, current: str | None, encoder: str | None,
          encoder_output: str | None, reduction: str, dims: int, alpha: float, classifier: str, folds: int,
          max_rows: int, seed: int, report_dir: str | None, as_json: bool) -> None:
    """Compare a current batch with a reference batch: KS per feature (Bonferroni)
    and a classifier two-sample test (AUC, 0.5 = no drift).

    Exit code 0 whether or not drift is found; read the verdict in the report
    ("drift": true/false in the JSON).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not reference or not current:
        raise click.UsageError("give --reference and --current (or run 'edgewatch drift demo')")
    from edgewatch.drift.batch import DriftOptions, compare
    from edgewatch.drift.classifier import ClassifierConfig, ClassifierKind
    from edgewatch.drift.encoders import Reduction, ReductionConfig
    from edgewatch.drift.inputs import read_batch

    opts = DriftOptions(
        alpha=alpha, reduction=ReductionConfig(Reduction(reduction), dims, seed), encoder=encoder,
        encoder_output=encoder_output, max_rows=max_rows,
        classifier=None if classifier == "none" else ClassifierConfig(ClassifierKind(classifier), folds, seed))
    report = compare(read_batch(reference), read_batch(current), opts, report_dir)
    if as_json:
        click.echo(json.dumps(report.to_json_dict(), indent=2))
    else:
        click.echo(report.to_text())
        if report_dir:
            click.echo(f"json: {Path(report_dir) / 'drift.json'}")


@click.command(context_settings={"show_default": True})
@click.option("--data", "data", type=click.Choice(["table", "mnist", "fashion-mnist"]), default="table",
              help="table: scikit-learn's bundled breast-cancer table; images: from the shared datasets.")
@click.option("--seeds", type=click.IntRange(1), default=100, help="Seeded random splits per scenario (KS).")
@click.option("--classifier-seeds", type=click.IntRange(0), default=20,
              help="Of those, how many also run the classifier test (slower).")
@click.option("--n", "n", type=click.IntRange(10), default=1000,
              help="Images per side (tables are split in halves).")
@click.option("--fraction", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0,
              help="Share of the current images that are corrupted.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Datasets folder (default: $EDGEWATCH_DATASETS or ../shared/datasets).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.05)
def demo(data: str, seeds: int, classifier_seeds: int, n: int, fraction: float, data_dir: str | None,
         alpha: float) -> None:
    """Detection and false-positive rates over repeated seeded splits of real data.

    A random split has no drift, so its rate is the false-positive rate
    (expected at most alpha); the shifted and corrupted scenarios give the
    detection rates.
    """
    from tqdm import tqdm

    from edgewatch.drift import evaluation as ev

    if data == "table":
        values, features = ev.breast_cancer()
        scenarios = ev.table_scenarios(values, features)
        images = False
        what = f"breast-cancer table (scikit-learn, {values.shape[0]} rows x {values.shape[1]} columns), halves"
    else:
        from edgewatch.data.images import ImageDataset, datasets_root, load_dataset_images

        sets = load_dataset_images(Path(data_dir) if data_dir else datasets_root(), ImageDataset(data))
        values = sets.get("test", next(iter(sets.values()))).astype("float32")
        features, images = None, True
        scenarios = ev.image_scenarios(fraction=fraction)
        what = f"{data} test images, {n} vs {n}, PCA to 32 components"
    click.echo(f"{what}; alpha {alpha} (Bonferroni over features); {seeds} seeds, "
               f"classifier on the first {min(classifier_seeds, seeds)}")
    with tqdm(total=seeds * len(scenarios), desc="drift demo", unit="test", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        results = ev.evaluate(values, features, scenarios, seeds, classifier_seeds, n, images, alpha,
                              progress=bar.update)
    click.echo(ev.HEADER)
    for r in results:
        click.echo(r.row())


@click.command("export-encoder")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="encoder.onnx", show_default=True,
              help="ONNX file to write: raw pixels [B,1,28,28] -> bottleneck features [B,d].")
def export_encoder(checkpoint: str, out: str) -> None:
    """Export the encoder of a conv-ae checkpoint, for 'edgewatch drift --encoder'."""
    from edgewatch.drift.encoder_export import export_conv_encoder

    path = export_conv_encoder(checkpoint, out)
    click.echo(f"encoder written to {path}; use it with: edgewatch drift --encoder {path} ...")
