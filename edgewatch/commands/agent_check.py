"""``edgewatch agent check``: is this model file one the agent will run, and what does it say?"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import ModelRuntime
from edgewatch.agent.sources.feature_map import columns_example
from edgewatch.contract import HOLD_STEPS
from edgewatch.wire.csv_states import describe


@click.command("check", epilog="""\b
Examples:
  edgewatch agent check pump.onnx
  edgewatch agent check /var/lib/edgewatch/models/equipment-lstm-ae.onnx --json
Then: edgewatch agent run --model pump.onnx --source replay:pump-today.csv
  (the plant's own tags: the live tags line, edgewatch agent tags --model pump.onnx --source URL,
  and docs/sources.md "First contact")""")
@click.argument("model_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model-sha256", default=None, help="Also refuse the file unless its sha256 matches.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole model card as JSON.")
def command(model_path: Path, model_sha256: str | None, as_json: bool) -> None:
    """Load MODEL_PATH as the agent would and print its card.

    Exits 0 when the agent would accept the file, 3 (with the reason) when it
    would refuse it: missing, unreadable, not an edgewatch model, a card that
    disagrees with its graph or cannot run (a time-series file is built into
    the agent's model runtime, as at start), or a sha256 that does not
    match. Needs no torch.
    """
    model = ScoringModel(model_path, expected_sha256=model_sha256)
    card = model.card
    runtime = ModelRuntime.build(model) if card.is_time_series else None
    if as_json:
        click.echo(json.dumps({"path": str(model_path), "sha256": model.sha256,
                               "card": dataclasses.asdict(card)}, indent=2, default=str))
        return
    lines = [
        f"{model_path}: ok, the agent accepts it",
        f"  sha256        {model.sha256}",
        f"  family        {card.family} ({card.task.value}), quantization {card.quantization.value}",
        f"  input         {card.sample_shape} of {', '.join(card.features)}"
        + (f"; window {card.window}, horizon {card.horizon}, stride {card.stride}" if card.window else ""),
        f"  live tags     {_live_tags(card.features)}",
        f"  score         {card.score}",
        f"  threshold     {card.threshold:.6g}: {card.threshold_method}",
        f"  episodes      start when {card.decision.k} of the last {card.decision.n} scored windows are over, "
        f"end after {card.decision.close_after} in a row are not",
        f"  post-process  {card.postprocess.kind}",
        f"  drift check   {_drift_line(card)}",
        f"  range check   {_range_line(card)}",
        *[f"  state         {name}: {describe(codes)} (text read as its code; another text: unknown_state)"
          for name, codes in (card.states or {}).items()],
        *([f"  logged every  {_steps(card.logged_every)} in the normal data: live, a value is held for "
           f"{HOLD_STEPS:g} of its step until its sensor has an interval of its own"] if card.logged_every else []),
        *[f"  totaliser     {name}: {_counted(how)}" for name, how in (card.totalisers or {}).items()],
        f"  trained on    {json.dumps(card.trained_on, default=str)[:200]}",
    ]
    for name, stats in card.score_stats.items():
        lines.append(f"  scores {name:<7}p50 {stats.p50:.4g}  p99 {stats.p99:.4g}  max {stats.max:.4g}  (n {stats.n})")
    if runtime is not None:
        lines.append(f"  scale         {runtime.scale.describe()}")
        lines.append(f"  streams       ~{runtime.stream_bytes() / 1024:.1f} KiB each; default --max-streams "
                     f"{runtime.default_max_streams()}")
        lines += [f"  warning       {w}" for w in runtime.warnings]
    click.echo("\n".join(lines))


def _live_tags(features: list[str]) -> str:
    """How a source whose tags are named otherwise than the features is told which is which (docs/sources.md)."""
    return (f"named as the features (or alike: case, spaces, '_-./', a unit in brackets), else in this order: "
            f"?columns={columns_example(features)} on an OPC UA object or an MQTT topic template, "
            "?registers=ADDR:TYPE[:SCALE],... on Modbus")


def _steps(steps: dict[str, float]) -> str:
    """``VIB_RMS 1 s, FLOW 5 s, BRG_TEMP 60 s``: each feature's step between its values (the card's logged_every)."""
    return ", ".join(f"{name} {seconds:g} s" for name, seconds in steps.items())


def _counted(how: dict) -> str:
    """How the agent turns a totaliser's raw values into the rate the model knows (the card's totalisers)."""
    per = "second" if how.get("per") == "s" else "row"
    fall = (f"a fall is a wrap at {how['wrap']:g}, taken modulo it" if how.get("wrap") is not None else
            "a fall is a reset, over which the rate before is held")
    return (f"scored by its rise per {per} since the stream's previous row ({fall}); a stream's first row has no "
            "rate yet: missing_feature")


def _drift_line(card) -> str:  # noqa: ANN001 - a ModelCard
    """What the running KS check compares a stream with (docs/drift.md)."""
    ref = card.drift_reference
    if ref is None:
        return "none"
    if ref.modes is None:
        return f"reference of {ref.n} rows"
    return (f"reference of {ref.n} rows in {len(ref.modes.n)} operating points ({', '.join(map(str, ref.modes.n))} "
            f"rows, told apart by {', '.join(ref.modes.features)}): each stream against the points it ran in")


def _range_line(card) -> str:  # noqa: ANN001 - a ModelCard
    """What each stream's first messages are compared with (agent/watch/range_check.py)."""
    if card.drift_reference is None:
        return "none (no drift reference)"
    if card.training_range is None:
        return "first 120 messages against every feature's training span (drift reference)"
    return (f"first 120 messages against the training range of {len(card.training_range)} feature(s) scored by "
            f"level: {', '.join(card.training_range)}")
