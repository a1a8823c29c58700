"""Connector addon: where tether connects upstream.

Overridden hosts go to their configured address (like curl --resolve; TLS still verifies the original
name). Every other host is pinned to the address the guard vetted, so DNS rebinding between the policy
check and the connect cannot reach an internal address.

mitmproxy reuses an open upstream connection for a request whose (host, port) equals the connection's
address, so once connected the address is labelled with the requested host again: keep-alive works
and a connection is only ever reused for the host it was verified for."""

from __future__ import annotations

from mitmproxy import connection
from mitmproxy.proxy import server_hooks

from tether.config import split_host_port
from tether.proxy.holder import Holder
from tether.proxy.runtime import Runtime


def upstream_address(rt: Runtime, host: str, port: int) -> tuple[str, int] | None:
    """Where a call to host:port connects: its override's address, else the address the guard vetted
    (None when the guard vetted none)."""
    override = rt.config.upstream_overrides.get(host.lower())
    if override is not None:
        return split_host_port(override.address, what="address")
    vetted = rt.resolver.vetted(host.lower(), port)
    return (str(vetted[0]), port) if vetted else None


class Connector:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        self.requested: dict[str, tuple[str, int]] = {}  # server connection id -> requested address

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server: connection.Server = data.server
        if server.address is None or server.via is not None:
            return
        rt = self.holder.runtime
        host, port = server.address
        if server.tls:
            # Verify the upstream as the host the policy decided on, never a name the agent chose
            # in its own TLS ClientHello.
            server.sni = host
        address = upstream_address(rt, host, port)
        if address is None:
            server.error = f"tether: {host} was not vetted by the policy guard"
            return
        self.requested[server.id] = server.address
        server.address = address

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        requested = self.requested.pop(data.server.id, None)
        if requested is not None:
            # Server refuses a plain assignment once open; the socket's peer stays in `peername`.
            object.__setattr__(data.server, "address", requested)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.requested.pop(data.server.id, None)
