"""The addon chain, in the order of DESIGN.md's request flow."""

from __future__ import annotations

from tether.proxy.connector import Connector
from tether.proxy.credentials import Credentials
from tether.proxy.drain import Drain
from tether.proxy.gate import Gate
from tether.proxy.gateway import GatewayAuth
from tether.proxy.guard import Guard
from tether.proxy.holder import Holder
from tether.proxy.identity import Identity
from tether.proxy.lifecycle import Lifecycle
from tether.proxy.recorder import Recorder
from tether.proxy.tagging import Tagging


def addon_chain(holder: Holder) -> list[object]:
    return [
        Lifecycle(holder),
        GatewayAuth(holder),
        Identity(holder),
        Drain(holder),
        Guard(holder),
        Credentials(holder),
        Tagging(holder),
        Recorder(holder),
        Gate(),
        Connector(holder),
    ]
