"""``edgewatch agent run``: score live streams with a model file and send alerts."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from edgewatch.agent.engine import Agent, AgentOptions, RunSummary
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import make_sink
from edgewatch.agent.sources import make_source

log = logging.getLogger("edgewatch.agent")

EPILOG = """\b
Examples:
  edgewatch agent run --model models/equipment-lstm-ae.onnx --source ws://127.0.0.1:8765/ --stride 3
  edgewatch agent run --model m.onnx --source replay:data.csv?rate=100 --sink jsonl:alerts.jsonl
  edgewatch agent run --model m.onnx --source ws://10.0.0.5:9000/ --sink mqtt://broker:1883/plant1

\b
Sources: ws://HOST:PORT/PATH (reconnects forever), replay:FILE.csv[?rate=HZ&loop=1], stdin.
Sinks:   stdout, jsonl:FILE, mqtt://HOST:PORT/PREFIX (alerts on PREFIX/AGENT-ID/alerts, QoS 1,
         spooled to disk while the broker is away).
Exit codes: 0 stopped cleanly (end of input, --duration, SIGTERM/SIGINT), 1 failure,
2 usage error, 3 bad model file, 4 bad input file, 6 missing optional dependency.
"""


@click.command("run", epilog=EPILOG)
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="edgewatch ONNX model file.")
@click.option("--model-sha256", default=None, help="Refuse the model file unless its sha256 matches.")
@click.option("--source", "sources", multiple=True, required=True,
              help="Where measurements come from (repeatable; each source is a stream).")
@click.option("--sink", "sinks", multiple=True, default=("stdout",), show_default=True,
              help="Where alert events go (repeatable).")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Score every n-th point's window (default: the model file's, 3 for S0).")
@click.option("--threshold", type=float, default=None, help="Override the model file's calibrated threshold.")
@click.option("--k", "k", type=click.IntRange(min=1), default=None,
              help="Episode starts when k of the last n scored windows are over the threshold.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None, help="See --k.")
@click.option("--agent-id", default=None, help="Name of this agent in alerts and MQTT topics (default: hostname).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--max-messages", type=int, default=None, help="Stop after this many messages.")
@click.option("--idle-timeout", type=float, default=10.0, show_default=True,
              help="Seconds of websocket silence before a ping; twice that and it reconnects.")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("spool"),
              show_default=True, help="Where undelivered MQTT alerts wait on disk.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's counters (messages, bad by reason, windows, events) to this file.")
@click.option("--ui", "ui", default=None, metavar="ADDR:PORT",
              help="Serve the live page (signals, green/red score bars, alerts) here, e.g. 127.0.0.1:8080.")
@click.option("--record-run", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record every message, scored window and event to this JSONL file (for edgewatch plot).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr at the end.")
def command(model_path: Path, model_sha256: str | None, sources: tuple[str, ...], sinks: tuple[str, ...],
            stride: int | None, threshold: float | None, k: int | None, n: int | None, agent_id: str | None,
            duration: float | None, max_messages: int | None, idle_timeout: float, spool_dir: Path,
            summary_json: Path | None, quiet: bool,
            ui: str | None = None, record_run: Path | None = None) -> None:
    """Score live streams with a model file and send an alert per anomalous episode.

    Every --stride-th measurement of a stream, its last WINDOW measurements are
    scored; an episode opens when K of the last N scored windows exceed the
    threshold and closes when none of the last N do. Runs without torch.
    """
    model = ScoringModel(model_path, expected_sha256=model_sha256)
    options = AgentOptions(stride=stride, threshold=threshold, k=k, n=n)
    if agent_id:
        options.agent_id = agent_id
    built_sinks = [make_sink(s, agent_id=options.agent_id, spool_dir=spool_dir) for s in sinks]
    agent = Agent(model, built_sinks, options)
    for spec in sources:
        agent.add_source(make_source(spec, model.card.features, idle_timeout=idle_timeout))
    close_page_and_record = attach_page_and_record(agent, ui, record_run)  # --ui, --record-run
    card = model.card
    log.info("model %s (%s, window %d, stride %d, threshold %.6g)", model_path, card.family, card.window,
             agent.stride, agent.threshold)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    summary = agent.run(duration=duration, max_messages=max_messages)
    close_page_and_record()
    if summary_json:
        summary_json.write_text(json.dumps(summary_dict(summary), indent=2))
    if not quiet:
        print_summary(summary)


def attach_page_and_record(agent: Agent, ui: str | None, record_run: Path | None) -> Callable[[], None]:
    """Start the live page (--ui) and the run recorder (--record-run); returns what stops them."""
    closers: list[Callable[[], None]] = []
    if ui:
        from edgewatch.agent.ui.server import start_ui

        server = start_ui(agent, ui)
        click.echo(f"live page on {server.url}", err=True)
        closers.append(server.stop)
    if record_run:
        from edgewatch.agent.recorder import RunRecorder

        closers.append(RunRecorder.for_agent(agent, record_run).close)

    def close() -> None:
        for c in closers:
            c()
    return close


def summary_dict(summary: RunSummary) -> dict:
    return {"messages": summary.messages, "bad": summary.bad, "windows": summary.windows,
            "events": summary.events, "streams": summary.streams, "seconds": round(summary.seconds, 3)}


def print_summary(summary: RunSummary) -> None:
    bad = sum(summary.bad.values())
    rate = summary.messages / summary.seconds if summary.seconds else 0.0
    lines = [f"messages {summary.messages} ({rate:.0f}/s) from {summary.streams} stream(s), "
             f"bad {bad}, windows scored {summary.windows}, events {summary.events or {}}"]
    if bad:
        lines.append("bad input by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.bad.items())))
    click.echo("\n".join(lines), err=True)
    sys.stderr.flush()
