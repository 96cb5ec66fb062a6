"""``edgewatch simulate``: a simulated network equipment on a websocket, or its data as CSV."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import click

from edgewatch.data.faults import DEFAULT_LENGTH, FEATURES, FaultType, RandomFaults, read_schedule
from edgewatch.errors import BadInput

EPILOG = f"""
\b
Examples:
  edgewatch simulate                                  # ws://127.0.0.1:8765/ at 20 Hz, no faults
  edgewatch simulate --port 0 --faults random --truth truth.jsonl
  edgewatch simulate --fault spike@10 --fault frozen@30:10:cpu --fault overload@60 --truth truth.jsonl
  edgewatch simulate --rate 20000 --duration 10       # load generator for benchmarks
  edgewatch simulate --streams 8 --with-time          # 8 equipments on one socket
  edgewatch simulate --record nominal.csv --count 200000   # training data, no socket

\b
Messages: a JSON array of the 4 metrics {list(FEATURES)}, e.g. [0.41,0.52,0.33,0.4];
with --with-time: {{"ts": EPOCH, "seq": N, "values": [...]}}; with --streams K > 1 every
message is an object with "stream": "eq-<i>" (and ts/seq with --with-time).
The first line on stdout is "listening on ws://HOST:PORT/". With --serve mqtt://|opcua://|modbus://
the same equipment (faults, truth) is published over that protocol instead, and the first line
names the agent's --source that reads it (see docs/sources.md).

\b
Faults (--fault TYPE@START[:DURATION][:FEATURES], START/DURATION in seconds from the
stream start, DURATION empty = the type's default; repeat the option or use --schedule FILE
with one spec per line):
  spike        a few messages jump by +-0.55            (default {DEFAULT_LENGTH[FaultType.SPIKE]} messages, cpu)
  level_shift  the metric moves by +-0.3                (default {DEFAULT_LENGTH[FaultType.LEVEL_SHIFT]} messages, traffic)
  noise_burst  gaussian noise, sigma 0.12               (default {DEFAULT_LENGTH[FaultType.NOISE_BURST]} messages, memory)
  frozen       the sensor repeats its last value        (default {DEFAULT_LENGTH[FaultType.FROZEN]} messages, cpu)
  overload     every metric saturates near 1            (default {DEFAULT_LENGTH[FaultType.OVERLOAD]} messages, all)
  slow_drift   a ramp up to +-0.4, hard to see early    (default {DEFAULT_LENGTH[FaultType.SLOW_DRIFT]} messages, memory)
Faults may not overlap. --faults random draws types, features and lengths from --seed, with
a nominal gap of about --fault-every seconds (at least 100 messages) before each fault.

\b
Ground truth (--truth FILE): one JSON line per fault, written and flushed when it ends:
  {{"fault","features","start_index","end_index","start_ts","end_ts","stream"}}
