"""A real asyncua server on a loopback port, in its own thread and event loop, for the OPC UA tests.

Building asyncua's address space is slow (seconds), so one server serves a
whole test module; ``restart()`` stops and starts its endpoint, which drops
every connection, session and subscription just as a server restart does.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.conftest import free_port

FEATURES = ["cpu", "memory", "traffic", "fan"]


class OpcUaServer:
    def __init__(self, objects: tuple[str, ...] = ("Pump1",), users: dict[str, str] | None = None,
                 **security: Any) -> None:
        self.users = users
        self.port = free_port()
        self.url = f"opcua://127.0.0.1:{self.port}"
        self.objects = objects
        self.security = security
        self.vars: dict[tuple[str, str], Any] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="opcua-server", daemon=True)
        self._thread.start()
        self.call(self._init())
        self.running = False

    def call(self, coro, timeout: float = 120.0) -> Any:  # noqa: ANN001
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _init(self) -> None:
        from asyncua import Server, ua

        self.server = server = Server(user_manager=_Users(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}")
        if self.security:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity,
                                        ua.SecurityPolicyType.Basic256Sha256_Sign,
                                        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            await server.set_application_uri("urn:edgewatch:test:server")
            await server.load_certificate(self.security["certificate"])
            await server.load_private_key(self.security["private_key"])
        self.ns = await server.register_namespace("urn:edgewatch:test")
        # like gateways with loosely typed variables, take any value type (a string in a feature)
        server.iserver.aspace._is_expected_variant_type = lambda *_: True
        for name in self.objects:
            obj = await server.nodes.objects.add_object(self.ns, name)
            for f in FEATURES:
                self.vars[(name, f)] = await obj.add_variable(self.ns, f, 0.5)
            await obj.add_variable(self.ns, "serial", "X1")  # not a feature: ignored

    def start(self) -> OpcUaServer:
        self.call(self.server.start())
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.call(self.server.stop())
            self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def write(self, obj: str, values: dict[str, Any], status: Any = None) -> None:
        """Write several variables of one object at once (one data-change set for the subscriber)."""
        from asyncua import ua

        async def go() -> None:
            for f, v in values.items():
                variant = ua.Variant(v, ua.VariantType.String if isinstance(v, str) else ua.VariantType.Double)
                dv = ua.DataValue(variant, StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)) if status else ua.StatusCode())
                await self.server.write_attribute_value(self.vars[(obj, f)].nodeid, dv)
        self.call(go())

    def close(self) -> None:
        self.stop()

        async def cancel_the_rest() -> None:  # subscription loops a restart left behind
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.call(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class _Users:
    """Anonymous sessions allowed; a named user must give the right password."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.User)
        if self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


def make_certificates(folder: Any) -> dict[str, str]:
    """A self-signed server and client certificate (DER) with their keys (PEM) in ``folder``."""
    import asyncio
    import socket
    from pathlib import Path

    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder = Path(folder)
    out = {}
    for who, uri, use in (("server", "urn:edgewatch:test:server", ExtendedKeyUsageOID.SERVER_AUTH),
                          ("client", "urn:edgewatch:agent", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key, cert = folder / f"{who}-key.pem", folder / f"{who}-cert.der"
        asyncio.run(setup_self_signed_certificate(key, cert, uri, socket.gethostname(), [use],
                                                  {"commonName": f"edgewatch test {who}"}))
        out[f"{who}_key"], out[f"{who}_cert"] = str(key), str(cert)
    return out

