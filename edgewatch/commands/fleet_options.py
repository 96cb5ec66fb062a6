"""The broker flags shared by the operator commands (``model publish|rollback|promote``, ``fleet status``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from edgewatch.fleet.operator import Operator


def broker_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--broker URL`` and the ``--mqtt-*`` login/TLS flags of ``agent run``, same names and variables."""
    for decorator in reversed([
        click.option("--broker", required=True, metavar="mqtt://HOST:PORT/PREFIX",
                     help="The fleet's broker and topic prefix (mqtts:// for TLS), as in the agents' --sink."),
        click.option("--mqtt-username", default=None, envvar="EDGEWATCH_MQTT_USERNAME", help="MQTT login name."),
        click.option("--mqtt-password", default=None, envvar="EDGEWATCH_MQTT_PASSWORD",
                     help="MQTT password (better from $EDGEWATCH_MQTT_PASSWORD)."),
        click.option("--mqtt-ca-file", default=None, type=click.Path(dir_okay=False),
                     help="CA certificate(s) to verify the broker; turns TLS on."),
        click.option("--mqtt-cert-file", default=None, type=click.Path(dir_okay=False),
                     help="Client certificate; turns TLS on."),
        click.option("--mqtt-key-file", default=None, type=click.Path(dir_okay=False), help="Key of --mqtt-cert-file."),
        click.option("--mqtt-tls-insecure", is_flag=True, help="Do not verify the broker's certificate (testing only)."),
        click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                     help="Seconds to wait for the broker before giving up."),
    ]):
        fn = decorator(fn)
    return fn


def open_operator(broker: str, mqtt_username: str | None, mqtt_password: str | None, mqtt_ca_file: str | None,
                  mqtt_cert_file: str | None, mqtt_key_file: str | None, mqtt_tls_insecure: bool,
                  connect_timeout: float = 10.0) -> Operator:
    opts = {"username": mqtt_username, "password": mqtt_password, "ca_file": mqtt_ca_file,
            "cert_file": mqtt_cert_file, "key_file": mqtt_key_file}
    clean = {k: v for k, v in opts.items() if v}
    if mqtt_tls_insecure:
        clean["tls_insecure"] = True
    return Operator(broker, connect_timeout=connect_timeout, **clean)


BROKER_KEYS = ("broker", "mqtt_username", "mqtt_password", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file",
               "mqtt_tls_insecure", "connect_timeout")


def pop_broker(kwargs: dict[str, Any]) -> Operator:
    return open_operator(*(kwargs.pop(k) for k in BROKER_KEYS))
