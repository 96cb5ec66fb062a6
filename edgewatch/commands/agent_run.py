"""``edgewatch agent run``: score live streams with a model file and send alerts.

A thin command: its options are generated from :class:`~edgewatch.agent.config.AgentConfig`
(so the flags, ``--config`` files and ``--print-config`` are one set of
settings), :func:`~edgewatch.agent.assemble.assemble` builds and wires the
agent, and this module only maps errors to exit codes, handles signals and
prints the summary.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from edgewatch.agent.assemble import assemble
from edgewatch.agent.config import AgentConfig, BadSetting, click_options, load_into_context
from edgewatch.agent.engine import RunSummary
from edgewatch.agent.sinks import forms as sink_forms
from edgewatch.agent.sources import schemes as source_schemes
from edgewatch.agent.sources.base import SourcesFailed
from edgewatch.errors import BadOverride

EPILOG = """\b
Examples:
  edgewatch agent run --model models/equipment-lstm-ae.onnx --source ws://127.0.0.1:8765/ --stride 3
  edgewatch agent run --model m.onnx --source replay:data.csv?rate=100 --sink jsonl:alerts.jsonl
  edgewatch agent run --model m.onnx --source ws://10.0.0.5:9000/ --sink mqtt://broker:1883/plant1
  edgewatch agent run --model pump.onnx --source "mqtt://broker:1883/plant/{stream}/{feature}"
  edgewatch agent run --config /etc/edgewatch/agent.toml

\b
Sources: ws://HOST:PORT/PATH (reconnects forever), replay:FILE.csv[?rate=HZ&loop=1] (separator, decimal
         comma, time column sniffed; the model's features by column name), stdin,
         mqtt[s]://HOST:PORT/TOPIC-FILTER (+ and # as %23; JSON or Sparkplug B: asks edge nodes whose
         births it missed for a rebirth, ?sparkplug_rebirth=0 never publishes), or a topic template
         mqtt://HOST:PORT/plant/{stream}/{feature} (one topic per sensor: 12.5 or {"value": v, "ts": t}),
         opcua://HOST:PORT/Objects/2:Name[?interval=S], modbus://HOST:PORT/UNIT?registers=...;
         in a config file also [[source]] tables (url = ... plus protocol keys), see docs/sources.md.
         Every source takes a JSON object keyed by feature name; a missing value is held from the
         stream's last one up to ?max_age=DURATION (default: 3 of its sampling intervals).
