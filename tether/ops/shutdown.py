"""SIGTERM: stop accepting connections, let in-flight calls finish, end the runs, run the final hooks
(checkpoint, sink flush) — all within `shutdown_grace_seconds` — then stop the proxy."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mitmproxy.master import Master

    from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")
POLL_SECONDS = 0.05


async def drain(master: Master, rt: Runtime) -> None:
    from tether.proxy.lifecycle import end_all_runs

    ops = rt.ops
    deadline = time.monotonic() + rt.config.shutdown_grace_seconds
    ops.draining = True
    log.info("shutting down: no new connections; waiting for %d call(s) in flight", len(ops.in_flight))
    master.options.update(server=False)  # closes the listening sockets; open connections go on
    while ops.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
    if ops.in_flight:
        log.warning("shutdown deadline reached with %d call(s) still in flight", len(ops.in_flight))
    await end_all_runs(rt)
    for hook in ops.shutdown_hooks:
        left = max(deadline - time.monotonic(), 0.0)
        try:
            await asyncio.wait_for(hook.run(left), timeout=max(left, 0.1))
        except TimeoutError:
            log.error("shutdown step %s did not finish before the deadline", hook.name)
        except Exception as exc:
            log.error("shutdown step %s failed: %s", hook.name, exc)
    master.shutdown()
