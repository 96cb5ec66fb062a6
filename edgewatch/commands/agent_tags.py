"""``edgewatch agent tags``: the plant's tags beside the model's features, and the ``?columns=`` to start from.

A model fitted on a historian's CSV knows its features by the column
headers; the plant's OPC UA server or MQTT broker names the same sensors
otherwise (docs/sources.md "First contact"). This command connects once,
read only, and prints what the server has: an OPC UA object's variables
(browse name, node id, data type, value) or the topics an MQTT filter or
template receives within ``--listen`` seconds (count, a sample payload).
Beside them, the model's features in its order, each with the tag the
agent's own name rule (:mod:`edgewatch.agent.sources.feature_names`) would
take for it, and a ``?columns=`` built from those: a suggestion to check,
since the rule bridges spelling (``motor_current`` for ``Motor Current
(A)``), not other words (``Flow`` for ``PUMP01.FLOW_M3H``), which are left
as ``<name for FEATURE>`` to fill in. Modbus registers have no names: the
``?registers=`` skeleton in the model's order is printed instead.

Each kind of URL has its browser in :data:`BROWSERS` (by scheme). The URL is
parsed by the agent's own source factory, so what this command accepts is
what ``agent run`` accepts. Exit codes: 1 for a server that cannot be
reached (as the fleet commands' broker), 3 a bad model file, 4 a URL that
cannot work or cannot be browsed, 6 a missing extra.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import make_source
from edgewatch.agent.sources.base import SourceConfigError
from edgewatch.agent.sources.feature_map import columns_example
from edgewatch.agent.sources.feature_names import FeatureNames
from edgewatch.agent.sources.parsing import BadReason, parse_object
from edgewatch.agent.sources.registry import scheme_of
from edgewatch.commands.agent_check import _live_tags
from edgewatch.errors import EdgewatchError

MAX_SAMPLE = 40  # characters of a payload or value shown
MAX_TOPICS = 200  # topics listed (the rest counted)
MQTT_HEADERS = ("level", "topic", "messages", "last payload")


class Unreachable(EdgewatchError):
    """The server did not answer within the timeout (exit 1, as the fleet commands' broker)."""


@dataclass
class Tag:
    """One name the server offers for a sensor, with what helps tell which sensor it is."""

    name: str  # as ?columns= names it: an OPC UA browse name, a template's {feature} level
    where: str  # node id, or the topic
    kind: str  # data type, or the number of messages
    sample: str  # current value, or a payload


@dataclass
class Browse:
    """What a server showed: its tags, and whether ``?columns=`` may name them (a plain MQTT filter may not)."""

    title: str
    tags: list[Tag]
    columns_form: str | None  # the --source to put ?columns= on; None when columns cannot apply
    table_key: str | None = None  # a TOML table that maps a feature to a tag's ``where`` (OPC UA: nodes)
    note: str = ""
    headers: tuple[str, str, str, str] = ("tag", "at", "type", "value")
    keyed: bool = False  # the tags are a JSON object's keys on a plain filter: matched by name, never renamed


EPILOG = """\b
Examples:
  edgewatch agent tags --model pump.onnx --source opcua://10.0.0.7:4840/Objects/2:Pump01
  edgewatch agent tags --model pump.onnx --source "mqtt://broker:1883/plant/{stream}/{feature}" --listen 30
  edgewatch agent tags --model pump.onnx --source "mqtt://broker:1883/plant/%23"
  edgewatch agent tags --model pump.onnx --source modbus://10.0.0.9:502/1
Then: edgewatch agent run --model pump.onnx --source "opcua://10.0.0.7:4840/Objects/2:Pump01?columns=..."
  (docs/sources.md "First contact")"""


@click.command("tags", epilog=EPILOG)
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model file whose features the tags are matched to.")
@click.option("--source", required=True, metavar="URL",
              help="As agent run takes it: opcua://HOST:PORT/Objects/2:Name, mqtt://HOST:PORT/FILTER-OR-TEMPLATE, "
                   "modbus://HOST:PORT/UNIT.")
@click.option("--listen", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="MQTT: seconds to collect topics (retained ones come at once, others as they are published).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds for the server to answer the connection.")
def command(model_path: Path, source: str, listen: float, timeout: float) -> None:
    """Connect to the --source server (read only) and print its tags beside the model's features.

    OPC UA: the object's variables (browse name, node id, data type, value).
    MQTT: the topics seen within --listen seconds (messages, a sample payload).
    Then each feature of the model with the tag whose name matches it by the
    agent's name rule (case, spaces, '_-./', a unit in brackets), and a
    suggested ?columns= to check: a feature no tag matches is left as
    <name for FEATURE>. Modbus registers have no names: the ?registers=
    skeleton in the model's order. Exit 1 when the server cannot be reached.
    """
    features = ScoringModel(model_path).card.features
    scheme = scheme_of(source)
    browser = BROWSERS.get(scheme)
    if browser is None:
        raise SourceConfigError(f"{scheme or source!r} sources have no tags to browse: agent tags reads an OPC UA "
                                "object (opcua://HOST:PORT/Objects/2:Name), an MQTT topic filter or template "
                                "(mqtt://HOST:PORT/plant/{stream}/{feature}) or says what a Modbus unit needs "
                                "(modbus://HOST:PORT/UNIT); a CSV replay names its features by its header")
    click.echo("\n".join(browser(source, features, listen, timeout)))


# -- OPC UA ---------------------------------------------------------------------------------------


def _opcua(url: str, features: list[str], _listen: float, timeout: float) -> list[str]:
    import asyncio

    src = make_source(url, features)  # a URL without an object path is refused here, as by agent run (exit 4)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # its tracebacks for a refused connection
    tags = asyncio.run(_browse_opcua(src, timeout))
    path = "/".join(src.browse_path)
    return _report(Browse(f"{src.name}: the object {path} has {len(tags)} variable(s)", tags,
                          columns_form=url.split("?", 1)[0], table_key="nodes",
                          headers=("browse name", "node id", "data type", "value")), features)


async def _browse_opcua(src: Any, timeout: float) -> list[Tag]:  # noqa: ANN401 - an OpcUaSource
    import asyncio

    from asyncua import ua

    client = await src.new_client("edgewatch agent tags", timeout)
    try:
        await asyncio.wait_for(client.connect(), timeout)
    except Exception as exc:  # refused, no route, a timeout, a server that is no OPC UA server
        raise Unreachable(f"cannot reach the OPC UA server {src.endpoint} within {timeout:g} s "
                          f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})") from None
    try:
        try:
            obj = await client.nodes.root.get_child(src.browse_path)
        except ua.UaError:
            names = [f"{b.NamespaceIndex}:{b.Name}" for b in
                     [await c.read_browse_name() for c in await client.nodes.objects.get_children()]]
            raise SourceConfigError(f"{src.name}: no object at {'/'.join(src.browse_path)}; Objects holds "
                                    f"{', '.join(names[:50])}") from None
        tags = []
        for child in await obj.get_children(nodeclassmask=ua.NodeClass.Variable):
            tags.append(Tag((await child.read_browse_name()).Name, child.nodeid.to_string(),
                            await _data_type(child), await _value(child)))
        return tags
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # the server went away meanwhile: nothing to say goodbye to
            pass


