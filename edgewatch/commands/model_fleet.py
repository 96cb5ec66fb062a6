"""``edgewatch model publish|rollback|promote``: ship models to a fleet of agents over MQTT."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from edgewatch.commands.fleet_options import broker_options, pop_broker
from edgewatch.errors import EdgewatchError, UntrustedModel
from edgewatch.fleet import topics
from edgewatch.fleet.operator import Operator, Outcome

DONE = ("model_swapped", "model_shadow", "model_refused", "model_unchanged")


def _wait_option(fn: Any) -> Any:
    return click.option("--wait", "wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
                        help="Seconds to wait for each online agent to report the outcome (0: do not wait).")(fn)


def _agents_option(fn: Any) -> Any:
    return click.option("--agent", "agents", multiple=True, metavar="ID",
                        help="Only this agent (repeatable); default every agent with a status under PREFIX.")(fn)


@click.command("publish")
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@broker_options
@_agents_option
@click.option("--shadow", is_flag=True, help="Run it beside the live model, without alerting, until promoted.")
@click.option("--note", default="", help="Version note shown by 'edgewatch fleet status' (e.g. 'v7: retrained').")
@click.option("--promote-if", "promote_if", default=None, metavar="RULE",
              help="With --shadow: promote automatically when the rule holds, e.g. "
                   "'alerts_differ<=2,after=1h' (at most 2 episodes differ after an hour in shadow).")
@click.option("--allow-unsigned", is_flag=True,
              help="Publish an unsigned model (agents refuse it unless started with --allow-unsigned-models).")
@click.option("--trust-key", "trust_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Also verify the signature against this public key before publishing (repeatable).")
@_wait_option
def publish(model_path: Path, agents: tuple[str, ...], shadow: bool, note: str, promote_if: str | None,
            allow_unsigned: bool, trust_keys: tuple[Path, ...], wait: float, **broker: Any) -> None:
    """Send MODEL (retained, QoS 1) to every agent under PREFIX, or to the named ones.

    The file is checked first as the agents will check it: an edgewatch model
    the agent can run, signed (unless --allow-unsigned), card and graph
    unchanged since signing. Agents started with --model-topic verify it,
    swap it in (or run it in shadow) and report; this command prints each
    agent's outcome. Exit 1 when an agent refused it.
    """
    from edgewatch.agent.shadow import PromotionRule

    if promote_if and not shadow:
        raise click.UsageError("--promote-if needs --shadow (it says when a shadow model becomes live)")
    if promote_if:
        try:
            PromotionRule.parse(promote_if)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--promote-if") from None
    data = model_path.read_bytes()
    described = _check_model(model_path, data, allow_unsigned, trust_keys)
    message = topics.install_message(model_path, note=note, shadow=shadow, promote_if=promote_if)
    op = pop_broker(broker)
    try:
        targets = op.targets(agents)
        op.watch_events()
        time.sleep(0.2)  # the events subscription is in place before any agent can answer
        started = time.monotonic()
        op.send_model_message(targets, message)
        click.echo(f"published {model_path.name} ({message.sha256[:12]}, {described}) "
                   f"{'in shadow ' if shadow else ''}to {len(targets)} agent(s) under {op.prefix!r}")
        _report(op, targets, message.id, wait, started)
    finally:
        op.close()


def _check_model(path: Path, data: bytes, allow_unsigned: bool, trust_keys: tuple[Path, ...]) -> str:
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.runtime import ModelRuntime
    from edgewatch.agent.signing import check_digests, load_trust_keys, read_signature, verify_bytes

    model = ScoringModel(path, data=data)  # an edgewatch model the agent can load (exit 3 with the reason if not)
    if model.card.is_time_series:
        ModelRuntime.build(model)  # and whose card can run there: the agents would refuse it otherwise
    sig = read_signature(data, str(path))
    if sig is None:
        if not allow_unsigned:
            raise UntrustedModel(f"{path} is not signed; sign it with 'edgewatch model sign' (agents with "
                                 "--trust-key refuse unsigned models), or pass --allow-unsigned")
        return "unsigned"
    if trust_keys:
        return verify_bytes(data, load_trust_keys(trust_keys), str(path)).describe()
    check_digests(data, str(path))
    return f"signed by {sig.signer!r}, key {sig.key_id}"


def _report(op: Operator, targets: list[str], message_id: str, wait: float, started: float) -> None:
    if not wait:
        return
    online = {a for a in targets if _online(op, a)}
    got = op.outcomes(sorted(online), message_id, wait, started, DONE)
    refused = 0
    for agent in targets:
        out: Outcome | None = got.get(agent)
        if out is None:
            state = "no answer within %gs" % wait if agent in online else "offline"
            click.echo(f"  {agent}: {state}; it applies the retained message when it connects")
        elif out.event == "model_refused":
            refused += 1
            click.echo(f"  {agent}: REFUSED after {out.seconds:.2f}s: {out.reason}")
        else:
            what = {"model_shadow": "running it in shadow", "model_unchanged": "already running it"}.get(
                out.event, "swapped in")
            click.echo(f"  {agent}: {what} after {out.seconds:.2f}s")
    if got:
        slowest = max(o.seconds for o in got.values())
        click.echo(f"{len(got)} of {len(targets)} agent(s) answered; the last after {slowest:.2f}s")
    if refused:
        raise EdgewatchError(f"{refused} agent(s) refused it (see the reasons above)")


def _online(op: Operator, agent: str) -> bool:
    with op._lock:
        held = op.statuses.get(agent)
    return held is not None and topics.status_state(held[0]) == "online"


def _action(action: str, agents: tuple[str, ...], note: str, wait: float, broker: dict[str, Any]) -> None:
    message = topics.action_message(action, note=note)
    op = pop_broker(broker)
    try:
        targets = op.targets(agents)
        op.watch_status()
        op.watch_events()
        time.sleep(0.2)
        started = time.monotonic()
        op.send_model_message(targets, message)
        click.echo(f"sent {action} to {len(targets)} agent(s) under {op.prefix!r}")
        _report(op, targets, message.id, wait, started)
    finally:
        op.close()


@click.command("rollback")
@broker_options
@_agents_option
@click.option("--note", default="", help="Why (shown in the agents' events).")
@_wait_option
def rollback(agents: tuple[str, ...], note: str, wait: float, **broker: Any) -> None:
    """Return each agent to its previous model (which it keeps on disk)."""
    _action(topics.ROLLBACK, agents, note, wait, broker)


@click.command("promote")
@broker_options
@_agents_option
@click.option("--note", default="", help="Why (shown in the agents' events).")
@_wait_option
def promote(agents: tuple[str, ...], note: str, wait: float, **broker: Any) -> None:
    """Make each agent's shadow model its live model (the live one becomes the previous)."""
    _action(topics.PROMOTE, agents, note, wait, broker)
