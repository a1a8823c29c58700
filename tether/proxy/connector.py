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
        override = rt.config.upstream_overrides.get(host.lower())
        if override is not None:
            self.requested[server.id] = server.address
            server.address = split_host_port(override.address, what="address")
            return
        vetted = rt.resolver.vetted(host.lower(), port)
        if not vetted:
            server.error = f"tether: {host} was not vetted by the policy guard"
            return
        self.requested[server.id] = server.address
        server.address = (str(vetted[0]), port)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        requested = self.requested.pop(data.server.id, None)
        if requested is not None:
            # Server refuses a plain assignment once open; the socket's peer stays in `peername`.
            object.__setattr__(data.server, "address", requested)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.requested.pop(data.server.id, None)
