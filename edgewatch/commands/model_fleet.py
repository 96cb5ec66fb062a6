"""``edgewatch model publish|rollback|promote``: ship models to a fleet of agents over MQTT."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgewatch.agent.lifecycle.signing import MAX_RELEASE
from edgewatch.commands.fleet_options import broker_options, pop_broker
from edgewatch.errors import EdgewatchError, UntrustedModel
from edgewatch.mqtt import payloads
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
    from edgewatch.agent.lifecycle.shadow import PromotionRule

    if promote_if and not shadow:
        raise click.UsageError("--promote-if needs --shadow (it says when a shadow model becomes live)")
    if promote_if:
        try:
            PromotionRule.parse(promote_if)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--promote-if") from None
    data = model_path.read_bytes()
    described = _check_model(model_path, data, allow_unsigned, trust_keys)
    message = payloads.install_message(model_path, note=note, shadow=shadow, promote_if=promote_if)
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
    from edgewatch.agent.lifecycle.signing import check_digests, load_trust_keys, read_signature, verify_bytes

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
    return f"signed by {sig.signer!r}, key {sig.key_id}, {sig.describe_release()}"


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
    return held is not None and payloads.status_state(held[0]) == "online"


def _action(action: str, agents: tuple[str, ...], note: str, wait: float, broker: dict[str, Any],
            per_agent: Callable[[Operator, str, str], payloads.ModelMessage | str] | None = None) -> None:
    """Send ``action`` to each agent; ``per_agent`` builds an agent's own message, or says why it gets none."""
    message_id = payloads.new_id()
    op = pop_broker(broker)
    try:
        targets = op.targets(agents)
        op.watch_status()
        op.watch_events()
        time.sleep(0.2)
        messages: dict[str, payloads.ModelMessage] = {}
        for agent in targets:
            built = (per_agent(op, agent, message_id) if per_agent
                     else payloads.action_message(action, note=note, message_id=message_id))
            if isinstance(built, str):
                click.echo(f"  {agent}: not sent: {built}")
            else:
                messages[agent] = built
        started = time.monotonic()
        op.send_model_messages(messages)
        click.echo(f"sent {action} to {len(messages)} agent(s) under {op.prefix!r}")
        _report(op, list(messages), message_id, wait, started)
        if len(messages) < len(targets):
            raise EdgewatchError(f"{len(targets) - len(messages)} agent(s) were not sent the {action} "
                                 "(see the reasons above)")
    finally:
        op.close()


@click.command("rollback")
@broker_options
@_agents_option
@click.option("--note", default="", help="Why (shown in the agents' events).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign the rollback with this private key, as a new release: agents with --trust-key go back "
                   "only so (an unsigned rollback could be a replayed old release).")
@click.option("--release", type=click.IntRange(min=1, max=MAX_RELEASE), default=None,
              help="With --key: the release it gives the previous model (default: now, in nanoseconds).")
@click.option("--to", "to_sha256", default=None, metavar="SHA256",
              help="The model to return to (default: each agent's previous model, from its status); an agent "
                   "whose previous model is another refuses.")
@click.option("--signer", default=None, help="With --key: who signs (default user@host).")
@_wait_option
def rollback(agents: tuple[str, ...], note: str, key_path: Path | None, release: int | None,
             to_sha256: str | None, signer: str | None, wait: float, **broker: Any) -> None:
    """Return each agent to its previous model (which it keeps on disk).

    Agents started with --trust-key never go back to an older release on
    their own: give --key, and each agent gets a grant, signed, to run its
    previous model (named by sha256) as a new release, for it alone. Or
    re-sign the old file ('edgewatch model sign', a new release) and
    publish it.
    """
    from edgewatch.agent.lifecycle.releases import RollbackGrant
    from edgewatch.agent.lifecycle.signing import load_private_key

    if (release is not None or signer is not None) and key_path is None:
        raise click.UsageError("--release and --signer sign the rollback: they need --key")
    if to_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", to_sha256):
        raise click.BadParameter("a sha256 is 64 hex digits", param_hint="--to")
    private = load_private_key(key_path) if key_path else None  # a wrong key fails before the broker is asked

    def message(op: Operator, agent: str, message_id: str) -> payloads.ModelMessage | str:
        status = op.status_of(agent)
        sha = to_sha256.lower() if to_sha256 else (status.previous_sha256 if status else None)
        grant = None
        if private is not None:
            if sha is None:
                return "its status names no previous model to sign a rollback to (name one with --to)"
            grant = RollbackGrant.sign(private, agent, sha, release, signer).to_json()
        return payloads.action_message(payloads.ROLLBACK, note=note, sha256=sha if to_sha256 or grant else None,
                                     grant=grant, message_id=message_id)

    _action(payloads.ROLLBACK, agents, note, wait, broker, message)


@click.command("promote")
@broker_options
@_agents_option
@click.option("--note", default="", help="Why (shown in the agents' events).")
@_wait_option
def promote(agents: tuple[str, ...], note: str, wait: float, **broker: Any) -> None:
    """Make each agent's shadow model its live model (the live one becomes the previous)."""
    _action(payloads.PROMOTE, agents, note, wait, broker)
