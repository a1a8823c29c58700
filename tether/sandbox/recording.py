"""Records what a sandbox provider received, so tests can check what the proxy forwarded.

A recording never holds a token value: `Authorization` is replaced by a marker naming the known
token it carried (`Bearer <token:ci-bot>`), any known secret elsewhere is replaced the same way,
and cookies are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict, CIMultiDictProxy

from tether.sandbox.auth import UNKNOWN_CREDENTIAL_MARKER, TokenRegistry, parse_authorization, token_marker
from tether.sandbox.pki import requested_server_name

_DROPPED = "<redacted>"
_DROPPED_HEADERS = frozenset({"cookie", "proxy-authorization"})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, without the query string
    query_string: str  # as sent (percent-encoded)
    headers: CIMultiDictProxy[str]  # redacted; case-insensitive lookups
    token_name: str | None  # the known token the Authorization header carried, if any
    server_name: str | None  # the TLS SNI the client sent
    body: bytes | None  # None where the provider streams bodies instead of keeping them (git)


def _redacted_authorization(value: str, registry: TokenRegistry) -> str:
    credential = parse_authorization(value)
    token = registry.lookup(credential)
    if credential is None:
        return UNKNOWN_CREDENTIAL_MARKER
    marker = token_marker(token.name) if token else UNKNOWN_CREDENTIAL_MARKER
    user = f"{credential.username}:" if credential.username is not None else ""
    return f"{credential.scheme} {user}{marker}"


def _redacted_headers(request: web.Request, registry: TokenRegistry) -> CIMultiDictProxy[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() == "authorization":
            headers.add(name, _redacted_authorization(value, registry))
        elif name.lower() in _DROPPED_HEADERS:
            headers.add(name, _DROPPED)
        else:
            headers.add(name, registry.redact(value))
    return CIMultiDictProxy(headers)


def recording_middleware(
    registry: TokenRegistry, into: list[RecordedRequest], *, keep_body: bool
) -> Middleware:
    """An aiohttp middleware appending a `RecordedRequest` to `into` before the handler runs."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        # read() caches the body, so the handler can still read it.
        body = registry.redact_bytes(await request.read()) if keep_body else None
        token = registry.lookup(parse_authorization(request.headers.get("Authorization")))
        path, _, query_string = request.raw_path.partition("?")
        into.append(
            RecordedRequest(
                method=request.method,
                path=registry.redact(path),
                query_string=registry.redact(query_string),
                headers=_redacted_headers(request, registry),
                token_name=token.name if token else None,
                server_name=requested_server_name(request.transport.get_extra_info("ssl_object"))
                if request.transport
                else None,
                body=body,
            )
        )
        return await handler(request)

    return record
