"""Google service account minter: access tokens with exactly the granted OAuth scopes.

Two ways, as Google documents them:
- JWT bearer grant (RFC 7523) to the key's token URI: an assertion signed with the key (RS256, `kid` =
  the key id, `iss` = the account, `aud` = the token URI, `scope` = the granted scopes, 1 h, optional
  `sub` for domain-wide delegation);
- with `impersonate`: IAM Credentials `generateAccessToken` for the target account with the granted
  scopes and `lifetime` = the policy ttl (capped at Google's default 3600 s), authenticated with a
  cloud-platform token of the key's account (the source credential), which is cached until near expiry.
Google scopes are coarse: the catalog's route rules still apply at the proxy. tether does not call
Google's revoke endpoint (documented for user OAuth grants): tokens are retired locally and expire.
Docs: developers.google.com/identity/protocols/oauth2/service-account,
cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from urllib.parse import quote

from tether.broker.base import MintedSecret, MintError, MintRequest
from tether.broker.jwt import JWTError, load_rsa_private_key, sign_rs256
from tether.broker.provider_http import ProviderHTTP, oauth_token
from tether.credential_types import GoogleServiceAccountCredential, https_url

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ASSERTION_LIFETIME_SECONDS = 3600
MAX_LIFETIME_SECONDS = 3600
SOURCE_MARGIN_SECONDS = 300


class GoogleServiceAccountMinter:
    spends_refresh_token = False

    def __init__(self, name: str, config: GoogleServiceAccountCredential, http: ProviderHTTP) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.deadline_seconds = config.mint_deadline_seconds
        where = f"credentials.{name}.key_file ({config.key_file})"
        try:
            key = json.loads(config.key_file.read_bytes())
        except OSError as exc:
            raise JWTError(f"{where}: cannot read: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError):
            raise JWTError(f"{where}: not a JSON service account key") from None
        if not isinstance(key, dict) or key.get("type") != "service_account":
            raise JWTError(f'{where}: not a service account key (expected "type": "service_account")')
        email, pem, key_id = key.get("client_email"), key.get("private_key"), key.get("private_key_id")
        if not isinstance(email, str) or not isinstance(pem, str):
            raise JWTError(f"{where}: client_email and private_key are required")
        self.email = email
        self.key_id = key_id if isinstance(key_id, str) else None
        self._key = load_rsa_private_key(pem.encode(), where)
        token_uri = config.token_uri or key.get("token_uri") or "https://oauth2.googleapis.com/token"
        try:
            self.token_uri = https_url(str(token_uri), "token_uri")
        except ValueError as exc:
            raise JWTError(f"{where}: {exc}") from None
        self._source: tuple[str, float] | None = None  # cloud-platform token of the source account
        self._source_lock = asyncio.Lock()

    def target(self, owner: str | None) -> str | None:
        return None

    async def mint(self, request: MintRequest) -> MintedSecret:
        scopes = sorted(request.native_permissions)
        if not scopes:
            raise MintError(f"credential {self.name}: the grant maps to no Google scope")
        if self.config.impersonate is None:
            token, expires_at = await self._jwt_grant(scopes, self.config.subject)
            return MintedSecret(token, expires_at, f"google_service_account:{self.email}", minted=True)
        token, expires_at = await self._generate(scopes, request.ttl_seconds)
        source = f"google_service_account:{self.email}/impersonate:{self.config.impersonate}"
        return MintedSecret(token, expires_at, source, minted=True)

    async def revoke(self, secret: MintedSecret) -> bool:
        return False

    def assertion(self, scopes: list[str], subject: str | None) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.email,
            "scope": " ".join(scopes),
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        }
        if subject is not None:
            claims["sub"] = subject
        return sign_rs256(claims, self._key, {"kid": self.key_id} if self.key_id else None)

    async def _jwt_grant(self, scopes: list[str], subject: str | None) -> tuple[str, float | None]:
        assertion = self.assertion(scopes, subject)
        response = await self.http.request(
            "POST",
            self.token_uri,
            form={"grant_type": JWT_BEARER, "assertion": assertion},
            timeout_seconds=self.config.request_timeout_seconds,
        )
        return oauth_token(response, f"Google token endpoint for {self.email}", secrets=[assertion])

    async def _source_token(self) -> str:
        async with self._source_lock:
            if self._source is None or self._source[1] <= time.time():
                token, expires_at = await self._jwt_grant([CLOUD_PLATFORM], None)
                reuse_until = (expires_at or time.time() + 600) - SOURCE_MARGIN_SECONDS
                self._source = (token, reuse_until)
            return self._source[0]

    async def _generate(self, scopes: list[str], ttl_seconds: int) -> tuple[str, float]:
        target = self.config.impersonate or ""
        account = quote(target, safe="@.")
        url = f"{self.config.iam_base}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
        source = await self._source_token()
        lifetime = min(ttl_seconds, MAX_LIFETIME_SECONDS)
        response = await self.http.request(
            "POST",
            url,
            headers={"Authorization": f"Bearer {source}"},
            json_body={"scope": scopes, "lifetime": f"{lifetime}s"},
            timeout_seconds=self.config.request_timeout_seconds,
        )
        if response.status == 401:
            self._source = None  # the source token went stale: the next mint gets a fresh one
        data = response.json()
        if response.status != 200 or not isinstance(data, dict):
            raise response.fail(f"IAM generateAccessToken for {target}", secrets=[source])
        token, expire_time = data.get("accessToken"), data.get("expireTime")
        if not isinstance(token, str) or not token or not isinstance(expire_time, str):
            raise MintError(f"IAM generateAccessToken for {target}: the answer holds no accessToken")
        try:
            expires_at = datetime.datetime.fromisoformat(expire_time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise MintError(f"IAM generateAccessToken for {target}: unreadable expireTime") from None
        return token, expires_at
