"""GitHub App minter: installation access tokens down-scoped to the granted permissions and repositories.

The App authenticates with a short JWT (RS256, iat = now - 60 s for clock drift, exp = iat + 9 min,
below GitHub's 10-minute cap; iss = the app or client id). The installation is the configured one or
the one on the request's owner, looked up once (`GET /repos/{owner}/{repo}/installation`, else
`/orgs/{owner}/installation` or `/users/{owner}/installation`) and cached. Tokens are treated as
opaque strings of any length: GitHub is moving to longer, stateless tokens.
Docs: docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from urllib.parse import quote

from tether.broker.base import MintedSecret, MintError, MintRequest
from tether.broker.jwt import JWTError, load_rsa_private_key, sign_rs256
from tether.broker.provider_http import ProviderHTTP
from tether.credential_types import GitHubAppCredential
from tether.policy.patterns import glob_matches

API_VERSION = "2022-11-28"
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 540  # counted from the backdated iat: 8 minutes ahead of now
MAX_INSTALLATION_CACHE = 1024
# How long "not installed on this owner" is reused: an agent naming foreign owners costs no API calls,
# and a new installation is picked up soon.
NOT_INSTALLED_TTL_SECONDS = 60.0
_GLOB_CHARS = frozenset("*?[")


def repositories_for(patterns: Sequence[str] | None, owner: str) -> list[str] | None:
    """The repository names of `owner` a token may be limited to: exact names from the policy's
    `owner/repo` globs. None (every repository of the installation) when the policy does not narrow,
    or a glob matching `owner` has a wildcard in its repository part; the proxy still enforces the
    globs on every call."""
    if patterns is None:
        return None
    names: list[str] = []
    for pattern in patterns:
        pattern_owner, _, repo = pattern.partition("/")
        if not glob_matches(pattern_owner.lower(), owner.lower()):
            continue
        if _GLOB_CHARS & set(repo):
            return None
        names.append(repo)
    if not names:
        raise MintError(f"the policy's repositories name no repository of {owner}")
    return sorted(set(names))


def _parse_expiry(value: object) -> float:
    if not isinstance(value, str):
        raise MintError("GitHub answered without expires_at")
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise MintError("GitHub answered with an unreadable expires_at") from None


class GitHubAppMinter:
    spends_refresh_token = False

    def __init__(self, name: str, config: GitHubAppCredential, http: ProviderHTTP) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.deadline_seconds = config.mint_deadline_seconds
        where = f"credentials.{name}.private_key_file ({config.private_key_file})"
        try:
            self._key = load_rsa_private_key(config.private_key_file.read_bytes(), where)
        except OSError as exc:
            raise JWTError(f"{where}: cannot read: {exc.strerror}") from None
        self._app_jwt: tuple[str, float] | None = None  # (jwt, reuse until)
        self._installations: dict[str, int] = {}  # owner (lower-case) -> installation id
        # Owners the App is not installed on -> until when (monotonic) that answer is reused.
        self._not_installed: dict[str, float] = {}

    def target(self, owner: str | None) -> str | None:
        return None if self.config.installation_id is not None or owner is None else owner.lower()

    def app_jwt(self) -> str:
        """The App's JWT, reused until a minute before it expires."""
        now = int(time.time())
        if self._app_jwt is not None and self._app_jwt[1] > now:
            return self._app_jwt[0]
        iat = now - JWT_BACKDATE_SECONDS
        exp = iat + JWT_LIFETIME_SECONDS
        token = sign_rs256({"iat": iat, "exp": exp, "iss": self.config.app_id}, self._key)
        self._app_jwt = (token, exp - 60)
        return token

    def _headers(self, bearer: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {bearer}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }

    async def mint(self, request: MintRequest) -> MintedSecret:
        owner = request.target or self._single_policy_owner(request.repositories)
        installation = await self._installation(owner, request.repository)
        # Never an empty map: GitHub gives a token without `permissions` all of the App's, and leaves
        # `{}` open. `metadata: read` (implied in every installation token) is the narrowest ask.
        body: dict[str, object] = {"permissions": dict(request.native_permissions) or {"metadata": "read"}}
        if owner is not None:
            names = repositories_for(request.repositories, owner)
            if names is not None:
                body["repositories"] = names
        url = f"{self.config.api_base}/app/installations/{installation}/access_tokens"
        response = await self.http.request(
            "POST",
            url,
            headers=self._headers(self.app_jwt()),
            json_body=body,
            timeout_seconds=self.config.request_timeout_seconds,
        )
        if response.status == 404 and owner is not None:
            self._installations.pop(owner, None)  # uninstalled or reinstalled: look it up again next time
        if response.status != 201:
            raise response.fail(f"GitHub App {self.config.app_id} installation {installation}")
        data = response.json()
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or any(ch in token for ch in "\r\n\0 "):
            raise MintError("GitHub answered without a usable token")
        return MintedSecret(
            value=token,
            expires_at=_parse_expiry(data.get("expires_at")),
            source=f"github_app:{self.config.app_id}/installation:{installation}",
            minted=True,
        )

    async def revoke(self, secret: MintedSecret) -> bool:
        """`DELETE /installation/token` with the token itself; a 401 means it is already invalid."""
        response = await self.http.request(
            "DELETE",
            f"{self.config.api_base}/installation/token",
            headers=self._headers(secret.value),
            timeout_seconds=self.config.request_timeout_seconds,
        )
        if response.status not in (204, 401):
            raise response.fail("GitHub token revocation", secrets=[secret.value])
        return True

    def _single_policy_owner(self, repositories: Sequence[str] | None) -> str | None:
        owners = {p.partition("/")[0].lower() for p in repositories or ()}
        if len(owners) == 1 and not _GLOB_CHARS & set(next(iter(owners))):
            return owners.pop()
        return None

    async def _installation(self, owner: str | None, repository: str | None) -> int:
        if self.config.installation_id is not None:
            return self.config.installation_id
        if owner is None:
            raise MintError(
                f"credential {self.name}: the request names no repository owner, so the GitHub App "
                "installation is unknown; set installation_id"
            )
        cached = self._installations.get(owner)
        if cached is not None:
            return cached
        not_installed = MintError(f"GitHub App {self.config.app_id} is not installed on {owner}", status=404)
        if self._not_installed.get(owner, 0.0) > time.monotonic():
            raise not_installed
        candidates = []
        if repository is not None and repository.lower().startswith(f"{owner}/"):
            candidates.append(f"/repos/{quote(repository, safe='/')}/installation")
        candidates += [f"/orgs/{quote(owner)}/installation", f"/users/{quote(owner)}/installation"]
        for path in candidates:
            response = await self.http.request(
                "GET",
                f"{self.config.api_base}{path}",
                headers=self._headers(self.app_jwt()),
                timeout_seconds=self.config.request_timeout_seconds,
            )
            if response.status == 404:
                continue
            data = response.json()
            if response.status != 200 or not isinstance(data, dict) or not isinstance(data.get("id"), int):
                raise response.fail(f"GitHub App {self.config.app_id} installation lookup for {owner}")
            if len(self._installations) >= MAX_INSTALLATION_CACHE:
                self._installations.clear()
            self._installations[owner] = data["id"]
            self._not_installed.pop(owner, None)
            return int(data["id"])
        if len(self._not_installed) >= MAX_INSTALLATION_CACHE:
            self._not_installed.clear()
        self._not_installed[owner] = time.monotonic() + NOT_INSTALLED_TTL_SECONDS
        raise not_installed
