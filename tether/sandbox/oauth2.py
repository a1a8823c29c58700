"""A sandbox OAuth 2.0 authorization server (aiohttp): RFC 6749 client credentials and refresh, RFC 8693
token exchange, RFC 7009 revocation.

Clients authenticate with client_secret_basic or client_secret_post (401 `invalid_client` otherwise).
Scopes must lie within the client's (client credentials), the refresh token's original grant (a
refresh may narrow, never widen: `invalid_scope`) or the subject token's (exchange). Refresh tokens
rotate: each refresh spends the presented one and answers with a new one. Access tokens are handed
to a resource server through `issue` (it decides what they open) and revoked through `revoke`;
`/revoke` answers 200 for unknown tokens too, as RFC 7009 §2.2 says.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web

from tether.broker.base import hashed_token
from tether.sandbox.auth import SandboxToken, TokenRegistry, parse_authorization
from tether.sandbox.recording import RecordedRequest, recording_middleware

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
LIFETIME_SECONDS = 3600

# issue(client_id, grant, scopes, lifetime) -> access token; revoke(access token)
Issue = Callable[[str, str, tuple[str, ...], int], str]
Revoke = Callable[[str], None]


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    secret: str = field(repr=False)
    scopes: frozenset[str]


@dataclass(frozen=True)
class TokenRecord:
    """One access token the server issued: by which grant, with which scopes, on which parameters."""

    client_id: str
    grant: str
    scopes: tuple[str, ...]
    audience: str | None
    resource: str | None


class OAuth2Sandbox:
    def __init__(self, clients: Iterable[OAuthClient], issue: Issue, revoke: Revoke) -> None:
        self.clients = {c.client_id: c for c in clients}
        self._issue = issue
        self._revoke = revoke
        self.tokens = TokenRegistry()  # refresh and subject tokens, so recordings redact them
        self.issued: list[TokenRecord] = []
        self.revoked: list[str] = []  # hashed_token form (base64 SHA-256) of tokens revoked through /revoke
        self.requests: list[RecordedRequest] = []
        self._refresh: dict[str, tuple[str, frozenset[str]]] = {}  # refresh token -> (client, grant)
        self._subjects: dict[str, frozenset[str]] = {}  # subject token -> its scopes
        self.app = web.Application(
            middlewares=[recording_middleware(self.tokens, self.requests, keep_body=False)]
        )
        self.app.router.add_post("/oauth/token", self._token)
        self.app.router.add_post("/oauth/revoke", self._revoke_endpoint)

    def new_refresh_token(self, client_id: str, scopes: Iterable[str]) -> str:
        token = f"rt-{secrets.token_urlsafe(24)}"
        self._refresh[token] = (client_id, frozenset(scopes))
        self.tokens.add(SandboxToken(f"refresh-{len(self._refresh)}", token, {}))
        return token

    def new_subject_token(self, scopes: Iterable[str]) -> str:
        token = f"st-{secrets.token_urlsafe(24)}"
        self._subjects[token] = frozenset(scopes)
        self.tokens.add(SandboxToken(f"subject-{len(self._subjects)}", token, {}))
        return token

    def _client(self, request: web.Request, form: Mapping[str, str]) -> OAuthClient | None:
        credential = parse_authorization(request.headers.get("Authorization"))
        if credential is not None and credential.scheme.lower() == "basic":
            client_id, secret = unquote(credential.username or ""), unquote(credential.secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(secret, client.secret):
            return None
        return client

    async def _token(self, request: web.Request) -> web.StreamResponse:
        posted = await request.post()
        form = {k: v for k, v in posted.items() if isinstance(v, str)}
        client = self._client(request, form)
        if client is None:
            return _error("invalid_client", "Client authentication failed.", 401)
        asked = frozenset(form.get("scope", "").split())
        grant = form.get("grant_type")
        body: dict[str, object] = {}
        if grant == "client_credentials":
            allowed = client.scopes
            scopes = asked or allowed
        elif grant == "refresh_token":
            presented = form.get("refresh_token", "")
            held = self._refresh.get(presented)
            if held is None or held[0] != client.client_id:
                return _error("invalid_grant", "The refresh token is invalid, expired or revoked.")
            allowed = held[1]
            scopes = asked or allowed
            if scopes <= allowed:  # rotation: the presented token is spent, a new one replaces it
                del self._refresh[presented]
                body["refresh_token"] = self.new_refresh_token(client.client_id, allowed)
        elif grant == TOKEN_EXCHANGE:
            if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
                return _error("invalid_request", "Unsupported subject_token_type.")
            subject = self._subjects.get(form.get("subject_token", ""))
            if subject is None:
                return _error("invalid_grant", "The subject token is invalid.")
            allowed = subject
            scopes = asked or allowed
            body["issued_token_type"] = ACCESS_TOKEN_TYPE
        else:
            return _error("unsupported_grant_type", f"Grant type {grant!r} is not supported.")
        if not scopes <= allowed:
            return _error("invalid_scope", "The requested scope exceeds the scope granted.")
        ordered = tuple(sorted(scopes))
        access = self._issue(client.client_id, grant, ordered, LIFETIME_SECONDS)
        self.issued.append(
            TokenRecord(client.client_id, grant, ordered, form.get("audience"), form.get("resource"))
        )
        body.update(
            access_token=access, token_type="Bearer", expires_in=LIFETIME_SECONDS, scope=" ".join(ordered)
        )
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _revoke_endpoint(self, request: web.Request) -> web.StreamResponse:
        posted = await request.post()
        form = {k: v for k, v in posted.items() if isinstance(v, str)}
        if self._client(request, form) is None:
            return _error("invalid_client", "Client authentication failed.", 401)
        token = form.get("token")
        if not token:
            return _error("invalid_request", "The token parameter is required.")
        self._revoke(token)
        self.revoked.append(hashed_token(token))
        return web.Response(status=200)


def _error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
