"""``http://`` / ``https://``: every event POSTed as one JSON object to a webhook (chat, ticketing, Node-RED).

Settings, as query keys of the URL or keys of a ``[[sink]]`` table
(docs/operators.md): ``header=Name:Value`` (repeatable; a ``headers``
table in TOML), ``token_file=PATH`` (sent as ``Authorization: Bearer``,
read at each post so a rotated token is used at once; a token itself is
refused on the command line), ``timeout`` (seconds, default 10),
``retry_min`` / ``retry_max`` (backoff, default 1 and 60 s), ``ca_file``,
``tls_insecure``. These keys are taken out of the URL; any other query
key stays in the URL that is posted to.

Delivery goes through the sink's own spool, in order, at least once
(:mod:`.http_delivery`): a receiver that dedups by the event's ``id``
sees each event once. A 4xx other than 408/429 is parked in
``rejected.jsonl``, not retried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edgewatch.agent.sinks.base import SinkContext, SinkSpec
from edgewatch.agent.sinks.http_delivery import (HTTP_KEYS, HttpOptions, HttpPoster, SpooledHttpSink, http_options,
                                                 refuse_unknown)
from edgewatch.agent.sinks.registry import register
from edgewatch.wire.json import dumps


class WebhookSink(SpooledHttpSink):
    """Spooled JSON POSTs of every event; see the module docstring."""

    def __init__(self, options: HttpOptions, context: SinkContext) -> None:
        self.options = options
        super().__init__("webhook", HttpPoster(options), context)

    def send(self, event: dict[str, Any]) -> None:
        self.sender.append(dumps(event).encode())


def split_url(url: str) -> tuple[str, list[tuple[str, str]]]:
    """The URL to post to (its own query keys kept) and edgewatch's query keys taken out of it."""
    parts = urlsplit(url)
    ours, theirs = [], []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours if key.replace("-", "_") in HTTP_KEYS + ("token",) else theirs).append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


@register("http", "https", form="http[s]://HOST[:PORT]/PATH")
def _build(spec: SinkSpec, context: SinkContext) -> WebhookSink:
    target, ours = split_url(spec.url)
    settings = SinkSpec(url="?" + urlencode(ours), scheme=spec.scheme, options=spec.options).settings(
        repeatable=frozenset({"header"}))
    options = http_options(target, settings)
    refuse_unknown(spec.url, settings, HTTP_KEYS)
    return WebhookSink(options, context)
