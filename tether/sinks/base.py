"""What every sink implements, and the HTTP plumbing the HTTP sinks share.

A sink turns one event into one record (`encode`) and sends a list of records in one request
(`send`), answering with an `Outcome`: delivered; retry later (network trouble, throttling, a
receiver error, and also auth or configuration errors that only an operator can fix — nothing is
dropped while they are fixed); or rejected for good because of the data (the shipper then bisects
the batch down to the offending event and parks it as a dead letter).
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tether.sinks.config import HttpSinkConfig, SinkConfigBase
from tether.sinks.ocsf import renderer

OutcomeKind = Literal["ok", "retry", "reject"]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait
    index: int | None = None  # the rejected record, when the receiver names it

    @classmethod
    def ok(cls) -> Outcome:
        return cls("ok")

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> Outcome:
        return cls("retry", reason, retry_after)

    @classmethod
    def reject(cls, reason: str, index: int | None = None) -> Outcome:
        return cls("reject", reason, index=index)


class Sink(ABC):
    """One destination. `send` must not raise for receiver answers; exceptions count as retryable."""

    config: SinkConfigBase
    # Hard limits of the protocol (None: only the configured batch limits apply).
    max_records: int | None = None
    max_request_bytes: int | None = None
    max_record_bytes: int | None = None

    def __init__(self, config: SinkConfigBase) -> None:
        self.config = config
        self.render = renderer(config.format)

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Open connections; a health check that fails is logged, never fatal (the SIEM may be down)."""

    @abstractmethod
    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        """One ledger event as the record this sink sends; `raw` is the event's stored JSON text."""

    def payload_json(self, event: dict[str, Any], raw: str | None) -> str:
        """The event in the sink's format as JSON text (the stored text itself for the native format)."""
        if raw is not None and self.config.format == "native":
            return raw
        return json.dumps(self.render(event), separators=(",", ":"), ensure_ascii=False)

    @abstractmethod
    async def send(self, records: list[bytes]) -> Outcome: ...

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _OverrideResolver(AbstractResolver):
    """Resolves one host name to a fixed HOST:PORT (like curl --resolve); TLS still verifies the name."""

    def __init__(self, hostname: str, address: tuple[str, int]) -> None:
        self._hostname = hostname.lower()
        self._address = address
        self._default = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower() != self._hostname:
            return await self._default.resolve(host, port, family)
        target, target_port = self._address
        found = await self._default.resolve(target, target_port, socket.AF_UNSPEC)
        return [ResolveResult(**{**entry, "hostname": host}) for entry in found]  # type: ignore[typeddict-item]

    async def close(self) -> None:
        await self._default.close()


@dataclass(frozen=True)
class Route:
    """Where an HTTP sink connects and which extra CA it trusts."""

    address: tuple[str, int] | None
    ca_file: Path | None


def route_for(config: HttpSinkConfig, url: str, upstream_overrides: Mapping[str, Any]) -> Route:
    """The sink's own `address`/`ca_file`, else tether's `upstream_overrides` entry for the URL's host."""
    from tether.config import split_host_port

    host = (urlsplit(url).hostname or "").lower()
    override = upstream_overrides.get(host)
    address = config.address or (override.address if override is not None else None)
    ca_file = config.ca_file or (override.ca_file if override is not None else None)
    return Route(split_host_port(address, what="address") if address else None, ca_file)


class HttpSink(Sink):
    """A sink that POSTs batches with aiohttp (keep-alive, gzip, TLS verified against the URL's name)."""

    config: HttpSinkConfig

    def __init__(self, config: HttpSinkConfig, url: str, upstream_overrides: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.url = url
        self.route = route_for(config, url, upstream_overrides)
        self._session: aiohttp.ClientSession | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.route.ca_file is not None:
            context.load_verify_locations(cafile=str(self.route.ca_file))
        return context

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None
            if self.route.address is not None:
                resolver = _OverrideResolver(urlsplit(self.url).hostname or "", self.route.address)
            connector = aiohttp.TCPConnector(ssl=self._ssl_context(), resolver=resolver, limit=4)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                trust_env=False,  # a SIEM is reached directly, never through the agent's proxy
                auto_decompress=True,
            )
        return self._session

    async def body(self, payload: bytes) -> tuple[bytes, dict[str, str]]:
        if self.config.gzip:
            # Compressing a batch of up to 5 MB takes tens of ms: off the event loop the proxy shares.
            compressed = await asyncio.to_thread(gzip.compress, payload, compresslevel=5)
            return compressed, {"Content-Encoding": "gzip"}
        return payload, {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def http_status_outcome(status: int, text: str, retry_after: str | None, *, what: str) -> Outcome:
    """The common HTTP classification: 408/429/5xx retry; 401/403 retry (an operator must fix the key;
    nothing is parked meanwhile); 400/413/422 reject (bisected to the offending event)."""
    reason = f"{what} answered HTTP {status}: {text[:200]}"
    if status in (408, 429) or status >= 500:
        return Outcome.retry(reason, parse_retry_after(retry_after))
    if status in (400, 413, 422):
        return Outcome.reject(reason)
    return Outcome.retry(reason + " (fix the sink's key or settings; events wait, none is dropped)")
