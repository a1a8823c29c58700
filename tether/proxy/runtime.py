"""The sidecar's shared services, built once from the config and used by every addon and the API.

Addons stay thin: they read and write `flow.metadata` and call into these plain-Python services.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi

from tether.broker.base import Broker, IssuedToken, Retired
from tether.broker.registry import build_broker
from tether.catalog import Catalog, load_catalog
from tether.config import TetherConfig
from tether.context import RunContext, RunRegistry
from tether.ledger.archive import Archiver, S3Archive
from tether.ledger.checkpoint import Checkpointer, CheckpointSchedule, KeySource, Witness
from tether.ledger.events import new_event
from tether.ledger.repair import recover
from tether.ledger.store import Ledger
from tether.policy.reload import PolicyStore

log = logging.getLogger("tether")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Recorder:
    """Builds events with the sidecar's attribution fields and appends them durably."""

    def __init__(self, ledger: Ledger, config: TetherConfig) -> None:
        self.ledger = ledger
        self.agent_id = config.effective_agent_id
        self.agent_name = config.agent_name
        # Called with each event once it is durable (e.g. the anomaly monitor); must only queue.
        self.observers: list[Callable[[dict[str, Any]], None]] = []

    def event(self, event_type: str, run: RunContext | None, **fields: Any) -> dict[str, Any]:
        if run is not None:
            fields.setdefault("run_id", run.run_id)
            fields.setdefault("task_context", run.task_context)
            fields.setdefault("triggered_by", run.triggered_by)
        return new_event(event_type, agent_id=self.agent_id, agent_name=self.agent_name, **fields)

    async def write(self, event: dict[str, Any]) -> dict[str, Any]:
        """Durable when it returns; raises LedgerError when the ledger cannot record."""
        stored = await self.ledger.append(event)
        for observer in self.observers:
            observer(stored)
        return stored

    async def record(self, event_type: str, run: RunContext | None, **fields: Any) -> dict[str, Any]:
        return await self.write(self.event(event_type, run, **fields))

    def token_fields(self, token: IssuedToken, **detail: Any) -> dict[str, Any]:
        """The fields every token.* event carries: the token, its grant, why and where it came from."""
        origin = token.origin
        requested = origin.scope_requested if origin.scope_requested is not None else token.key.scopes
        return {
            "provider": token.key.provider,
            "token_id": token.token_id,
            "token_sha256": token.token_sha256,
            "scope_requested": list(requested),
            "scope_granted": list(token.key.scopes),
            "scope_downscoped": origin.downscoped,
            "ttl_seconds": token.ttl_seconds,
            "policy_id": origin.policy_id,
            "source_ip": origin.source_ip,
            "detail": {
                "credential": token.secret.source,
                "credential_name": token.key.credential,
                "minted": token.secret.minted,
                **detail,
            },
        }

    def retired_fields(self, retired: Retired, **detail: Any) -> dict[str, Any]:
        """token_fields of a retired token plus how its revocation went: `provider` (the provider
        revoked it), `failed` (with the provider's error) or `local` (nothing to revoke there: a static
        secret outlives the run; Slack tokens expire on Slack's schedule)."""
        if retired.revoke_error is not None:
            return self.token_fields(
                retired.token, revocation="failed", revoke_error=retired.revoke_error, **detail
            )
        revocation = "provider" if retired.at_provider else "local"
        return self.token_fields(retired.token, revocation=revocation, **detail)


