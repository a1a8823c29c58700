"""Config models of the credentials tether mints tokens from (`credentials:` entries with a `type:`).

Each model names files, never inline secrets. Files holding private keys, client secrets or refresh
tokens must not be readable by group or others: tether refuses to start otherwise (`problems`).
The static type lives in tether.config; the minters that use these models live in tether.broker.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class InjectSettings(BaseModel):
    """How the token reaches the provider (shared by every credential type)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inject: Literal["bearer", "header", "basic"] = Field(
        "bearer",
        description="bearer: `Authorization: Bearer`; header: a custom header; "
        "basic: `Authorization: Basic` with `username`. Git smart HTTP always gets Basic x-access-token.",
    )
    header: str | None = Field(None, description="Header name for inject=header, e.g. X-API-Key.")
    prefix: str = Field("", description="Prefix before the secret for inject=header.")
    username: str = Field("x-access-token", description="Basic auth user for inject=basic and git.")

    @model_validator(mode="after")
    def _header_named(self) -> InjectSettings:
        if self.inject == "header" and not self.header:
            raise ValueError("inject: header needs `header:` (the header name)")
        return self


def https_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{what} must be an https:// URL without query, got {value!r}")
    return value.rstrip("/")


def private_file_problems(where: str, path: Path | None) -> list[str]:
    """A secret file must exist and be readable by its owner only (like ssh insists for keys)."""
    if path is None:
        return []
    try:
        mode = path.stat().st_mode
    except OSError:
        return [f"{where}: no such file: {path}"]
    if not stat.S_ISREG(mode):
        return [f"{where}: not a regular file: {path}"]
    if mode & 0o077:
        return [
            f"{where}: {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"it holds a secret: run `chmod 600 {path}`"
        ]
    return []


class MintedCredential(InjectSettings):
    """Settings every minting credential shares."""

    mint_deadline_seconds: float = Field(
        10.0, gt=0, le=120, description="Total time for one mint, retries on provider 5xx/timeouts included."
    )
    request_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Timeout of one provider request.")

    def secret_files(self) -> dict[str, Path | None]:
        """Files that hold secrets, by config key (checked for existence and private mode)."""
        return {}

    def problems(self, name: str) -> list[str]:
        return [
            problem
            for key, path in self.secret_files().items()
            for problem in private_file_problems(f"credentials.{name}.{key}", path)
        ]


_GITHUB_APP_ID = re.compile(r"^(?:[0-9]{1,12}|Iv[0-9A-Za-z.]{2,40})$")


class GitHubAppCredential(MintedCredential):
    """A GitHub App: installation access tokens down-scoped to the granted permissions."""

    type: Literal["github_app"]
    app_id: str = Field(description="The App's id (e.g. 12345) or client id (Iv23li...): the JWT's `iss`.")
    private_key_file: Path = Field(description="The App's private key (PEM), mode 0600.")
    api_base: str = Field(
        "https://api.github.com", description="REST API base; GitHub Enterprise Server: https://HOST/api/v3."
    )
    installation_id: int | None = Field(
        None, gt=0, description="Fixed installation; default: resolved from the request's owner and cached."
    )

    @field_validator("app_id", mode="before")
    @classmethod
    def _app_id(cls, value: object) -> str:
        text = str(value)
        if not _GITHUB_APP_ID.match(text):
            raise ValueError("app_id must be the App's numeric id or its client id (Iv...)")
        return text

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return https_url(value, "api_base")

    def secret_files(self) -> dict[str, Path | None]:
        return {"private_key_file": self.private_key_file}


