"""Sandbox Google endpoints (aiohttp): the OAuth token endpoint, IAM Credentials and a Drive API.

One app serves the hosts `oauth2.googleapis.com` (`POST /token`), `iamcredentials.googleapis.com`
(`generateAccessToken`) and `www.googleapis.com` (`GET /drive/v3/files`); tether reaches them through
upstream overrides. The token endpoint verifies the JWT bearer assertion like Google: the signature
against the service account's public key (found by `kid`, else by `iss`), `aud` = the token URI,
`iat`/`exp` within an hour of each other and of now (clock skew tolerated), a non-empty `scope`,
and `sub` only for accounts with domain-wide delegation. Issued tokens carry exactly the asserted
scopes; the Drive API accepts a live token holding drive or drive.readonly.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tether.broker.jwt import JWTError, decode_rs256
from tether.sandbox.auth import Credential, SandboxToken, TokenRegistry, parse_authorization
from tether.sandbox.recording import RecordedRequest, recording_middleware

TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
DRIVE_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/drive.readonly"}
)
MAX_LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300
HOSTS = ("oauth2.googleapis.com", "iamcredentials.googleapis.com", "www.googleapis.com")


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    key_id: str
    public_key: rsa.RSAPublicKey
    delegation: bool = False  # domain-wide delegation: may assert `sub`
    may_impersonate: frozenset[str] = frozenset()  # accounts it holds Service Account Token Creator on


@dataclass(frozen=True)
class GrantRecord:
    """One token the sandbox issued: to whom, how, with which scopes and lifetime."""

    name: str
    account: str
    via: str  # "jwt-bearer" or "generateAccessToken"
    scopes: tuple[str, ...]
    subject: str | None
    lifetime: int


@dataclass
class GoogleSandbox:
    accounts: list[ServiceAccount]
    grants: list[GrantRecord] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    tokens: TokenRegistry = field(default_factory=TokenRegistry)

    def __post_init__(self) -> None:
        self._scopes: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # token name -> (account, via, scopes)
        self.app = web.Application(
            middlewares=[recording_middleware(self.tokens, self.requests, keep_body=False)]
        )
        self.app.router.add_post("/token", self._token)
        self.app.router.add_post(
            "/v1/projects/-/serviceAccounts/{account}:generateAccessToken", self._generate_access_token
        )
        self.app.router.add_get("/drive/v3/files", self._drive_files)

    def issue(self, account: str, via: str, scopes: Iterable[str], subject: str | None, lifetime: int) -> str:
        """A new access token the Drive API accepts (the sandbox OAuth2 server issues through this too)."""
        name = f"google-{len(self.grants) + 1}"
        secret = f"ya29.sandbox-{secrets.token_urlsafe(32)}"
        self.tokens.add(SandboxToken(name, secret, {}, expires_at=time.time() + lifetime))
        scoped = tuple(sorted(scopes))
        self._scopes[name] = (account, via, scoped)
        self.grants.append(GrantRecord(name, account, via, scoped, subject, lifetime))
        return secret

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        if not isinstance(assertion, str):
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        checked = self._verify(assertion)
        if isinstance(checked, web.Response):
            return checked
        account, claims = checked
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.strip():
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        subject = claims.get("sub")
        if subject is not None and not account.delegation:
            return _oauth_error(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not "
                "authorized for any of the scopes requested.",
            )
        secret = self.issue(
            account.email,
            "jwt-bearer",
            scope.split(),
            subject if isinstance(subject, str) else None,
            MAX_LIFETIME_SECONDS,
        )
        return web.json_response(
            {"access_token": secret, "expires_in": MAX_LIFETIME_SECONDS - 1, "token_type": "Bearer"}
        )

    def _verify(self, assertion: str) -> tuple[ServiceAccount, Mapping[str, Any]] | web.Response:
        for account in self.accounts:
            try:
                header, claims = decode_rs256(assertion, account.public_key)
            except JWTError:
                continue
            if header.get("kid") not in (None, account.key_id) or claims.get("iss") != account.email:
                break
            if claims.get("aud") != TOKEN_URI:
                return _oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
            iat, exp, now = claims.get("iat"), claims.get("exp"), time.time()
            if (
                not isinstance(iat, int)
                or not isinstance(exp, int)
                or exp - iat > MAX_LIFETIME_SECONDS
                or iat > now + CLOCK_SKEW_SECONDS
                or exp < now - CLOCK_SKEW_SECONDS
            ):
                return _oauth_error(
                    "invalid_grant",
                    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                    "timeframe. Check your iat and exp values in the JWT claim.",
                )
            return account, claims
        return _oauth_error("invalid_grant", "Invalid JWT Signature.")

    def revoke(self, secret: str) -> None:
        token = self.tokens.lookup(Credential("Bearer", None, secret))
        if token is not None:
            self.tokens.revoke(token)

    def _bearer(self, request: web.Request) -> tuple[str, str, tuple[str, ...]] | None:
        token = self.tokens.lookup(parse_authorization(request.headers.get("Authorization")))
        return None if token is None else self._scopes.get(token.name)

    async def _generate_access_token(self, request: web.Request) -> web.StreamResponse:
        caller = self._bearer(request)
        if caller is None:
            return _api_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        source, _, scopes = caller
        if CLOUD_PLATFORM not in scopes:
            return _api_error(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED")
        target = request.match_info["account"]
        account = next((a for a in self.accounts if a.email == source), None)
        if account is None or target not in account.may_impersonate:
            message = (
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
            )
            return _api_error(403, message, "PERMISSION_DENIED")
        body = await request.json()
        requested = body.get("scope") if isinstance(body, dict) else None
        lifetime_text = body.get("lifetime", "3600s") if isinstance(body, dict) else "3600s"
        if not isinstance(requested, list) or not requested or not all(isinstance(s, str) for s in requested):
            return _api_error(400, "Scope is required.", "INVALID_ARGUMENT")
        try:
            lifetime = int(str(lifetime_text).removesuffix("s"))
        except ValueError:
            return _api_error(400, "Invalid value at 'lifetime'.", "INVALID_ARGUMENT")
        if not 1 <= lifetime <= MAX_LIFETIME_SECONDS:
            return _api_error(400, "The lifetime must be between 1s and 3600s.", "INVALID_ARGUMENT")
        secret = self.issue(target, "generateAccessToken", requested, None, lifetime)
        expire = datetime.datetime.fromtimestamp(time.time() + lifetime, datetime.UTC)
        return web.json_response({"accessToken": secret, "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")})

    async def _drive_files(self, request: web.Request) -> web.StreamResponse:
        caller = self._bearer(request)
        if caller is None:
            return _api_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        if not DRIVE_SCOPES & set(caller[2]):
            return _api_error(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED")
        files = [{"kind": "drive#file", "id": "1a2b3c", "name": "design.md", "mimeType": "text/markdown"}]
        return web.json_response({"kind": "drive#fileList", "incompleteSearch": False, "files": files})


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


def _api_error(code: int, message: str, status: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "status": status}}, status=code)
