"""``edgewatch fleet status`` and ``edgewatch fleet shadow-report``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from edgewatch.commands.fleet_options import broker_options, pop_broker
from edgewatch.errors import EdgewatchError
from edgewatch.fleet.status import fleet_rows, format_table
from edgewatch.mqtt import payloads
from edgewatch.mqtt.topics import Topics


@click.command("status")
@broker_options
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of objects (agent, state, model_sha256, note, since, shadow_sha256, ...).")
@click.option("--watch", is_flag=True, help="Keep listening and reprint on every change (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="With --watch: seconds between reprints.")
def status(as_json: bool, watch: bool, interval: float, **broker: Any) -> None:
    """List every agent under PREFIX from its retained status.

    STATE is online, or offline: said by the agent when it stopped, by the
    broker's last will when its connection died (within 1.5 keepalives), or
    concluded here when its status is older than the agent said it would be.
    """
    op = pop_broker(broker)
    try:
        op.discover()
        last = None
        while True:
            with op._lock:
                statuses = dict(op.statuses)
            rows = fleet_rows(statuses)
            text = (json.dumps([r.to_json() for r in rows], indent=None if watch else 2) if as_json
                    else format_table(rows) if rows else f"no agent under {op.prefix!r}")
            if text != last or not watch:
                if watch and not as_json:
                    click.echo("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + op.prefix, nl=True)
                click.echo(text)
                last = text
            if not watch:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        op.close()


@click.command("shadow-report")
@broker_options
@click.option("--agent", "agents", multiple=True, metavar="ID", help="Only this agent (repeatable).")
@click.option("--wait", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds to wait for the reports.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as a JSON list.")
def shadow_report(agents: tuple[str, ...], wait: float, as_json: bool, **broker: Any) -> None:
    """Ask agents for a shadow report now and print it (windows over each threshold, differing episodes)."""
    op = pop_broker(broker)
    reports: dict[str, dict[str, Any]] = {}
    try:
        targets = op.targets(agents)
        asked = payloads.new_id()

        def take(msg: Any) -> None:
            agent = op.every.agent_of(msg.topic)
            try:
                obj = payloads.loads(msg.payload, "shadow report")
            except payloads.ContractError:
                return
            if agent in targets and obj.get("request_id") == asked:
                reports[agent] = obj

        op.conn.subscribe(op.every.shadow, take)
        time.sleep(0.2)
        op.send_command(targets, payloads.SHADOW_REPORT, message_id=asked)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(reports) < len(targets):
            time.sleep(0.05)
    finally:
        op.close()
    if as_json:
        click.echo(json.dumps([{"agent": a, **reports[a]} for a in sorted(reports)], indent=2))
    else:
        from edgewatch.agent.lifecycle.shadow import format_report

        for agent in sorted(reports):
            click.echo(f"== {agent}\n{format_report(reports[agent])}")
    missing = sorted(set(targets) - set(reports))
    if missing:
        raise EdgewatchError(f"no shadow report within {wait:g}s from {', '.join(missing)} "
                             "(offline, or no model in shadow)")


@click.command("forget")
@broker_options
@click.option("--agent", "agents", multiple=True, required=True, metavar="ID",
              help="The retired agent (repeatable).")
def forget(agents: tuple[str, ...], **broker: Any) -> None:
    """Clear a retired agent's retained status, model and shadow report, so status lists it no more.

    An agent that is still running publishes its status again within its
    status interval; stop it first.
    """
    op = pop_broker(broker)
    try:
        op.discover()
        with op._lock:
            online = [a for a in agents if a in op.statuses and payloads.status_state(op.statuses[a][0]) == "online"]
        for agent in agents:
            topics = Topics(op.prefix, agent)
            for topic in (topics.status, topics.model, topics.shadow):
                info = op.conn.publish(topic, b"", qos=1, retain=True)
                info.wait_for_publish(10)
        click.echo(f"forgot {len(agents)} agent(s) under {op.prefix!r}")
        if online:
            click.echo(f"warning: {', '.join(online)} still online: it publishes its status again", err=True)
    finally:
        op.close()
