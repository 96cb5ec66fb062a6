"""``edgewatch demo``: the whole system on one machine, no equipment needed.

Starts the simulator with one fault of every type, runs the agent on its
websocket for about 30 seconds, prints alerts as they come, and ends with a
scorecard of faults injected versus episodes alerted.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import SinkContext, make_sink
from edgewatch.agent.sources import WebSocketSource, make_source
from edgewatch.errors import BadModelFile

DEFAULT_MODEL = Path("models/equipment-lstm-ae.onnx")


def default_model() -> Path:
    """The S0 model: ./models/ first (a checkout, or a model re-made there), else the package's copy.

    The package's copy is ``edgewatch/shipped_models/``: in a checkout a symlink to
    ``models/``, in an installed wheel the file itself.
    """
    here = Path.cwd() / DEFAULT_MODEL
    shipped = Path(__file__).resolve().parents[1] / "shipped_models" / DEFAULT_MODEL.name
    return here if here.is_file() or not shipped.is_file() else shipped


def protocol_urls(protocol: str, rate: float, broker: str | None) -> tuple[str, str]:
    """(the simulator's --serve URL, the agent's --source URL) of a demo over ``protocol``.

    OPC UA publishes at half the message period and Modbus polls at the
    message rate, so that each measurement reaches the agent once.
    """
    from edgewatch.data.simulator_outlets import source_url_for

    if protocol == "mqtt":
        serve = f"{(broker or 'mqtt://127.0.0.1:1883').rstrip('/')}/edgewatch-demo/equipment"
        return serve, source_url_for(serve)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = f"{protocol}://127.0.0.1:{port}"
    if protocol == "opcua":
        return serve, source_url_for(serve) + f"?interval={0.5 / rate:.6g}"
    return serve, source_url_for(serve) + f"&interval={1.0 / rate:.6g}&timeout=1"


FAULT_ORDER = ("spike", "level_shift", "noise_burst", "frozen", "overload", "slow_drift")


class _Console:
    """Prints each alert event as one readable line and keeps episode starts for the scorecard."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.t0 = time.time()

    def send(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        at = f"{time.time() - self.t0:6.1f}s"
        if kind == "start":
            self.starts.append(float(event["ts"]))
            feats = ", ".join(f"{f['feature']} {f['share']:.0%}" for f in event.get("top_features", []))
            click.secho(f"{at}  ALERT  {event['stream']}  score {event['score']:.4g} > {event['threshold']:.4g}"
                        f"  ({feats})", fg="red")
        elif kind == "end":
            ep = event["episode"]
            click.secho(f"{at}  ended  {event['stream']}  after {ep['duration_s']:.1f}s, "
                        f"peak {ep['peak_score']:.4g}", fg="green")
        elif kind == "drift":
            click.secho(f"{at}  drift  {event['stream']}  {event.get('features')}", fg="yellow")
        elif kind == "drift_end":
            click.secho(f"{at}  drift over  {event['stream']}", fg="green")

    def close(self) -> None:
        pass


def fault_schedule(warmup: int = 280, gap: int = 210) -> list:
    """One fault of each type, separated by nominal gaps, in message numbers.

    In messages, not seconds, so that every --rate replays the same stream
    (4 s of warm-up and 3 s gaps at the default 70 Hz).
    """
    from edgewatch.data.faults import FaultSpec

    specs, start = [], warmup
    for kind in FAULT_ORDER:
        spec = FaultSpec.at(kind, start)
        specs.append(spec)
        start = spec.end + gap
    return specs


@click.command("demo")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="S0 model file (4 features: cpu, memory, traffic, fan) [default: the shipped "
                   "models/equipment-lstm-ae.onnx].")
@click.option("--rate", type=click.FloatRange(min=1), default=70.0, show_default=True,
              help="Simulator messages per second (70 Hz fits every fault type into about 30 s).")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Override the model's stride.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed.")
@click.option("--sink", "sinks", multiple=True, help="Extra sinks for the alerts (jsonl:FILE, mqtt://...).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the truth file, the alerts (JSONL), the recorded run and the scorecard (JSON) here.")
@click.option("--ui", default=None, metavar="ADDR:PORT",
              help="Also serve the live page here (e.g. 127.0.0.1:8080) and watch the faults in a browser.")
@click.option("--slow", is_flag=True, help="Run at the simulator's real 20 Hz (about 2 minutes), for watching.")
@click.option("--protocol", type=click.Choice(["websocket", "mqtt", "opcua", "modbus"]), default="websocket",
              show_default=True,
              help="How the simulated equipment reaches the agent: its websocket, MQTT (JSON on a broker), "
                   "OPC UA (a data-change subscription) or Modbus TCP (polled registers).")
