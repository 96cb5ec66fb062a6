"""The URLs of ``--source`` and ``--sink``: one port rule for both."""

from __future__ import annotations

from urllib.parse import urlsplit


def port_problem(url: str) -> str | None:
    """Why ``url``'s port cannot work (its login left out), or None: no port, or a number from 0 to 65535.

    urllib only complains when ``.port`` is read, which happened deep inside a
    source or sink (a traceback, exit 1) or in a websocket's connect loop
    (retried forever); asked at start, the agent can name the fix.
    """
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        where = parts.netloc.rpartition("@")[2]
        return (f"{parts.scheme}://{where}{parts.path}: the port after {parts.hostname!r} "
                "must be a number from 0 to 65535")
    return None