class SlackCredential(MintedCredential):
    """A Slack app with token rotation: each run gets an access token from the refresh-token chain."""

    type: Literal["slack"]
    client_id: str = Field(description="The Slack app's client id.")
    client_secret_file: Path = Field(description="The app's client secret, mode 0600.")
    refresh_token_file: Path = Field(
        description="The current refresh token (xoxe-1-...), mode 0600; tether replaces it at each rotation."
    )
    api_base: str = Field("https://slack.com/api", description="Web API base URL.")

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return https_url(value, "api_base")

    def secret_files(self) -> dict[str, Path | None]:
        return {"client_secret_file": self.client_secret_file, "refresh_token_file": self.refresh_token_file}


class GoogleServiceAccountCredential(MintedCredential):
    """A Google service account: access tokens carrying exactly the granted OAuth scopes."""

    type: Literal["google_service_account"]
    key_file: Path = Field(description="The service account's JSON key, mode 0600.")
    subject: str | None = Field(None, description="Domain-wide delegation: the user to act as (JWT `sub`).")
    impersonate: str | None = Field(
        None,
        description="Service account to mint for with IAM Credentials generateAccessToken (lifetime = the "
        "policy ttl); key_file's account is then the source credential and needs roles/iam.serviceAccount"
        "TokenCreator on it.",
    )
    token_uri: str | None = Field(None, description="Token endpoint; default: the key file's token_uri.")
    iam_base: str = Field("https://iamcredentials.googleapis.com", description="IAM Credentials API base.")

    @field_validator("token_uri", "iam_base")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return None if value is None else https_url(value, "URL")

    @model_validator(mode="after")
    def _one_mode(self) -> GoogleServiceAccountCredential:
        if self.subject is not None and self.impersonate is not None:
            raise ValueError("subject (domain-wide delegation) and impersonate cannot be combined")
        return self

    def secret_files(self) -> dict[str, Path | None]:
        return {"key_file": self.key_file}


class OAuth2Credential(MintedCredential):
    """Any OAuth 2.0 authorization server: client credentials, a narrowed refresh, or token exchange."""

    type: Literal["oauth2"]
    token_url: str = Field(description="The token endpoint (https).")
    grant: Literal["client_credentials", "refresh_token", "token_exchange"] = Field(
        description="client_credentials (RFC 6749 §4.4), refresh_token with a narrowed scope (§6), or "
        "token_exchange (RFC 8693)."
    )
    client_id: str = Field(description="The client id.")
    client_secret_file: Path | None = Field(
        None, description="Client secret (mode 0600); none: public client."
    )
    client_auth: Literal["basic", "post"] = Field(
        "basic",
        description="basic: client_secret_basic (HTTP Basic); post: client_secret_post (form fields).",
    )
    refresh_token_file: Path | None = Field(
        None, description="grant refresh_token: the refresh token (0600); a rotated one is written back."
    )
    subject_token_file: Path | None = Field(
        None, description="grant token_exchange: the subject token (0600)."
    )
    subject_token_type: str = Field(
        "urn:ietf:params:oauth:token-type:access_token",
        description="token_exchange: the subject token's type.",
    )
    audience: str | None = Field(None, description="Optional `audience` parameter (RFC 8693).")
    resource: str | None = Field(None, description="Optional `resource` parameter (RFC 8707).")
    revocation_url: str | None = Field(None, description="RFC 7009 endpoint: tokens are revoked at run end.")

    @field_validator("token_url", "revocation_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return None if value is None else https_url(value, "URL")

    @model_validator(mode="after")
    def _grant_inputs(self) -> OAuth2Credential:
        if self.grant == "refresh_token" and self.refresh_token_file is None:
            raise ValueError("grant refresh_token needs refresh_token_file")
        if self.grant == "token_exchange" and self.subject_token_file is None:
            raise ValueError("grant token_exchange needs subject_token_file")
        if self.grant == "client_credentials" and self.client_secret_file is None:
            raise ValueError("grant client_credentials needs client_secret_file")
        return self

    def secret_files(self) -> dict[str, Path | None]:
        return {
            "client_secret_file": self.client_secret_file,
            "refresh_token_file": self.refresh_token_file,
            "subject_token_file": self.subject_token_file,
        }