Sinks:   stdout, jsonl:FILE, mqtt://HOST:PORT/PREFIX or mqtts://... (alerts on PREFIX/AGENT-ID/alerts,
         drift on .../drift, other events on .../events, QoS 1, spooled to disk until the broker's
         PUBACK: at-least-once, dedupe by the alert "id"; retained JSON .../status, online/offline).
         http[s]://HOST/PATH (each event POSTed as JSON; header=Name:Value, token_file=PATH),
         alertmanager[s]://HOST:PORT (one Alertmanager alert per episode, re-sent while open, endsAt
         when it closes); both spooled to disk until a 2xx, see docs/agent.md "Webhooks and
         Alertmanager"; sparkplug://HOST:PORT/GROUP/NODE (a Sparkplug B edge node, one device
         per stream: anomaly, anomaly_score, threshold; docs/agent.md "Sparkplug B out");
         in a config file also [[sink]] tables (url = ... plus the sink's keys).
Fleet:   status, model publish/rollback/shadow/promote and their topics on --fleet-broker (default:
         the first MQTT sink's broker and prefix), see docs/fleet.md.
Exit codes: 0 stopped cleanly (end of input, --duration, SIGTERM/SIGINT/SIGHUP), 1 failure (also: every
source ended and one of them unexpectedly, e.g. a source that died 5 times in 10 minutes),
2 usage error, 3 bad model file (not edgewatch, corrupt, sha256 mismatch, not signed by a
--trust-key or changed after signing, a release older than one it has run),
4 bad input file (replay CSV does not fit the model, bad config file), 6 missing optional dependency.
On live streams a message of the wrong arity is bad input: counted, skipped, never fatal.
"""


def _with_settings(command: click.Command) -> click.Command:
    """Add one option per AgentConfig setting, after --config and --print-config."""
    fill = {"source_schemes": ", ".join(source_schemes()), "sink_forms": ", ".join(sink_forms())}
    command.params.extend(click_options(**fill))
    return command


@_with_settings
@click.command("run", epilog=EPILOG)
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=load_into_context,
              help="TOML file with the same settings as the flags (see --print-config); a flag on the command "
                   "line replaces that one setting of the file.")
@click.option("--print-config", is_flag=True,
              help="Print this run's settings (flags and --config merged) as TOML and exit without running; "
                   "--config with that file reproduces the run (the MQTT password is left out).")
@click.pass_context
def command(ctx: click.Context, print_config: bool, **_settings: Any) -> None:
    """Score live streams with a model file and send an alert per anomalous episode.

    Every --stride-th measurement of a stream, its last WINDOW measurements are
    scored; an episode opens when K of the last N scored windows exceed the
    threshold and closes after M scored windows in a row under it (the model
    file's --close-after; N when it has none). Runs without torch.
    """
    config = AgentConfig.from_command(ctx)
    if print_config:
        click.echo(config.to_toml(), nl=False)
        return
    signals = StopSignals()  # before anything is opened: a stop while the agent is built must stop it cleanly too
    assembly = None
    try:
        from edgewatch.agent.ops.logs import setup_logging

        setup_logging(config.ops.log_json, config.ops.log_level)
        signals.act_on_held()  # a stop that came while the program imported: logged as any stop while starting
        try:
            assembly = assemble(config)
        except (BadSetting, BadOverride) as exc:
            raise click.UsageError(str(exc)) from None
        signals.attach(assembly.agent)
    except StoppedWhileStarting as stop:
        if assembly is not None:  # it came between the assembly and attach: nothing ran yet
            assembly.close()
        import logging

        logging.getLogger("edgewatch.agent").info("signal %d while starting: stopped before reading anything "
                                                  "(what was opened is closed, the spool kept)", stop.signum)
        return
    if "metrics" in assembly.urls:
        url = assembly.urls["metrics"]
        click.echo(f"metrics on {url}/metrics, health on {url}/livez and {url}/readyz", err=True)
    if "live page" in assembly.urls:
        click.echo(f"live page on {assembly.urls['live page']}", err=True)
    summary = assembly.run()
    if config.run.summary_json:
        config.run.summary_json.write_text(json.dumps(summary_dict(summary), indent=2))
    if not config.run.quiet:
        print_summary(summary)
    if summary.ended_by == "sources" and summary.source_failures:
        raise SourcesFailed(summary.source_failures, len(config.sources.urls))


command.takes_stop_signals = True  # type: ignore[attr-defined]  # the program's held stop (StopSignals)


class StoppedWhileStarting(BaseException):
    """SIGTERM or SIGINT while the agent was being built (a ``docker stop`` or ``systemctl stop`` right after
    the start). A BaseException, as KeyboardInterrupt is, so no ``except Exception`` of the build takes it:
    :func:`~edgewatch.agent.assemble.assemble` closes what it opened and the command exits 0, as for any stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum} while starting")
        self.signum = signum


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP from the command's first line on, not only once the agent runs.

    SIGHUP (the terminal closed) killed the agent with nothing closed: no
    ``end`` for an open episode, no summary. It is a stop like the others,
    unless the agent was started ignoring it (``nohup``).

    Installed after the assembly, as it was, a signal during the build (model
    load, connections, the fleet member: 0.1 s to seconds) met Python's
    default: SIGTERM killed the process with nothing closed (exit -15) and
    SIGINT ended it as a click abort (exit 1). Until :meth:`attach`, the first
    signal interrupts the build where it is, even in a blocking call, with
    :class:`StoppedWhileStarting`; then it asks the agent to stop. One that
    came earlier still, while the program imported, was held by
    :mod:`~edgewatch.commands.early_signals`: it is taken over here and acted
    on by :meth:`act_on_held`, once logging is set up.
    """

    def __init__(self) -> None:
        from edgewatch.commands.early_signals import EARLY, stop_signals

        self.agent: Any = None
        self.interrupted = False
        self.signum = 0  # the stop raised into the build, once interrupted
        for s in stop_signals():  # SIGHUP too (a closed terminal), unless ignored from the start (nohup)
            signal.signal(s, self)
        self.held = EARLY.take()  # after our handlers are in: no signal can fall between the two

    def act_on_held(self) -> None:
        """Stop now (:class:`StoppedWhileStarting`) if a stop signal came before these handlers were installed."""
        held, self.held = self.held, None
        if held is not None:
            self(held, None)

    def attach(self, agent: Any) -> None:
        """From now on a signal is a request to stop the running agent (it drains, ends episodes, flushes).

        A stop raised into the build that the build swallowed (it lands
        anywhere: in a ``__del__``, whose exceptions Python only prints, or
        under a library's ``except BaseException``) is raised again here, so
        the agent never runs after a stop it was sent."""
        if self.interrupted:
            raise StoppedWhileStarting(self.signum)
        self.agent = agent

    def __call__(self, signum: int, _frame: object) -> None:
        import logging

        if self.agent is not None:
            logging.getLogger("edgewatch.agent").info("signal %d: stopping (draining queued messages, flushing "
                                                      "sinks)", signum)
            self.agent.request_stop()
        elif not self.interrupted:  # once: a second signal must not interrupt the closing of the first
            self.interrupted = True
            self.signum = signum
            raise StoppedWhileStarting(signum)


def summary_dict(summary: RunSummary) -> dict:
    return {"messages": summary.messages, "bad": summary.bad, "windows": summary.windows,
            "events": summary.events, "streams": summary.streams, "seconds": round(summary.seconds, 3),
            "nonfinite_scores": summary.nonfinite_scores, "evicted_streams": summary.evicted_streams,
            "source_restarts": summary.source_restarts, "source_failures": summary.source_failures,
            "ended_by": summary.ended_by, "delivery": summary.delivery, "episodes_held": summary.episodes_held,
            "sparkplug_rebirths": summary.sparkplug_rebirths}


def print_summary(summary: RunSummary) -> None:
    bad = sum(summary.bad.values())
    rate = summary.messages / summary.seconds if summary.seconds else 0.0
    lines = [f"messages {summary.messages} ({rate:.0f}/s) from {summary.streams} stream(s), "
             f"bad {bad}, windows scored {summary.windows}, events {summary.events or {}}"]
    if bad:
        lines.append("bad input by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.bad.items())))
    if summary.episodes_held:
        lines.append(f"episodes held in streams' quiet start (--quiet-start), not sent: {summary.episodes_held}")
    if summary.source_restarts:
        lines.append(f"source restarts {summary.source_restarts}")
    if summary.sparkplug_rebirths:
        lines.append(f"Sparkplug rebirth requests sent {summary.sparkplug_rebirths}")
    if summary.delivery:  # every spooling sink's counts, summed: MQTT, webhook, Alertmanager
        d = summary.delivery
        parked = f", parked (refused by the receiver) {d['parked']}" if d.get("parked") else ""
        lines.append(f"events through the spool (MQTT, webhook, Alertmanager sinks): sent {d['sent']}, "
                     f"delivered {d['delivered']}{parked}, dropped {d['dropped']}, "
                     f"left in the spool for the next start {d['waiting']}")
    click.echo("\n".join(lines), err=True)
    sys.stderr.flush()
