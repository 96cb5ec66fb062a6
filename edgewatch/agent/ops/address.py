"""``HOST:PORT`` of the agent's HTTP endpoints (``--metrics``, ``--ui``): one parser for both."""

from __future__ import annotations

from edgewatch.errors import BadInput


class BadAddress(BadInput):
    """An address flag's value that is not ``HOST:PORT`` with a port from 0 to 65535."""


def parse_address(text: str, flag: str = "the address") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to loopback.

    ``flag`` names the option in the error (``--metrics``, ``--ui``): binding
    to another interface must be asked for, never a default.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise BadAddress(f"{flag} wants ADDR:PORT such as 127.0.0.1:9108 (port 0 picks a free one), got {text!r}")
    return host.strip("[]") or "127.0.0.1", number
