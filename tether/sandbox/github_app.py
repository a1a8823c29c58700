"""GitHub App endpoints for the sandbox GitHub API: installation lookup, token minting, revocation.

They behave like api.github.com's: the App authenticates with an RS256 JWT that must verify against
the App's public key, name the App in `iss`, have `iat` not in the future (60 s of skew tolerated)
and `exp` in the future but at most 10 minutes after `iat`. `POST /app/installations/{id}/access_tokens`
mints a token (`ghs_` + 36 characters, valid for an hour) limited to the requested `permissions`
and `repositories`, which must lie within the installation (422 otherwise, with GitHub's messages).
Without `permissions` the token gets all of the installation's, as GitHub documents; an empty map,
which GitHub's docs leave open, is read the same broad way so tests catch a client that sends one.
Minted tokens go into the sandbox's token registry, so the REST endpoints (and a git sandbox sharing
the registry) accept them until they expire or `DELETE /installation/token` revokes them.
"""

from __future__ import annotations

import datetime
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tether.broker.jwt import JWTError, decode_rs256
from tether.sandbox.auth import SandboxToken, grants, parse_authorization
from tether.sandbox.github import DOCS_URL, GitHubSandbox, error

TOKEN_LIFETIME_SECONDS = 3600
JWT_MAX_LIFETIME_SECONDS = 600
CLOCK_SKEW_SECONDS = 60
MAX_REPOSITORIES = 500
_APPS_DOCS = f"{DOCS_URL}/apps/apps"


@dataclass(frozen=True)
class SandboxInstallation:
    id: int
    account: str  # the owner login it is installed on
    permissions: Mapping[str, str]  # what the owner granted the App
    repositories: frozenset[str] | None = None  # selected "owner/repo" names (lower-case); None: all


@dataclass(frozen=True)
class MintRecord:
    """One token the App endpoint issued (tests check what was asked and what was granted)."""

    name: str
    installation: int
    permissions: Mapping[str, str]
    repositories: tuple[str, ...] | None


@dataclass
class SandboxApp:
    app_id: int
    client_id: str
    public_key: rsa.RSAPublicKey
    installations: list[SandboxInstallation]
    minted: list[MintRecord] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)  # names of revoked tokens
    # Statuses to answer the next token requests with instead of minting (fault injection).
    fail_next: list[int] = field(default_factory=list)