@click.option("--broker", default=None, metavar="mqtt://HOST:PORT",
              help="With --protocol mqtt: the broker to use [default: a mosquitto started for the demo].")
def demo(model_path: Path | None, rate: float, stride: int | None, seed: int, sinks: tuple[str, ...],
         out: Path | None, ui: str | None, slow: bool, protocol: str = "websocket", broker: str | None = None) -> None:
    """Simulate equipment with faults, watch it with the agent, and score the result.

    With --out DIR the run is recorded too: draw it with
    'edgewatch plot DIR/run.jsonl -o run.png --truth DIR/truth.jsonl'.
    """
    from edgewatch.agent.assemble import record_run, serve_page
    from edgewatch.data.simulator_server import FaultMode, ServerConfig, SimulatorServer
    from edgewatch.eval.fault_match import format_scorecard, match_episodes

    logging.getLogger("edgewatch").setLevel(logging.WARNING)
    model_path = model_path or default_model()
    if not model_path.is_file():
        raise BadModelFile(f"{model_path} not found. Run the demo from the repository root, or make the model "
                           "with the commands in models/README.md and pass --model.")
    model = ScoringModel(model_path)
    workdir = out or Path(tempfile.mkdtemp(prefix="edgewatch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    truth_path = workdir / "truth.jsonl"
    truth_path.unlink(missing_ok=True)
    if slow:
        rate = 20.0
    schedule = fault_schedule()
    count = schedule[-1].end + 210
    config = ServerConfig(rate=rate, with_time=True, count=count, seed=seed, faults=FaultMode.SCHEDULE,
                          schedule=tuple(schedule), truth_path=truth_path)
    console = _Console()
    options = AgentOptions(stride=stride, agent_id="demo")
    context = SinkContext(agent_id="demo", spool_dir=workdir / "spool")
    all_sinks = [console, make_sink(f"jsonl:{workdir / 'alerts.jsonl'}", context)]
    all_sinks += [make_sink(s, context) for s in sinks]
    agent = Agent(model, all_sinks, options)
    card = model.card
    seconds = count / rate
    click.echo(f"model {model_path} ({card.family}, {card.quantization.value}, window {card.window}, "
               f"threshold {agent.threshold:.4g}: {card.threshold_method})")
    click.echo(f"simulator: {count} messages at {rate:g} Hz ({seconds:.0f} s), faults: "
               + ", ".join(f"{s.type.value}@{s.start / rate:.0f}s" for s in schedule))
    page = serve_page(agent, ui) if ui else None
    if page is not None:
        click.echo(f"live page on {page.url}", err=True)
    recorder = record_run(agent, workdir / "run.jsonl") if out else None
    local_broker = None
    try:
        if protocol == "websocket":
            with SimulatorServer(config) as server:
                agent.add_source(WebSocketSource(server.url, idle_timeout=5.0))
                agent.run(duration=seconds + 1.5)
        else:
            if protocol == "mqtt" and broker is None:
                from edgewatch.data.mosquitto import LocalBroker

                local_broker = LocalBroker().start()
                broker = local_broker.url
            serve, source = protocol_urls(protocol, rate, broker)
            if protocol == "opcua":
                click.echo("starting the OPC UA server (asyncua builds its address space: some seconds)")
            source_obj = make_source(source, card.features, agent_id="demo")
            with SimulatorServer(config, serve=serve).start(timeout=300.0) as server:
                click.echo(f"simulator serves {server.url}; agent reads --source {source_obj.name}")
                agent.add_source(source_obj)
                agent.run(duration=seconds + 1.5)
    finally:
        if page is not None:
            page.stop()
        if recorder is not None:
            recorder.close()
        if local_broker is not None:
            local_broker.stop()
    truth = [json.loads(line) for line in truth_path.read_text().splitlines() if line.strip()]
    # a window must fill and k of n scored windows agree: allow that, plus 1 s of the default 70 Hz
    slack = (card.window + agent.tracker.n * agent.stride + 70) / rate
    card_ = match_episodes(truth, console.starts, slack=slack)
    s = agent.summary
    click.echo(f"\nagent: {s.messages} messages, {s.windows} windows scored (every {agent.stride}), "
               f"{sum(s.bad.values())} bad, {s.events.get('start', 0)} episodes\n")
    click.echo(format_scorecard(card_))
    (workdir / "scorecard.json").write_text(json.dumps({
        "faults": [vars(f) for f in card_.faults], "false_alarms": card_.false_alarms,
        "caught": card_.caught, "missed": [f.fault for f in card_.missed]}, indent=2))
    kept = "truth.jsonl, alerts.jsonl, run.jsonl, scorecard.json" if out else "truth.jsonl, alerts.jsonl, scorecard.json"
    click.echo(f"\nfiles: {workdir}/ ({kept})")
