"""Slack minter: token rotation through `oauth.v2.access` with `grant_type=refresh_token`.

Slack's refresh tokens are single-use: each rotation answers with a new access token (valid 12 h)
and a new refresh token. The new refresh token is written durably (0600, atomic replace, fsync)
before the access token is handed out, so a crash never strands the chain (when it cannot be written
it stays current in memory); rotations are serialized so two runs never spend the same refresh token,
a rotation runs to its end even when the mint deadline passes, and a rotation that may have reached
Slack is never retried with the token it spent. Slack cannot narrow scopes at mint time: the
catalog's method rules enforce the grant on every call. Access tokens are not revoked at run end:
`auth.revoke` on a bot token deactivates the bot user and drops its channel memberships, so tether
retires them locally and Slack expires them.
Docs: docs.slack.dev/authentication/using-token-rotation.
"""

from __future__ import annotations

import asyncio
import base64
import time

from tether.broker.base import (
    MintedSecret,
    MintError,
    MintRequest,
    RefreshTokenFile,
    read_secret_file,
    run_to_end,
)
from tether.broker.provider_http import ProviderHTTP, safe_message
from tether.credential_types import SlackCredential

# Slack errors worth retrying (its own transient failures); everything else is final.
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "ratelimited"})


class SlackMinter:
    spends_refresh_token = True

    def __init__(self, name: str, config: SlackCredential, http: ProviderHTTP) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.deadline_seconds = config.mint_deadline_seconds
        self._rotation = asyncio.Lock()
        self._refresh = RefreshTokenFile(config.refresh_token_file, f"credential {name}")

    def target(self, owner: str | None) -> str | None:
        return None

    async def mint(self, request: MintRequest) -> MintedSecret:
        # Shielded: a deadline must not cancel a rotation between Slack's answer and the persist.
        return await run_to_end(self._rotate())

    async def _rotate(self) -> MintedSecret:
        where = f"credential {self.name}"
        async with self._rotation:
            refresh = await self._refresh.current()
            secret = await asyncio.to_thread(
                read_secret_file, self.config.client_secret_file, where, "client_secret_file"
            )
            basic = base64.b64encode(f"{self.config.client_id}:{secret}".encode()).decode()
            response = await self.http.request(
                "POST",
                f"{self.config.api_base}/oauth.v2.access",
                headers={"Authorization": f"Basic {basic}"},
                form={"grant_type": "refresh_token", "refresh_token": refresh},
                timeout_seconds=self.config.request_timeout_seconds,
            )
            if response.status != 200:
                raise response.fail("Slack oauth.v2.access", secrets=[refresh, secret])
            data = response.json()
            if not isinstance(data, dict) or data.get("ok") is not True:
                error = safe_message(str(data.get("error") if isinstance(data, dict) else "not JSON"))
                raise MintError(
                    f"Slack oauth.v2.access: {error}",
                    status=response.status,
                    retryable=error in _TRANSIENT,
                    sent=error != "ratelimited",
                )
            access, new_refresh = data.get("access_token"), data.get("refresh_token")
            if (
                not isinstance(access, str)
                or not access
                or not isinstance(new_refresh, str)
                or not new_refresh
            ):
                raise MintError("Slack oauth.v2.access answered without access_token and refresh_token")
            # The old refresh token is spent: persist the new one before anything can use the access token.
            await self._refresh.save(new_refresh)
        expires_in = data.get("expires_in")
        team = data.get("team") if isinstance(data.get("team"), dict) else {}
        team_id = team.get("id") if isinstance(team, dict) else None
        return MintedSecret(
            value=access,
            expires_at=time.time() + expires_in if isinstance(expires_in, int) else None,
            source=f"slack:{self.config.client_id}" + (f"/team:{team_id}" if team_id else ""),
            minted=True,
        )

    async def revoke(self, secret: MintedSecret) -> bool:
        return False