indices are message sequence numbers (end exclusive), *_ts the epoch time of those
messages; a fault cut short by the end of the stream has "truncated": true.
"""


@click.command(
    "simulate",
    epilog=EPILOG,
    context_settings={"max_content_width": 100},
    short_help="Serve a simulated equipment on a websocket (with faults and their truth), or write it to CSV.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port on 127.0.0.1; 0 picks a free one (printed on stdout).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--rate", type=float, default=20.0, show_default=True,
              help="Measurements per second per stream (sustains 20,000).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--count", type=int, default=None,
              help="Stop after this many measurements per stream (with --record: rows, default 200000).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the signal and random faults.")
@click.option("--streams", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent equipments on one socket; messages then carry \"stream\": \"eq-<i>\".")
@click.option("--with-time", is_flag=True, help='Send {"ts", "seq", "values"} objects instead of bare arrays.')
@click.option("--send-time", is_flag=True,
              help="With --with-time: ts is when each message is sent, not its slot in the schedule "
                   "(for measuring delivery delay; the sender may wake a millisecond or more late).")
@click.option("--faults", "fault_mode", type=click.Choice(["none", "random", "schedule"]), default=None,
              help="Fault source [default: schedule if --fault/--schedule is given, else none].")
@click.option("--fault", "fault_specs", multiple=True, metavar="TYPE@START[:DUR][:FEATURES]",
              help="A scheduled fault, e.g. spike@12 or frozen@30:10:cpu (repeatable).")
@click.option("--schedule", "schedule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file of fault specs, one per line (# comments).")
@click.option("--fault-every", type=float, default=15.0, show_default=True,
              help="Mean nominal gap in seconds before each random fault.")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the ground-truth fault intervals here (JSONL).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write timestamp,cpu,memory,traffic,fan rows to this CSV at full speed instead of serving.")
@click.option("--start-time", type=float, default=None,
              help="With --record: epoch seconds of the first row [default: now].")
@click.option("--period", type=click.IntRange(min=10), default=600, show_default=True,
              help="Length of one load cycle in messages.")
@click.option("--serve", "serve", default=None, metavar="URL",
              help="Publish over a field protocol instead of the websocket: mqtt://HOST:PORT/TOPIC "
                   "(?format=sparkplug for Sparkplug B), opcua://HOST:PORT, modbus://HOST:PORT. The line on "
                   "stdout then names the agent's --source that reads it.")
@click.option("-q", "--quiet", is_flag=True, help="Do not log client connections and faults.")
def simulate(port: int, host: str, rate: float, duration: float | None, count: int | None, seed: int,
             streams: int, with_time: bool, send_time: bool, fault_mode: str | None, fault_specs: tuple[str, ...],
             schedule_file: Path | None, fault_every: float, truth_path: Path | None,
             record_path: Path | None, start_time: float | None, period: int, quiet: bool,
             serve: str | None = None) -> None:
    """Simulate a piece of network equipment: cpu, memory, traffic and a step-like fan level.

    Serves one JSON message per measurement to every websocket client at
    --rate, with a load cycle and optional injected faults whose ground
    truth goes to --truth. With --record, writes the same signal to CSV
    without a socket (200,000 rows in about a second).
    """
    from edgewatch.data.simulator import SimulatorConfig, record_csv
    from edgewatch.data.simulator_server import FaultMode, ServerConfig, SimulatorServer

    if not rate > 0:
        raise BadInput(f"--rate must be positive, got {rate}")
    specs = [s for text in fault_specs for s in read_schedule([text], rate)]
    if schedule_file is not None:
        specs += read_schedule(schedule_file.read_text().splitlines(), rate)
    specs = [dataclasses.replace(s, seed=seed * 7919 + i) for i, s in enumerate(specs)]
    mode = FaultMode(fault_mode) if fault_mode else (FaultMode.SCHEDULE if specs else FaultMode.NONE)
    if specs and mode is not FaultMode.SCHEDULE:
        raise BadInput(f"--fault/--schedule given with --faults {mode.value}; drop one of them")
    signal_config = SimulatorConfig(period=period)

    if record_path is not None:
        if streams != 1:
            raise BadInput("--record writes one stream; run it once per --seed for several equipments")
        n = 200_000 if count is None else count
        if duration is not None:
            n = min(n, int(duration * rate))
        plan = None
        if mode is FaultMode.RANDOM:
            plan = RandomFaults(every=max(1, round(fault_every * rate)), seed=seed * 1000)
        elif mode is FaultMode.SCHEDULE:
            plan = specs
        t = time.perf_counter()
        truth = record_csv(record_path, n, seed=seed, faults=plan, rate=rate,
                           start_ts=time.time() if start_time is None else start_time,
                           config=signal_config, truth_path=truth_path, progress=sys.stderr.isatty())
        click.echo(f"wrote {n} rows to {record_path} in {time.perf_counter() - t:.2f} s"
                   + (f", {len(truth)} faults to {truth_path}" if truth_path else ""), err=True)
        return

    config = ServerConfig(host=host, port=port, rate=rate, streams=streams, with_time=with_time or send_time,
                          send_time=send_time, count=count,
                          duration=duration, seed=seed, faults=mode, schedule=tuple(specs),
                          fault_every=fault_every, truth_path=truth_path, signal=signal_config)
    if not quiet:
        logging.getLogger("edgewatch.data.simulator_server").setLevel(logging.INFO)
    if serve is not None:
        from edgewatch.data.simulator_outlets import source_url_for

        if serve.startswith("opcua:"):
            click.echo("starting the OPC UA server (asyncua builds its address space: some seconds)", err=True)
        server = SimulatorServer(config, serve=serve).start(timeout=180.0)
        click.echo(f"serving {server.url}; read it with --source "
                   + " --source ".join(f"'{source_url_for(server.url if not serve.startswith('mqtt') else serve, i, streams)}'"
                                       for i in range(streams if serve.startswith(('opcua', 'modbus')) else 1)))
    else:
        server = SimulatorServer(config).start()
        click.echo(f"listening on {server.url}")
    sys.stdout.flush()
    ended = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: ended.set())
    try:
        while not ended.is_set() and not server.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    click.echo(f"sent {server.messages_sent} messages"
               + (f"; {server.truth_written} faults written to {truth_path}" if truth_path else ""), err=True)
