"""Lifecycle addon: builds the sidecar's services from `tether_config`, runs the control API, the policy
watcher, the token sweeper and the SIEM shippers, and closes the ledger on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from tether.config import ConfigError, TetherConfig, load_config
from tether.context import RunContext, RunRegistry
from tether.gateway import Agent, AgentsError
from tether.ledger.checkpoint import Checkpointer
from tether.ledger.signing import SigningKeyError
from tether.ledger.store import LedgerError
from tether.ops.sinkprobe import ShipperProbe
from tether.policy.loader import PolicyError
from tether.policy.reload import ReloadResult
from tether.proxy.anomalies import AnomalyMonitor
from tether.proxy.holder import Holder
from tether.proxy.runtime import Runtime
from tether.sinks.service import Shipping, start_shipping

log = logging.getLogger("tether")

SWEEP_SECONDS = 5.0
BODY_BACKSTOP = "1g"


def mitmproxy_options(config: TetherConfig, runtime: Runtime) -> dict[str, Any]:
    """The mitmproxy settings tether relies on."""
    options: dict[str, Any] = {
        # Connect upstream only after the guard allowed a request (no eager CONNECT to denied hosts).
        "connection_strategy": "lazy",
        # A memory backstop for request and response bodies alike; requests over max_body_bytes are
        # refused by the identity addon with 413 and an event.
        "body_size_limit": BODY_BACKSTOP,
        "tcp_timeout": int(config.upstream_timeout_seconds),
        "stream_large_bodies": None,
    }
    if runtime.upstream_ca_bundle is not None:
        options["ssl_verify_upstream_trusted_ca"] = str(runtime.upstream_ca_bundle)
    return options


class Lifecycle:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        self.tasks: list[asyncio.Task[None]] = []
        self.api: Any = None
        self.monitor: AnomalyMonitor | None = None
        self.shipping: Shipping | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "tether_config", str, "", "Path of tether.yaml (empty: embedded defaults + TETHER_* env)."
        )

    def configure(self, updated: set[str]) -> None:
        if "mode" in updated and any(mode.split(":")[0] != "regular" for mode in ctx.options.mode):
            # Other modes bypass the connector's address pinning or the CONNECT host checks.
            raise exceptions.OptionsError("tether supports only mitmproxy's regular (forward proxy) mode")
        if "ignore_hosts" in updated and ctx.options.ignore_hosts:
            raise exceptions.OptionsError("tether cannot record ignored hosts: leave ignore_hosts empty")
        if "tether_config" not in updated or self.holder.ready:
            return
        path = Path(ctx.options.tether_config) if ctx.options.tether_config else None
        try:
            config = load_config(path)
            runtime = Runtime.build(config)
        except ConfigError as exc:
            raise exceptions.OptionsError("invalid tether config:\n" + "\n".join(exc.lines)) from None
        except PolicyError as exc:
            raise exceptions.OptionsError("invalid policy:\n" + str(exc)) from None
        except LedgerError as exc:
            raise exceptions.OptionsError(f"cannot open the ledger: {exc}") from None
        except AgentsError as exc:
            raise exceptions.OptionsError("invalid agents file:\n" + str(exc)) from None
        except SigningKeyError as exc:
            raise exceptions.OptionsError(f"cannot use the ledger signing key: {exc}") from None
        self.holder.set(runtime)
        ctx.options.update(**mitmproxy_options(config, runtime))

    async def running(self) -> None:
        from tether.api.server import start_api

        rt = self.holder.runtime
        export_ca_cert(rt.config)
        if rt.config.anomalies.enabled:
            self.monitor = AnomalyMonitor(rt)
            self.monitor.start()
        await self._record_start(rt)
        self.api = await start_api(rt)
        self.shipping = start_shipping(rt)
        for shipper in self.shipping.shippers if self.shipping is not None else []:
            rt.ops.add_sink(ShipperProbe(shipper))  # lag, dead letters and "stuck" for /metrics, /readyz
        self._spawn(self._watch_policies(rt))
        if rt.gateway is not None:
            self._spawn(self._watch_agents(rt))
        self._spawn(self._sweep_tokens(rt))
        if rt.checkpointer is not None:
            self._spawn(rt.checkpointer.run())
            rt.ops.checkpoint_age = checkpoint_age(rt.checkpointer)
        if rt.archiver is not None:
            self._spawn(rt.archiver.run())

    async def done(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.api is not None:
            await self.api.cleanup()
        if self.holder.ready:
            await end_all_runs(self.holder.runtime)
            if self.monitor is not None:
                await self.monitor.stop()
            if self.holder.runtime.checkpointer is not None:
                await self.holder.runtime.checkpointer.aclose()  # the final checkpoint covers everything
            if self.shipping is not None:
                await self.shipping.stop()  # after run.ended, so it is shipped too
            await self.holder.runtime.broker.close()
            self.holder.runtime.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(coro))

    async def _record_start(self, rt: Runtime) -> None:
        run = rt.runs.default
        await rt.recorder.record("run.started", run, detail={"origin": run.origin})
        policies = rt.policies.engine.policies
        await rt.recorder.record(
            "policy.loaded",
            run,
            policy_id=",".join(p.id for p in policies.policies) or None,
            detail={"files": [str(f) for f in rt.config.policy_files]},
        )

    async def _watch_policies(self, rt: Runtime) -> None:
        async def on_result(result: ReloadResult) -> None:
            run = rt.runs.current()
            if result.ok:
                ids = ",".join(p.id for p in rt.policies.engine.policies.policies)
                log.info("policy reloaded: %s", ids)
                await _record_quietly(
                    rt, "policy.loaded", run, policy_id=ids or None, detail={"reload": True}
                )
            else:
                log.error(
                    "policy change rejected, keeping the last good policy:\n%s", "\n".join(result.errors)
                )
                await _record_quietly(rt, "policy.rejected", run, detail={"errors": list(result.errors[:50])})

        await rt.policies.watch(rt.config.policy_reload_seconds, on_result)

    async def _watch_agents(self, rt: Runtime) -> None:
        """Gateway mode: the agents file is re-read when its contents change (same poll as policies)."""
        assert rt.gateway is not None
        while True:
            await asyncio.sleep(rt.config.policy_reload_seconds)
            errors = await asyncio.to_thread(rt.gateway.reload)
            if errors == []:
                log.info("agents file reloaded: %d agents", len(rt.gateway.agents))
            elif errors:
                log.error("agents file change rejected, keeping the previous agents:\n%s", "\n".join(errors))

    async def _sweep_tokens(self, rt: Runtime) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            for retired in await rt.broker.sweep():
                agent = rt.agent_by_id(retired.token.key.agent_id)
                run_id = retired.token.key.run_id
                run = rt.runs_for(agent)[0].get(run_id) or RunContext(run_id=run_id, origin="forgotten")
                fields = rt.recorder.retired_fields(retired)
                await _record_quietly(rt, "token.expired", run, agent=agent, **fields)


def checkpoint_age(checkpointer: Checkpointer) -> Callable[[], float | None]:
    """Seconds since this process wrote its last signed checkpoint (None before the first)."""

    def age() -> float | None:
        return None if checkpointer.written_at is None else time.time() - checkpointer.written_at

    return age


def export_ca_cert(config: TetherConfig) -> None:
    """Copy the CA certificate (public; the key stays in the state dir) to `ca_cert_export`, atomically.

    An operator-supplied CA (`mitmproxy-ca.pem`, key + certificate, e.g. from a Secret, so that every
    gateway replica signs with the same CA) comes without the certificate-only file: write it."""
    if not config.ca_cert_path.exists():
        combined = config.state_dir / "mitmproxy-ca.pem"
        cert = x509.load_pem_x509_certificates(combined.read_bytes())[0]
        config.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if config.ca_cert_export is None:
        return
    target = config.ca_cert_export
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(config.ca_cert_path.read_bytes())
    tmp.chmod(0o644)
    tmp.replace(target)
    log.info("CA certificate exported to %s", target)


async def end_all_runs(rt: Runtime) -> None:
    """Shutdown: end every active run of every agent (idempotent)."""
    for agent, registry in rt.all_runs():
        for run in registry.active_runs():
            await end_run(rt, run.run_id, agent)


async def end_run(rt: Runtime, run_id: str, agent: Agent | None = None) -> bool:
    """End a run of `agent` (default: the sidecar's): retire its tokens (token.revoked) and record
    run.ended. False when unknown.

    The run ends in the registry first, so no new call of it gets through while its tokens are
    being revoked."""
    agent = agent or rt.agent
    registry: RunRegistry = rt.runs_for(agent)[0]
    run = registry.get(run_id)
    if run is None:
        return False
    ended = registry.end(run_id) or run
    for retired in await rt.broker.end_run(agent.agent_id, run_id):
        fields = rt.recorder.retired_fields(retired, reason="run_ended")
        await _record_quietly(rt, "token.revoked", ended, agent=agent, **fields)
    if run.active:
        await _record_quietly(rt, "run.ended", ended, agent=agent)
    return True


async def _record_quietly(rt: Runtime, event_type: str, run: Any, **fields: Any) -> None:
    try:
        await rt.recorder.record(event_type, run, **fields)
    except LedgerError as exc:
        log.error("could not record %s: %s", event_type, exc)
