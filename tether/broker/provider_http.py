"""Outbound HTTPS from the broker to providers' token endpoints (aiohttp).

It honours `upstream_overrides` exactly like the proxy does: an overridden host is connected to at
the override's address while TLS still verifies the original name, against the default CAs plus
the override's extra CA (GitHub Enterprise, mirrors, the sandbox providers in tests).
Network failures and timeouts become retryable `MintError`s (`sent` unless the connection was never
made); provider answers are returned as they
are and turned into errors by `ProviderResponse.fail`, which keeps only the provider's message.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tether.broker.base import MintError
from tether.config import UpstreamOverride, split_host_port

MAX_MESSAGE = 300
USER_AGENT = "tether-broker"


def safe_message(text: str, secrets: Iterable[str] = ()) -> str:
    """A provider's message fit for events and the agent: printable, short, and without any secret
    tether sent (a provider may echo a parameter back)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text[:MAX_MESSAGE] + ("..." if len(text) > MAX_MESSAGE else "")


@dataclass(frozen=True)
class ProviderResponse:
    method: str
    url: str  # without query
    status: int
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def fail(self, what: str, secrets: Iterable[str] = ()) -> MintError:
        """The error for an unexpected answer: the provider's own message, retryable on 5xx and 429
        (a 5xx may come after the provider acted on the request: it is `sent`)."""
        message = safe_message(provider_message(self.json(), self.body), secrets)
        return MintError(
            f"{what}: {self.status} {message}".rstrip(),
            status=self.status,
            retryable=self.status >= 500 or self.status == 429,
            sent=self.status >= 500,
        )


def provider_message(data: Any, body: bytes) -> str:
    """GitHub `message`, OAuth2/Google `error` + `error_description`, Slack `error`; else the body."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # Google APIs: {"error": {"code", "message", "status"}}
            return str(error.get("message", ""))
        parts = [str(data[k]) for k in ("message", "error", "error_description") if data.get(k)]
        if parts:
            return ": ".join(parts)
    return body[:MAX_MESSAGE].decode("utf-8", "replace")


class OverrideResolver(AbstractResolver):
    """Resolves overridden hosts to their override's address, others through DNS."""

    def __init__(self, overrides: Mapping[str, tuple[str, int]]) -> None:
        self._overrides = overrides
        self._dns = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self._overrides.get(host.lower())
        if target is None:
            return await self._dns.resolve(host, port, family)
        address, target_port = target
        results = await self._dns.resolve(address, target_port, family)
        return [{**result, "hostname": host} for result in results]

    async def close(self) -> None:
        await self._dns.close()


class ProviderHTTP:
    """One aiohttp session for every minter (created on first use, inside the running loop)."""

    def __init__(self, overrides: Mapping[str, UpstreamOverride], *, timeout_seconds: float = 5.0) -> None:
        self._overrides = {
            host.lower(): split_host_port(o.address, what="address") for host, o in overrides.items()
        }
        self._ca_files = [o.ca_file for o in overrides.values() if o.ca_file is not None]
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=certifi.where())
        for ca_file in self._ca_files:
            context.load_verify_locations(cafile=str(ca_file))
        return context

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context(), resolver=OverrideResolver(self._overrides), limit=32
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}, trust_env=False
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> ProviderResponse:
        """One request; network errors and timeouts raise a retryable MintError (no secrets in it),
        `sent` unless the connection failed before the request could go out."""
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
        timeout = aiohttp.ClientTimeout(total=timeout_seconds or self._timeout)
        started = time.monotonic()
        try:
            async with self._get_session().request(
                method,
                url,
                headers=headers,
                json=json_body,
                data=form,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return ProviderResponse(method, shown, response.status, body, dict(response.headers))
        except TimeoutError:
            waited = time.monotonic() - started
            message = f"{method} {shown}: no answer within {waited:.1f}s"
            raise MintError(message, retryable=True, sent=True) from None
        except aiohttp.ClientError as exc:
            reason = safe_message(type(exc).__name__ + ": " + str(exc))
            sent = not isinstance(exc, aiohttp.ClientConnectorError)
            raise MintError(f"{method} {shown}: {reason}", retryable=True, sent=sent) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def oauth_token(
    response: ProviderResponse, what: str, secrets: Iterable[str] = ()
) -> tuple[str, float | None]:
    """The access token and its expiry from an RFC 6749 §5.1 token response; §5.2 errors (and any
    other answer) become MintError with the provider's `error` and `error_description`."""
    data = response.json()
    if response.status != 200 or not isinstance(data, dict):
        raise response.fail(what, secrets)
    token, expires_in = data.get("access_token"), data.get("expires_in")
    if not isinstance(token, str) or not token or any(ch in token for ch in "\r\n\0 "):
        raise MintError(f"{what}: the answer holds no usable access_token", status=response.status)
    if isinstance(expires_in, str) and expires_in.isdecimal():  # some providers send a string
        expires_in = int(expires_in)
    return token, time.time() + expires_in if isinstance(expires_in, int) and expires_in > 0 else None
