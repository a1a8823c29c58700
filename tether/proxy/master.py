"""`tether run`: an embedded mitmproxy master with tether's addon chain and no flow storage."""

from __future__ import annotations

import asyncio
import logging
import signal

from mitmproxy import options
from mitmproxy.addons import block, core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from tether.ops.shutdown import drain
from tether.proxy.chain import addon_chain
from tether.proxy.holder import Holder
from tether.proxy.lifecycle import mitmproxy_options
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")


class TetherMaster(Master):
    """mitmproxy's master with only the stock addons a forward proxy needs, then tether's chain.

    mitmdump loads ~35 stock addons (playback, map/modify rules, onboarding at mitm.it, scripts, HAR
    export, ...) and every hook of every flow is dispatched to each of them: that dispatch was the
    largest single cost on tether's request path. Left out are the features tether does not offer;
    kept are the core option checks, `block_global` (no open proxy for public clients), h2c
    refusal, the proxy server, protocol detection, TLS interception and start-up error reporting."""

    def __init__(self, opts: options.Options) -> None:
        super().__init__(opts, with_termlog=False)
        self.addons.add(
            core.Core(),
            block.Block(),
            disable_h2c.DisableH2C(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            errorcheck.ErrorCheck(),
        )


async def serve(runtime: Runtime) -> None:
    """Run the proxy until SIGINT/SIGTERM (or cancellation)."""
    config = runtime.config
    host, port = config.proxy_address
    opts = options.Options(listen_host=host, listen_port=port, confdir=str(config.state_dir))
    master = TetherMaster(opts)
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
