"""A sandbox Slack Web API (aiohttp) with token rotation, for tests and the demo.

`oauth.v2.access` with `grant_type=refresh_token` authenticates the app (HTTP Basic or form
client_id/client_secret), spends the presented refresh token (single-use: presenting it again gives
`invalid_refresh_token`, as Slack does) and answers with a new access token (12 h) and a new
refresh token. Web API methods take the access token as `Authorization: Bearer` and answer like
Slack: HTTP 200 with `{"ok": false, "error": ...}` for `not_authed`, `invalid_auth`,
`token_expired` and `missing_scope` (with `needed` and `provided`).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tether.sandbox.auth import SandboxToken, TokenRegistry, parse_authorization
from tether.sandbox.recording import RecordedRequest, recording_middleware

ACCESS_TOKEN_LIFETIME_SECONDS = 43200
TEAM = {"id": "T0SANDBOX", "name": "Acme"}


@dataclass
class SlackMessage:
    channel: str
    text: str
    ts: str
    bot: str  # the token name that posted it


@dataclass
class SlackSandbox:
    """Serve `app`; `refresh_token` is the one currently valid; `rotations` counts oauth.v2.access grants."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...] = ("chat:write", "channels:read")
    channels: Mapping[str, str] = field(default_factory=lambda: {"C0GENERAL": "general"})
    messages: list[SlackMessage] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    rotations: int = 0
    spent: int = 0  # refresh tokens presented after they were used
    tokens: TokenRegistry = field(default_factory=TokenRegistry)

    def __post_init__(self) -> None:
        self._scopes: dict[str, tuple[str, ...]] = {}  # token name -> scopes
        self._ts = itertools.count(100)
        self._spent_refresh: set[str] = set()
        # Refresh tokens sit in the registry too, so recordings redact them; they never pass as bearer.
        self.tokens.add(SandboxToken("slack-refresh-0", self.refresh_token, {}))
        self.app = web.Application(
            middlewares=[recording_middleware(self.tokens, self.requests, keep_body=False)]
        )
        self.app.router.add_post("/api/oauth.v2.access", self._oauth_access)
        self.app.router.add_route("*", "/api/chat.postMessage", self._post_message)
        self.app.router.add_route("*", "/api/auth.test", self._auth_test)

    def _app_authenticated(self, request: web.Request, form: Mapping[str, str]) -> bool:
        credential = parse_authorization(request.headers.get("Authorization"))
        client_id: str | None
        secret: str | None
        if credential is not None and credential.scheme.lower() == "basic":
            client_id, secret = credential.username, credential.secret
        else:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        return (
            client_id == self.client_id
            and secret is not None
            and secrets.compare_digest(secret, self.client_secret)
        )

    async def _oauth_access(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self._app_authenticated(request, values):
            return _fail(
                "invalid_client_id" if values.get("client_id") != self.client_id else "bad_client_secret"
            )
        if values.get("grant_type") != "refresh_token":
            return _fail("invalid_grant_type")
        presented = values.get("refresh_token", "")
        if presented in self._spent_refresh:
            self.spent += 1
            return _fail("invalid_refresh_token")
        if not secrets.compare_digest(presented, self.refresh_token):
            return _fail("invalid_refresh_token")
        self._spent_refresh.add(presented)
        self.rotations += 1
        self.refresh_token = f"xoxe-1-{secrets.token_hex(24)}"
        access = f"xoxe.xoxb-1-{secrets.token_hex(24)}"
        name = f"slack-bot-{self.rotations}"
        self.tokens.add(
            SandboxToken(name, access, {}, expires_at=time.time() + ACCESS_TOKEN_LIFETIME_SECONDS)
        )
        self.tokens.add(SandboxToken(f"slack-refresh-{self.rotations}", self.refresh_token, {}))
        self._scopes[name] = self.scopes
        return web.json_response(
            {
                "ok": True,
                "app_id": "A0SANDBOX",
                "scope": ",".join(self.scopes),
                "token_type": "bot",
                "access_token": access,
                "bot_user_id": "U0BOT",
                "refresh_token": self.refresh_token,
                "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
                "team": TEAM,
                "enterprise": None,
                "is_enterprise_install": False,
            }
        )

    def _caller(self, request: web.Request, needed: str | None) -> str | web.Response:
        header = request.headers.get("Authorization")
        if not header:
            return _fail("not_authed")
        token = self.tokens.lookup(parse_authorization(header))
        if token is None or token.name not in self._scopes:
            return _fail("invalid_auth")
        scopes = self._scopes[token.name]
        if needed is not None and needed not in scopes:
            return web.json_response(
                {"ok": False, "error": "missing_scope", "needed": needed, "provided": ",".join(scopes)}
            )
        return token.name

    async def _arguments(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return body if isinstance(body, dict) else {}
        form = await request.post()
        return {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request, "chat:write")
        if isinstance(caller, web.Response):
            return caller
        args = await self._arguments(request)
        channel, text = args.get("channel"), args.get("text")
        if not channel:
            return _fail("channel_not_found")
        if channel not in self.channels:
            return _fail("channel_not_found")
        if not text:
            return _fail("no_text")
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        self.messages.append(SlackMessage(str(channel), str(text), ts, caller))
        message = {"type": "message", "text": text, "user": "U0BOT", "bot_id": "B0BOT", "ts": ts}
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def _auth_test(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request, None)
        if isinstance(caller, web.Response):
            return caller
        return web.json_response(
            {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": TEAM["name"],
                "team_id": TEAM["id"],
                "user_id": "U0BOT",
                "bot_id": "B0BOT",
            }
        )


def _fail(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})