class GitHubAppEndpoints:
    """Adds the App endpoints to a `GitHubSandbox` (before its app is served)."""

    def __init__(self, sandbox: GitHubSandbox, apps: Iterable[SandboxApp]) -> None:
        self.sandbox = sandbox
        self.apps = list(apps)
        router = sandbox.app.router
        router.add_post("/app/installations/{installation_id}/access_tokens", self._access_token)
        router.add_get("/repos/{owner}/{repo}/installation", self._repo_installation)
        router.add_get("/orgs/{org}/installation", self._account_installation)
        router.add_get("/users/{username}/installation", self._account_installation)
        router.add_delete("/installation/token", self._revoke)

    # --- App JWT ----------------------------------------------------------------------------------------

    def _authenticate_app(self, request: web.Request) -> SandboxApp | web.Response:
        credential = parse_authorization(request.headers.get("Authorization"))
        if credential is None or credential.scheme.lower() != "bearer":
            return error(401, "A JSON web token could not be decoded", _APPS_DOCS)
        for app in self.apps:
            try:
                _, claims = decode_rs256(credential.secret, app.public_key)
            except JWTError:
                continue
            return self._check_claims(app, claims)
        return error(401, "A JSON web token could not be decoded", _APPS_DOCS)

    @staticmethod
    def _check_claims(app: SandboxApp, claims: Mapping[str, object]) -> SandboxApp | web.Response:
        now = time.time()
        iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
        if str(iss) not in (str(app.app_id), app.client_id):
            return error(401, "'Issuer' claim ('iss') must be an Integer", _APPS_DOCS)
        if not isinstance(iat, int) or iat > now + CLOCK_SKEW_SECONDS:
            return error(
                401,
                "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
                _APPS_DOCS,
            )
        if not isinstance(exp, int) or exp <= now:
            return error(401, "'Expiration time' claim ('exp') must be a numeric value in the future.")
        if exp - iat > JWT_MAX_LIFETIME_SECONDS:
            return error(401, "'Expiration time' claim ('exp') is too far in the future", _APPS_DOCS)
        return app

    # --- endpoints --------------------------------------------------------------------------------------

    async def _repo_installation(self, request: web.Request) -> web.StreamResponse:
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        app = self._authenticate_app(request)
        if isinstance(app, web.Response):
            return app
        for installation in app.installations:
            if full_name in self._repositories(installation):
                return web.json_response(self._installation_json(app, installation))
        return error(
            404, "Not Found", f"{_APPS_DOCS}#get-a-repository-installation-for-the-authenticated-app"
        )

    async def _account_installation(self, request: web.Request) -> web.StreamResponse:
        account = (request.match_info.get("org") or request.match_info["username"]).lower()
        app = self._authenticate_app(request)
        if isinstance(app, web.Response):
            return app
        for installation in app.installations:
            if installation.account.lower() == account:
                return web.json_response(self._installation_json(app, installation))
        return error(404, "Not Found", _APPS_DOCS)

    async def _access_token(self, request: web.Request) -> web.StreamResponse:
        app = self._authenticate_app(request)
        if isinstance(app, web.Response):
            return app
        docs = f"{_APPS_DOCS}#create-an-installation-access-token-for-an-app"
        ident = request.match_info["installation_id"]
        installation = next((i for i in app.installations if str(i.id) == ident), None)
        if installation is None:
            return error(404, "Not Found", docs)
        if app.fail_next:
            status = app.fail_next.pop(0)
            return error(status, "Service Unavailable" if status >= 500 else "Injected failure", docs)
        try:
            payload = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            return error(400, "Problems parsing JSON", docs)
        if not isinstance(payload, dict):
            return error(400, "Problems parsing JSON", docs)

        permissions = payload.get("permissions") or dict(installation.permissions)
        if not isinstance(permissions, dict) or not all(
            isinstance(level, str) and level in ("read", "write", "admin") for level in permissions.values()
        ):
            return error(422, "Invalid request.\n\nInvalid permissions.", docs)
        if not all(grants(installation.permissions, name, level) for name, level in permissions.items()):
            return error(422, "The permissions requested are not granted to this installation.", docs)

        names = payload.get("repositories")
        available = self._repositories(installation)
        selected: tuple[str, ...] | None = None
        if names is not None:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return error(422, "Invalid request.\n\nInvalid repositories.", docs)
            if len(names) > MAX_REPOSITORIES:
                return error(422, f"Too many repositories (the maximum is {MAX_REPOSITORIES}).", docs)
            selected = tuple(sorted({f"{installation.account}/{n}".lower() for n in names}))
            if not set(selected) <= available:
                message = (
                    "There is at least one repository that does not exist or is not accessible "
                    "to the parent installation."
                )
                return error(422, message, docs)
        scope = frozenset(selected) if selected is not None else installation.repositories
        name = f"installation-{installation.id}-{len(app.minted) + 1}"
        secret = "ghs_" + secrets.token_urlsafe(27)[:36]
        expires_at = int(time.time()) + TOKEN_LIFETIME_SECONDS
        self.sandbox.tokens.add(
            SandboxToken(name, secret, dict(permissions), repositories=scope, expires_at=expires_at)
        )
        app.minted.append(MintRecord(name, installation.id, dict(permissions), selected))
        body: dict[str, object] = {
            "token": secret,
            "expires_at": _iso(expires_at),
            "permissions": {**permissions, "metadata": "read"},
            "repository_selection": "selected" if scope is not None else "all",
        }
        if selected is not None:
            body["repositories"] = [self._repo_json(full) for full in selected]
        return web.json_response(body, status=201)

    async def _revoke(self, request: web.Request) -> web.StreamResponse:
        token = self.sandbox.tokens.lookup(parse_authorization(request.headers.get("Authorization")))
        if token is None:
            return error(401, "Bad credentials")
        self.sandbox.tokens.revoke(token)
        for app in self.apps:
            if any(record.name == token.name for record in app.minted):
                app.revoked.append(token.name)
        return web.Response(status=204)

    # --- shapes -----------------------------------------------------------------------------------------

    def _repositories(self, installation: SandboxInstallation) -> frozenset[str]:
        """The installation's repositories: its selection, or every sandbox repository of its account."""
        if installation.repositories is not None:
            return installation.repositories
        owner = installation.account.lower()
        return frozenset(name for name in self.sandbox.repositories if name.split("/")[0] == owner)

    def _installation_json(self, app: SandboxApp, installation: SandboxInstallation) -> dict[str, object]:
        return {
            "id": installation.id,
            "app_id": app.app_id,
            "client_id": app.client_id,
            "account": {"login": installation.account, "type": "Organization"},
            "repository_selection": "selected" if installation.repositories is not None else "all",
            "access_tokens_url": f"{self.sandbox.api_url}/app/installations/{installation.id}/access_tokens",
            "permissions": dict(installation.permissions),
            "events": [],
            "created_at": "2024-03-04T09:12:44Z",
            "updated_at": "2024-03-04T09:12:44Z",
        }

    def _repo_json(self, full_name: str) -> dict[str, object]:
        repo = self.sandbox.repositories.get(full_name)
        return {"full_name": full_name, "id": repo.id if repo else None}


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
