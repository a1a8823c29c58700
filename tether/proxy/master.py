"""`tether run`: an embedded mitmproxy master with tether's addon chain and no flow storage."""

from __future__ import annotations

import asyncio
import logging
import signal

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster

from tether.config import TetherConfig
from tether.proxy.chain import addon_chain
from tether.proxy.holder import Holder
from tether.proxy.lifecycle import mitmproxy_options
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")


def ca_cert_path(config: TetherConfig) -> str:
    """The CA certificate agents must trust (mitmproxy creates it in the state dir on first start)."""
    return str(config.state_dir / "mitmproxy-ca-cert.pem")


async def serve(runtime: Runtime, *, ready: asyncio.Event | None = None) -> None:
    """Run the proxy until SIGINT/SIGTERM (or cancellation)."""
    config = runtime.config
    host, port = config.proxy_address
    opts = options.Options(listen_host=host, listen_port=port, confdir=str(config.state_dir))
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    master.addons.add(*addon_chain(Holder(runtime)))
    opts.update(**mitmproxy_options(config, runtime))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    task = asyncio.create_task(master.run())
    if ready is not None:
        ready.set()
    await task
