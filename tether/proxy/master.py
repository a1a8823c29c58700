"""`tether run`: an embedded mitmproxy master with tether's addon chain and no flow storage."""

from __future__ import annotations

import asyncio
import logging
import signal

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster

from tether.ops.shutdown import drain
from tether.proxy.chain import addon_chain
from tether.proxy.holder import Holder
from tether.proxy.lifecycle import mitmproxy_options
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")


async def serve(runtime: Runtime) -> None:
    """Run the proxy until SIGINT/SIGTERM (or cancellation)."""
    config = runtime.config
    host, port = config.proxy_address
    opts = options.Options(listen_host=host, listen_port=port, confdir=str(config.state_dir))
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    master.addons.add(*addon_chain(Holder(runtime)))
    opts.update(**mitmproxy_options(config, runtime))
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if draining:  # a second signal: stop now
            master.shutdown()
            return
        draining.append(loop.create_task(drain(master, runtime)))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await master.run()