async def _data_type(node: Any) -> str:  # noqa: ANN401 - an asyncua Node
    try:
        return (await node.read_data_type_as_variant_type()).name
    except Exception:  # a structure or a type the server does not describe: its node id says what it is
        try:
            return (await node.read_data_type()).to_string()
        except Exception:
            return "?"


async def _value(node: Any) -> str:  # noqa: ANN401 - an asyncua Node
    try:
        value = await node.read_value()
    except Exception as exc:  # a bad status (asyncua names its error class after it) is what the agent would see
        return type(exc).__name__
    return _short(repr(value) if isinstance(value, str) else str(value))


# -- MQTT -----------------------------------------------------------------------------------------


def _mqtt(url: str, features: list[str], listen: float, timeout: float) -> list[str]:
    from edgewatch.mqtt.connection import BrokerConnection

    src = make_source(url, features)
    # a client of its own with a clean session: an agent's persistent session (its client id) is left alone
    options = replace(src.broker, client_id=f"edgewatch-tags-{uuid.uuid4().hex[:12]}", clean_session=True)
    seen: dict[str, list[Any]] = {}  # topic -> [count, last payload]

    def take(msg: Any) -> None:  # noqa: ANN401 - a paho message
        entry = seen.get(msg.topic)
        if entry is None:
            if len(seen) >= 10 * MAX_TOPICS:
                return
            entry = seen[msg.topic] = [0, b""]
        entry[0] += 1
        entry[1] = bytes(msg.payload)

    conn = BrokerConnection(options)
    conn.subscribe(src.topic_filter, take, qos=0)
    conn.start()
    try:
        if not conn.wait_connected(timeout):
            raise Unreachable(f"cannot reach the MQTT broker {options.address} within {timeout:g} s"
                              + (f" ({conn.last_error})" if conn.last_error else ""))
        time.sleep(listen)
    finally:
        conn.close(drain=0.0)
    return _report(_mqtt_browse(url, src, dict(seen), listen), features)


