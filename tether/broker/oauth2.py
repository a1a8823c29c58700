"""Generic OAuth 2.0 minter: client credentials (RFC 6749 §4.4) with the granted `scope`, a refresh
(§6) narrowed to the granted scope, or token exchange (RFC 8693); RFC 7009 revocation at run end when
the server has a revocation endpoint.

The scope sent is the catalog's native scope names of the grant, space-separated. A refresh token the
server rotates is written durably (0600, atomic replace) before the new access token is used (kept
current in memory when it cannot be written), and refreshes are serialized, run to their end past the
mint deadline and are not retried once sent, so a single-use refresh token is never spent twice.
"""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import quote, urlsplit

from tether.broker.base import MintedSecret, MintRequest, RefreshTokenFile, read_secret_file, run_to_end
from tether.broker.provider_http import ProviderHTTP, oauth_token
from tether.credential_types import OAuth2Credential

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class OAuth2Minter:
    def __init__(self, name: str, config: OAuth2Credential, http: ProviderHTTP) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.deadline_seconds = config.mint_deadline_seconds
        self.server = urlsplit(config.token_url).netloc
        self.spends_refresh_token = config.grant == "refresh_token"
        self._refresh = asyncio.Lock()
        self._refresh_token: RefreshTokenFile | None = None
        if config.refresh_token_file is not None:
            self._refresh_token = RefreshTokenFile(config.refresh_token_file, f"credential {name}")

    def target(self, owner: str | None) -> str | None:
        return None

    async def _read(self, what: str) -> str:
        path = getattr(self.config, what)
        return await asyncio.to_thread(read_secret_file, path, f"credential {self.name}", what)

    async def _client_auth(self, form: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """Headers for the client's authentication (RFC 6749 §2.3.1), and the secrets involved."""
        if self.config.client_secret_file is None:
            form["client_id"] = self.config.client_id
            return {}, []
        secret = await self._read("client_secret_file")
        if self.config.client_auth == "post":
            form.update(client_id=self.config.client_id, client_secret=secret)
            return {}, [secret]
        # §2.3.1: both parts are form-urlencoded before they are joined.
        pair = f"{quote(self.config.client_id, safe='')}:{quote(secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}, [secret]

    async def mint(self, request: MintRequest) -> MintedSecret:
        form: dict[str, str] = {"grant_type": self.config.grant}
        scope = " ".join(sorted(request.native_permissions))
        if scope:
            form["scope"] = scope
        for name in ("audience", "resource"):
            value = getattr(self.config, name)
            if value is not None:
                form[name] = value
        source = f"oauth2:{self.config.client_id}@{self.server}"
        if self.config.grant == "refresh_token":
            # Shielded: a deadline must not cancel a refresh between the server's answer and the persist.
            token, expires_at = await run_to_end(self._refresh_grant(form))
        else:
            spent: list[str] = []
            if self.config.grant == "token_exchange":
                subject = await self._read("subject_token_file")
                spent.append(subject)
                form.update(
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=subject,
                    subject_token_type=self.config.subject_token_type,
                    requested_token_type=ACCESS_TOKEN_TYPE,
                )
            token, expires_at, _ = await self._post(form, spent)
        return MintedSecret(token, expires_at, source, minted=True)

    async def _refresh_grant(self, form: dict[str, str]) -> tuple[str, float | None]:
        assert self._refresh_token is not None
        async with self._refresh:
            refresh = await self._refresh_token.current()
            form["refresh_token"] = refresh
            token, expires_at, rotated = await self._post(form, [refresh])
            if rotated is not None and rotated != refresh:
                await self._refresh_token.save(rotated)
        return token, expires_at

    async def _post(self, form: dict[str, str], spent: list[str]) -> tuple[str, float | None, str | None]:
        headers, secrets = await self._client_auth(form)
        response = await self.http.request(
            "POST",
            self.config.token_url,
            headers=headers,
            form=form,
            timeout_seconds=self.config.request_timeout_seconds,
        )
        what = f"OAuth2 {self.config.grant} at {self.server}"
        token, expires_at = oauth_token(response, what, [*secrets, *spent])
        data = response.json()
        rotated = data.get("refresh_token") if isinstance(data, dict) else None
        return token, expires_at, rotated if isinstance(rotated, str) and rotated else None

    async def revoke(self, secret: MintedSecret) -> bool:
        """RFC 7009: the server answers 200 whether or not it knew the token."""
        if self.config.revocation_url is None:
            return False
        form = {"token": secret.value, "token_type_hint": "access_token"}
        headers, secrets = await self._client_auth(form)
        response = await self.http.request(
            "POST",
            self.config.revocation_url,
            headers=headers,
            form=form,
            timeout_seconds=self.config.request_timeout_seconds,
        )
        if response.status != 200:
            raise response.fail(f"OAuth2 revocation at {self.server}", [secret.value, *secrets])
        return True
