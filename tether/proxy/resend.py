"""Sends a brokered call upstream once more, outside mitmproxy's connection, for the re-mint after a 401.

It connects where the connector would (the override's address or the address the guard vetted; TLS
verifies the requested host name against the same CAs as mitmproxy's upstream connections), sends the
request as it stands (fresh token injected, tags added) and returns the provider's answer unchanged:
status, headers (hop-by-hop ones dropped) and the body as sent, still content-encoded.
"""

from __future__ import annotations

import functools
import ssl

import aiohttp
import certifi
from mitmproxy import http

from tether.broker.provider_http import OverrideResolver
from tether.proxy.connector import upstream_address
from tether.proxy.runtime import Runtime

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)


class ResendError(Exception):
    """The call could not be sent again; the message holds no secret."""


@functools.lru_cache(maxsize=4)
def ssl_context(cafile: str) -> ssl.SSLContext:
    """Built once per CA bundle: loading one blocks the event loop for milliseconds."""
    return ssl.create_default_context(cafile=cafile)


async def resend(rt: Runtime, request: http.Request) -> http.Response:
    address = upstream_address(rt, request.host, request.port)
    if address is None:
        raise ResendError(f"{request.host} was not vetted by the policy guard")
    connector = aiohttp.TCPConnector(
        ssl=ssl_context(str(rt.upstream_ca_bundle or certifi.where())),
        resolver=OverrideResolver({request.host.lower(): address}),
        force_close=True,
    )
    headers = [(k, v) for k, v in request.headers.items(multi=True) if k.lower() not in _HOP_BY_HOP]
    timeout = aiohttp.ClientTimeout(total=rt.config.upstream_timeout_seconds)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            ) as session,
            session.request(
                request.method,
                request.url,
                headers=headers,
                data=request.raw_content or None,
                allow_redirects=False,
                timeout=timeout,
            ) as answer,
        ):
            body = await answer.read()
            kept = [(k, v) for k, v in answer.raw_headers if k.decode("latin-1").lower() not in _HOP_BY_HOP]
            status = answer.status
    except TimeoutError:
        raise ResendError(f"no answer within {rt.config.upstream_timeout_seconds:g}s") from None
    except aiohttp.ClientError as exc:
        raise ResendError(f"{type(exc).__name__}: {exc}") from None
    response = http.Response.make(status, b"", [(k, v) for k, v in kept if k.lower() != b"content-length"])
    response.raw_content = body
    response.headers["content-length"] = str(len(body))
    return response