def _mqtt_browse(url: str, src: Any, seen: dict[str, list[Any]], listen: float) -> Browse:  # noqa: ANN401
    title = f"{src.name}: {len(seen)} topic(s) within {listen:g} s"
    template = src.template
    if template is None:
        return _plain(title, src, seen)
    tags, odd = [], 0
    for topic, (n, payload) in sorted(seen.items()):
        where = template.split(topic)
        if where is None:
            odd += 1
            continue
        tags.append(Tag(where[1], topic, str(n), _short(_text(payload))))
    note = f"{odd} topic(s) did not fit the template's levels" if odd else ""
    return Browse(title, tags, url.split("?", 1)[0], note=note, headers=MQTT_HEADERS)


def _plain(title: str, src: Any, seen: dict[str, list[Any]]) -> Browse:  # noqa: ANN401 - an MqttSource
    """A plain filter: a JSON object's keys are its tags (the agent matches them by name, no ?columns=); other
    payloads are named by their topic's last level, as a topic template would name them."""
    tags, keyed = [], False
    for topic, (n, payload) in sorted(seen.items()):
        keys = _keys(payload, src)
        keyed = keyed or bool(keys)
        tags += ([Tag(k, topic, str(n), _short(str(v))) for k, v in keys.items()] if keys else
                 [Tag(topic.rsplit("/", 1)[-1], topic, str(n), _short(_text(payload)))])
    note = ("a JSON object keyed by name is a row of the features whose names match its keys (no ?columns= on a "
            "plain filter: a key is taken when it matches a feature as below)" if keyed else
            "a plain filter takes whole rows (a JSON object or array of every feature per message); if each topic "
            "carries one sensor, name the levels of machine and sensor in a topic template, "
            "mqtt://HOST:PORT/plant/{stream}/{feature}, and ?columns= then names the {feature} level (the names "
            "matched here are each topic's last level)")
    return Browse(title, tags, None, note=note, headers=MQTT_HEADERS, keyed=keyed)


def _keys(payload: bytes, src: Any) -> dict[str, Any]:  # noqa: ANN401 - an MqttSource
    """A JSON object's values by key, without its time and stream; {} for any other payload."""
    parsed = parse_object(payload, src.max_message_bytes, src.rows.time_keys)
    if type(parsed) is BadReason or {"values", "value", "v"} & set(parsed[0]):  # a row array, one reading
        return {}
    skip = {*src.rows.time_keys, "stream"}
    return {k: v for k, v in parsed[0].items() if k not in skip}


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace") if payload else "(empty)"


