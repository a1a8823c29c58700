"""Builds the configured sinks and runs one shipper task per sink next to the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.ledger.store import LedgerError
from tether.sinks.base import Sink
from tether.sinks.config import DatadogSink, FileSink, OtlpSink, SinkConfig, SplunkHecSink, SyslogSink
from tether.sinks.shipper import Shipper
from tether.sinks.state import SinkState

if TYPE_CHECKING:
    from tether.proxy.runtime import Runtime

log = logging.getLogger("tether.sinks")


class SinkSetupError(Exception):
    """A sink cannot be built (its secret cannot be read); the message never holds a secret."""


def _secret(config: SplunkHecSink | DatadogSink | OtlpSink) -> str | None:
    try:
        return config.read_secret()
    except (OSError, KeyError, UnicodeDecodeError) as exc:
        source = config.secret_file or f"${config.secret_env}"
        raise SinkSetupError(
            f"sink {config.name}: cannot read its secret from {source}: {type(exc).__name__}"
        ) from None


def build_sink(config: SinkConfig, upstream_overrides: Mapping[str, Any]) -> Sink:
    if isinstance(config, SplunkHecSink):
        from tether.sinks.splunk_hec import SplunkHec

        return SplunkHec(config, _secret(config) or "", upstream_overrides)
    if isinstance(config, DatadogSink):
        from tether.sinks.datadog import Datadog

        return Datadog(config, _secret(config) or "", upstream_overrides)
    if isinstance(config, OtlpSink):
        from tether.sinks.otlp import Otlp

        return Otlp(config, _secret(config), upstream_overrides)
    if isinstance(config, SyslogSink):
        from tether.sinks.syslog import Syslog

        return Syslog(config)
    if isinstance(config, FileSink):
        from tether.sinks.file import JsonLines

        return JsonLines(config)
    raise SinkSetupError(f"unknown sink type {type(config).__name__}")


class Shipping:
    """One shipper task per sink, each with its own state connection."""

    def __init__(self, ledger_path: Path, sinks: list[Sink]) -> None:
        self.shippers = [Shipper(sink, SinkState(ledger_path)) for sink in sinks]
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        for shipper in self.shippers:
            self._tasks[shipper.name] = asyncio.create_task(
                self._run(shipper), name=f"tether-sink-{shipper.name}"
            )
        if self.shippers:
            log.info("shipping events to %s", ", ".join(s.name for s in self.shippers))

    async def _run(self, shipper: Shipper) -> None:
        while True:
            try:
                await shipper.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an unreadable ledger must not end shipping for good
                if shipper.stopping:
                    return
                log.error(
                    "sink %s: shipper failed (%s: %s); restarting in 5s",
                    shipper.name,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(5)

    async def stop(self) -> None:
        """Flush every sink within its `shutdown_flush_seconds`; what is unconfirmed then is resent at the
        next start (the cursors only cover confirmed events)."""
        now = time.monotonic()
        for shipper in self.shippers:
            shipper.stop(now + shipper.sink.config.shutdown_flush_seconds)
        for shipper in self.shippers:
            task = self._tasks.get(shipper.name)
            if task is not None:
                timeout = max(0.0, now + shipper.sink.config.shutdown_flush_seconds - time.monotonic())
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout)
                except TimeoutError:
                    lag = shipper.state.last_seq() - shipper.state.cursor(shipper.name)
                    log.warning(
                        "sink %s: %d event(s) not confirmed at shutdown; sent at next start",
                        shipper.name,
                        lag,
                    )
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                except Exception as exc:
                    log.error("sink %s: %s", shipper.name, exc)
            await shipper.sink.close()
            shipper.close()
            shipper.state.close()


def start_shipping(runtime: Runtime) -> Shipping | None:
    """Start shipping for the sidecar's `runtime`; None without sinks. A sink that cannot be built is
    logged and left out: the proxy keeps recording, and `tether sinks status` shows the sink's lag."""
    config = runtime.config
    sinks: list[Sink] = []
    for sink_config in config.sinks:
        try:
            sinks.append(build_sink(sink_config, config.upstream_overrides))
        except SinkSetupError as exc:
            log.error("%s; it ships nothing until fixed", exc)
    if not sinks:
        return None
    try:
        shipping = Shipping(runtime.ledger.path, sinks)
    except LedgerError as exc:
        log.error("SIEM shipping cannot start: %s", exc)
        return None
    shipping.start()
    return shipping
