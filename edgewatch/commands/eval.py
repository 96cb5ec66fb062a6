"""``edgewatch eval``: score detectors on benchmarks (NAB) and build the NAB detector."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgewatch.data.nab import default_nab_dir
from edgewatch.eval.perturb import NAMES as PERTURBATIONS

if TYPE_CHECKING:
    from edgewatch.eval.loco import Grouping
    from edgewatch.eval.runner import Detector

DEFAULT_DETECTOR = "novelty-levels"


@click.group("eval", help="Evaluate detectors: NAB score (three profiles), AUC-PR, VUS-PR, F1 beside "
                          "point-adjusted F1.", epilog="""\b
Examples:
  edgewatch eval csv --model pump.onnx --data pump-labelled.csv
  edgewatch eval make-detector -o models/nab-best.onnx
  edgewatch eval nab --data ../shared/datasets/nab --detector model:models/nab-best.onnx""")
def eval_group() -> None:
    pass


def _data_option(f):  # noqa: ANN001, ANN202
    return click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path),
                        default=lambda: str(default_nab_dir()), show_default="../shared/datasets/nab",
                        help="The NAB folder (data/, labels/, config/).")(f)


def _report(result, out: Path | None) -> None:  # noqa: ANN001
    from edgewatch.eval.runner import format_table

    click.echo(format_table(result))
    if out:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(result.to_json() + "\n", encoding="utf-8")
        tmp.replace(out)
        click.echo(f"results written to {out}")


@eval_group.command("nab")
@_data_option
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True,
              help="null, random, windowed-gaussian, novelty, levels, novelty-levels (the default: one file "
                   "carrying both, alert when either alerts, lengths in each stream's own time and counts "
                   "stabilised, Student's predictive tail, a level's margin beyond either end of the range, a "
                   "longer rung keeping the hold of the one it replaces, an alert one event for both parts, a "
                   "rung's spread widened for its overlapping distances; what 'eval make-detector' writes), "
                   "levels-in-spread (the same with the levels as wide in each stream's own spread, whatever rows "
                   "its range took; a candidate, not the default), levels-margin (the same with a value new only a "
                   "whole level from every value shown; a candidate), thirteenth-round (the default with a rung's "
                   "distances read as independent), tenth-round (that with each part alone after an alert), "
                   "ninth-round (that with each rung's hold afresh), eighth-round (that with the levels counted "
                   "from the range's minimum), seventh-round (that with the Gaussian tail), fifth-round (the same "
                   "with every length in rows, no counts), fourth-round (one 384-row span), novelty-levels-pair (the fourth round as two files), resonance "
                   "(ARTime-like), or model:PATH.onnx (any edgewatch model file of one feature, run as the agent "
                   "runs it).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON.")
@click.option("--scores-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also keep every file's scores (.npz) to re-score later with 'eval scores'.")
@click.option("--categories", multiple=True, help="Only these NAB categories (repeatable).")
@click.option("--seed", default=42, show_default=True,
              help="Seed of the random detector (42 reproduces NAB's published random scores).")
@click.option("--stride", default=1, show_default=True, help="Score every n-th row (model files only).")
@click.option("--loco", is_flag=True,
              help="Also cross-validate the default detector's settings: for each category, choose them (and the "
                   "threshold) on the other three from its small grid and score it; prints the leave-one-"
                   "category-out score, the mean and the worst held-out category beside the in-sample one.")
@click.option("--lofo", is_flag=True,
              help="The same, leaving one FILE out at a time (25 folds): the worst held-out file beside the mean.")
@click.option("--perturb", "perturbations", multiple=True, type=click.Choice([*PERTURBATIONS, "all"]),
              help="Also score the detector on perturbed copies of the folder (labels mapped by timestamp): "
                   f"{', '.join(PERTURBATIONS)}, or 'all'; prints one row per copy and the mean and worst. "
                   "Repeatable.")
@click.option("--quiet-start", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Score the detector as 'agent run --quiet-start SECONDS' alerts with it: silent for each file's "
                   "first SECONDS of its own time (86400: its first day). Not with --loco/--lofo.")
def nab(data: Path, detector: str, out: Path | None, scores_out: Path | None, categories: tuple[str, ...],
        seed: int, stride: int, loco: bool, lofo: bool, perturbations: tuple[str, ...], quiet_start: float) -> None:
    """Run a detector online over every NAB file and print its NAB scores.

    Each row is scored from the rows before it only; the threshold is then
    optimised per profile over the whole corpus, as NAB does.
    """
    from edgewatch.eval.detectors.registry import resolve
    from edgewatch.eval.loco import Grouping
    from edgewatch.eval.runner import QuietStart, run_nab, save_scores

    if quiet_start and (loco or lofo):
        raise click.UsageError("--quiet-start scores one detector; --loco/--lofo choose the settings of the "
                               "default without it (a quiet first day is inside NAB's probation on the 25 files)")
    if loco:
        _cross_validate(data, detector, list(categories), stride, Grouping.CATEGORY)
    if lofo:
        _cross_validate(data, detector, list(categories), stride, Grouping.FILE)
    det = resolve(detector, seed=seed, stride=stride)
    if quiet_start:
        det = QuietStart(det, quiet_start)
    if perturbations:
        _robustness(data, det, list(categories), perturbations)
    result, scores = run_nab(data, det, list(categories) or None)
    _report(result, out)
    if scores_out:
        save_scores(scores_out, scores)
        click.echo(f"scores written to {scores_out}")


def _cross_validate(data: Path, detector: str, categories: list[str], stride: int, grouping: Grouping) -> None:
    from edgewatch.data.nab import load_corpus, read_profiles
    from edgewatch.errors import BadInput
    from edgewatch.eval import loco

    flag = "--loco" if grouping is loco.Grouping.CATEGORY else "--lofo"
    if detector != DEFAULT_DETECTOR or stride != 1:
        raise BadInput(f"{flag} cross-validates the settings of the default detector ({DEFAULT_DETECTOR}, stride 1); "
                       "drop --detector/--stride")
    files = load_corpus(data, categories or None)
    if len({grouping.of(f) for f in files}) < 2:
        raise BadInput(f"{flag} needs at least two {'categories' if flag == '--loco' else 'files'}")
    grid = loco.default_grid()
    result = loco.choose(files, loco.grid_scores(files, grid), read_profiles(data), grouping)
    click.echo(loco.format_loco(result, default=loco.default_point().name, grouping=grouping))
    click.echo("")


def _robustness(data: Path, det: Detector, categories: list[str], perturbations: tuple[str, ...]) -> None:
    from edgewatch.data.nab import load_corpus, read_profiles
    from edgewatch.eval.robustness import format_robustness, robustness

    names = PERTURBATIONS if "all" in perturbations else list(dict.fromkeys(perturbations))
    rows = robustness(load_corpus(data, categories or None), read_profiles(data), det, names)
    click.echo(format_robustness(rows, det.name))
    click.echo("")


@eval_group.command("scores")
@_data_option
@click.argument("scores", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON.")
def scores_cmd(data: Path, scores: Path, out: Path | None) -> None:
    """Score saved per-file scores (.npz from 'eval nab --scores-out', keys '<category>/<file>.csv')."""
    from edgewatch.data.nab import load_corpus, read_profiles
    from edgewatch.errors import BadInput
    from edgewatch.eval.runner import load_scores, score_corpus

    saved = load_scores(scores)
    files = [f for f in load_corpus(data) if f.key in saved]
    if not files:
        raise BadInput(f"{scores} holds no scores for the files of {data} (keys like 'realTraffic/speed_7578.csv')")
    result = score_corpus(files, [saved[f.key] for f in files], read_profiles(data), scores.name, 0.0)
    _report(result, out)


@eval_group.command("make-detector")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("models/nab-best.onnx"), show_default=True,
              help="The model file: a pass-through graph; novelty (stepped span) and levels post-processes, "
                   "combined by their max, adapted per stream from its first 48 rows.")
def make_detector(out: Path) -> None:
    """Write the default univariate (NAB) detector as ONE model file (no training needed).

    The graph passes each value through; the card's post-process is the
    maximum of 'novelty' (the likelihood of the distance between the
    latest stretch and the nearest earlier one, on a span that grows with
    the stream's history from 48 to 1536 rows, read through Student's
    predictive tail so a short history alerts less) and 'levels' (a value on a
    level never seen in the stream), so the file alerts when either
    alerts. Each stream's first 48 rows set its lengths from its own
    sampling interval (the messages' timestamps, else their arrival) and
    tell whether it holds counts. Run it with 'edgewatch agent run --model
    FILE --stride 1', or check it with 'edgewatch eval nab --detector
    model:FILE'.
    """
    from edgewatch.eval.detectors import novelty_levels

    path = novelty_levels.write_model(out)
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


@eval_group.command("skab")
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), default=None,
              show_default="../shared/datasets/skab", help="The SKAB folder (data/<group>/<n>.csv).")
@click.option("--family", "families", multiple=True, default=("pca",), show_default=True,
              help="A family recipe to run (repeatable): fit (edgewatch fit on the 400 rows, no options), pca, pca-all, "
                   "conv1d-ae, conv1d-ae-fast, lstm-ae (docs/skab.md).")
@click.option("--groups", multiple=True, help="Only these SKAB groups (repeatable), e.g. valve1.")
@click.option("--predictions-out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write DIR/<group>/<n>.csv (header 'datetime;anomaly', one 0/1 row per test row); with "
                   "several families, DIR/<family>/<group>/<n>.csv.")
@click.option("--models-out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep every file's model file as DIR/<family>/<group>/<n>.onnx (else a temporary folder).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON.")
@click.option("--seed", default=0, show_default=True, help="Seed of the torch families.")
@click.option("--plot", "plot_key", default=None, metavar="GROUP/N",
              help="Also draw this experiment (e.g. valve1/1) as the first family saw it, to --plot-out.")
@click.option("--plot-out", type=click.Path(dir_okay=False, path_type=Path), default=Path("skab.png"),
              show_default=True, help="The PNG for --plot (needs matplotlib).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def skab(data: Path | None, families: tuple[str, ...], groups: tuple[str, ...], predictions_out: Path | None,
         models_out: Path | None, out: Path | None, seed: int, plot_key: str | None, plot_out: Path,
         quiet: bool) -> None:
    """Run families over SKAB by its published protocol and print SKAB's figures.

    Per experiment file the first 400 rows train (scaler and model fitted on
    them only); the rest is scored by the exported model file through the
    agent's scoring path (window, post-process, threshold, k-of-n), a row
    counting as anomalous inside an episode. Prints F1, FAR and MAR
    point-wise over all test rows (SKAB's 'binary' metric) per group and in
    total, the changepoint NAB score (60 s window right of each changepoint),
    the flag-everything baseline and the published leaderboard.
    """
    import json

    from edgewatch.data.skab import default_skab_dir, load_skab
    from edgewatch.eval.skab_families import resolve
    from edgewatch.eval.skab_runner import format_table, run_family, write_predictions

    from edgewatch.errors import BadInput

    recipes = [resolve(name) for name in families]
    files = load_skab(data or default_skab_dir(), list(groups) or None)
    if plot_key and plot_key not in {f.key for f in files}:
        raise BadInput(f"--plot {plot_key}: no such experiment (keys look like valve1/1 or other/14)")
    results = []
    for recipe in recipes:
        res = run_family(files, recipe, seed=seed, progress=not quiet,
                         models_dir=models_out / recipe.name if models_out else None)
        results.append(res)
        if predictions_out:
            target = predictions_out / recipe.name if len(recipes) > 1 else predictions_out
            written = write_predictions(target, files, res)
            click.echo(f"{recipe.name}: {len(written)} prediction files written under {target}")
    rows = sum(len(r.truth) for r in results[0].runs)
    click.echo(format_table(results, len(files), rows))
    if plot_key:
        from edgewatch.plot.skab_plot import plot_experiment

        file = next(f for f in files if f.key == plot_key)
        run = next(r for r in results[0].runs if r.key == plot_key)
        click.echo(f"plot of {plot_key} written to {plot_experiment(file, run, results[0].family, plot_out)}")
    if out:
        doc = {r.family: {"groups": {g or "total": {"f1": r.binary(g).f1, "far": r.binary(g).far,
                                                    "mar": r.binary(g).mar, "faults": r.episodes(g).faults,
                                                    "caught": r.episodes(g).caught,
                                                    "opened_inside": r.episodes(g).opened_inside,
                                                    "false_episodes": r.episodes(g).false_episodes,
                                                    "false_per_hour": r.episodes(g).false_per_hour,
                                                    "episodes_per_fault": r.episodes(g).episodes_per_fault,
                                                    "median_delay_s": r.episodes(g).median_delay}
                                     for g in r.groups + [None]},
                          "nab": r.nab, "seconds": r.seconds} for r in results}
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(out)
        click.echo(f"results written to {out}")


@eval_group.command("csv")
@click.option("--model", "model", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file (from 'edgewatch fit', 'train' or 'export').")
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CSV file with the model's feature columns and a 0/1 label column.")
@click.option("--label-column", default="anomaly", show_default=True, help="The 0/1 column: 1 marks anomalous rows.")
@click.option("--time-column", default=None, metavar="NAME",
              help="The time column, when it is not found by its name or its dates (delays are then in seconds).")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
              help="Rows at the start that are run but not scored (those the model was fitted on).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON.")
def csv_cmd(model: Path, data: Path, label_column: str, time_column: str | None, skip: int, out: Path | None) -> None:
    """Score a model file against your own labels, as the agent would run it on the file.

    Prints point-wise F1, FAR and MAR, whether each labelled segment was
    caught and after what delay, and the false episodes per day of normal
    operation.
    """
    import json

    from edgewatch.contract import to_plain
    from edgewatch.eval.csv_runner import evaluate_csv

    result = evaluate_csv(model, data, label_column, time_column, skip)
    click.echo("\n".join(result.lines()))
    if out:
        b, e = result.binary, result.episodes
        doc = {"f1": b.f1, "far": b.far, "mar": b.mar, "faults": e.faults, "caught": e.caught,
               "false_episodes": e.false_episodes, "false_per_day": e.false_per_day if result.has_times else None,
               "episodes_per_fault": e.episodes_per_fault, "segments": to_plain(result.segments),
               "unknown_state": result.unknown_states}
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n", encoding="utf-8")
        tmp.replace(out)
        click.echo(f"figures written to {out}")