# -- Modbus ---------------------------------------------------------------------------------------


def _modbus(url: str, features: list[str], _listen: float, _timeout: float) -> list[str]:
    base = url.split("?", 1)[0]
    skeleton = ",".join(f"<ADDR:TYPE[:SCALE] of {f}>" for f in features)
    return [f"{base}: Modbus registers have no names to list; give each feature's register in the model's order",
            f"  live tags     {_live_tags(features)}",
            f"  ?registers={skeleton}",
            f"  e.g. --source \"{base}?registers=0:u16:0.1,1:u16:0.01,2:f32\" (TYPE u16 i16 u32 i32 f32, "
            "value = raw * SCALE; the device's register map says which)"]


BROWSERS: dict[str, Callable[[str, list[str], float, float], list[str]]] = {
    "opcua": _opcua, "mqtt": _mqtt, "mqtts": _mqtt, "modbus": _modbus}


# -- the report -----------------------------------------------------------------------------------


def _report(found: Browse, features: list[str]) -> list[str]:
    """The tags, then each feature with the tag the name rule takes for it, then the suggestion to check."""
    lines = [found.title]
    shown = found.tags[:MAX_TOPICS]
    if shown:
        h = found.headers
        w = [max(len(h[k]), *(len(getattr(t, a)) for t in shown)) for k, a in enumerate(("name", "where", "kind"))]
        lines.append(f"  {h[0]:<{w[0]}}  {h[1]:<{w[1]}}  {h[2]:<{w[2]}}  {h[3]}")
        lines += [f"  {t.name:<{w[0]}}  {t.where:<{w[1]}}  {t.kind:<{w[2]}}  {t.sample}" for t in shown]
    if len(found.tags) > len(shown):
        lines.append(f"  ... and {len(found.tags) - len(shown)} more")
    if found.note:
        lines.append(f"  note: {found.note}")
    names = list(dict.fromkeys(t.name for t in found.tags))  # one template level over many streams: once
    picked, contested = FeatureNames(features).pick(names)
    match = {features[j]: names[i] for j, i in picked.items()}
    w = max(len(f) for f in features)
    lines.append("the model's features, in its order, and the tag whose name matches (case, spaces, '_-./', "
                 "a unit in brackets):")
    for j, f in enumerate(features):
        said = (match[f] if f in match else
                f"no tag: {sorted(names[i] for i in contested[j])} all match (none is taken)" if j in contested
                else "no tag matches: name it yourself")
        lines.append(f"  {f:<{w}}  {said}")
    lines += _suggestion(found, features, match)
    return lines


def _suggestion(found: Browse, features: list[str], match: dict[str, str]) -> list[str]:
    unmatched = [f for f in features if f not in match]
    head = (f"suggested (a guess by spelling: check each tag is that sensor; {len(unmatched)} feature(s) "
            f"unmatched: {', '.join(unmatched)})" if unmatched else
            "suggested (a guess by spelling: check each tag is that sensor)")
    if not found.tags:
        return [f"no tags seen: nothing to suggest; fill in ?columns={columns_example(features)}"]
    if found.keyed:
        return [head, "  the keys matched above are taken as those features; a key no feature matches is not (a "
                      "plain filter has no ?columns=): publish it under the feature's name, or one topic per tag "
                      "read with a topic template and ?columns="]
    if found.columns_form is None:
        return [head, f"  with a topic template: ?columns={columns_example(features, match)}"]
    lines = [head, f"  --source \"{found.columns_form}?columns={columns_example(features, match)}\""]
    if found.table_key:
        where = {t.name: t.where for t in found.tags}
        cells = ", ".join(f'"{f}" = "{where[match[f]]}"' if f in match else f'"{f}" = "<node id>"'
                          for f in features)
        lines.append(f"  or in a [[source]] table: {found.table_key} = {{ {cells} }}")
    return lines


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SAMPLE else text[:MAX_SAMPLE - 3] + "..."