class Resolver:
    """DNS with a short cache. The guard vets what `resolve` returns and records it with `vet`; the
    connector connects only to vetted addresses, so a later answer (DNS rebinding) that the guard
    refused can never be connected to, even by a call that was vetted earlier."""

    TTL_SECONDS = 30.0
    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}
        self._vetted: dict[tuple[str, int], list[IPAddress]] = {}

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        self._cache[(host, port)] = (now + self.TTL_SECONDS, addresses)
        return addresses

    def vet(self, host: str, port: int, addresses: list[IPAddress]) -> None:
        """Remember addresses the guard allowed for host; only these are ever connected to."""
        if len(self._vetted) >= self.MAX_ENTRIES:
            self._vetted.clear()
        self._vetted[(host, port)] = addresses

    def vetted(self, host: str, port: int) -> list[IPAddress]:
        """The addresses last vetted for host (IP literals as themselves); [] if none."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            return self._vetted.get((host, port), [])


@dataclass
class Runtime:
    config: TetherConfig
    catalog: Catalog
    ledger: Ledger
    recorder: Recorder
    policies: PolicyStore
    broker: Broker
    runs: RunRegistry
    resolver: Resolver
    upstream_ca_bundle: Path | None
    checkpointer: Checkpointer | None = None
    archiver: Archiver | None = None

    @classmethod
    def build(cls, config: TetherConfig, environ: Mapping[str, str] | None = None) -> Runtime:
        """Open the ledger, load the policies and credentials. Raises on anything unusable."""
        environ = os.environ if environ is None else environ
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        catalog = load_catalog()
        recover(config.effective_ledger_path)
        ledger = Ledger(config.effective_ledger_path)
        try:
            checkpointer = build_checkpointer(config, ledger)
            archiver = build_archiver(config, ledger, checkpointer.keys)
            policies = PolicyStore(list(config.policy_files), catalog)
        except BaseException:
            ledger.close()
            raise
        return cls(
            config=config,
            catalog=catalog,
            ledger=ledger,
            recorder=Recorder(ledger, config),
            policies=policies,
            broker=build_broker(config.credentials, config.upstream_overrides),
            runs=RunRegistry(environ),
            resolver=Resolver(),
            upstream_ca_bundle=write_upstream_ca_bundle(config),
            checkpointer=checkpointer,
            archiver=archiver,
        )

    def close(self) -> None:
        self.ledger.close()


def build_checkpointer(config: TetherConfig, ledger: Ledger) -> Checkpointer:
    """The ledger's checkpointer: its signing key (created on first start unless a key file is configured,
    SigningKeyError if unusable) and its witnesses."""
    from tether.ledger.witness import FileWitness, UrlWitness

    settings = config.ledger
    keys = KeySource(
        settings.signing_key_path(config.state_dir), ledger.chain_id, create=settings.signing_key_file is None
    )
    witnesses: list[Witness] = []
    if settings.witness_file is not None:
        witnesses.append(FileWitness(settings.witness_file))
    if settings.witness_url is not None:
        witnesses.append(UrlWitness(settings.witness_url))
    schedule = CheckpointSchedule(
        every_events=settings.checkpoint_every_events,
        every_seconds=settings.checkpoint_every_seconds,
        idle_seconds=settings.checkpoint_idle_seconds,
    )
    return Checkpointer(ledger, keys, schedule, witnesses)


def build_archiver(config: TetherConfig, ledger: Ledger, keys: KeySource) -> Archiver | None:
    settings = config.ledger.archive
    if settings is None:
        return None
    archive = S3Archive(
        settings.url, ledger.chain_id, endpoint_url=settings.endpoint_url, region=settings.region
    )
    return Archiver(ledger, archive, keys, settings, sinks=[sink.name for sink in config.sinks])


def write_upstream_ca_bundle(config: TetherConfig) -> Path | None:
    """mitmproxy's default CAs (certifi) plus each override's extra CA, for verifying upstream servers.
    None when no override adds a CA: mitmproxy's default applies."""
    extra = [o.ca_file for o in config.upstream_overrides.values() if o.ca_file is not None]
    if not extra:
        return None
    parts = [Path(certifi.where()).read_text()] + [Path(ca).read_text() for ca in extra]
    bundle = config.state_dir / "upstream-ca-bundle.pem"
    bundle.write_text("\n".join(parts))
    return bundle
