"""Builds the broker with one minter per configured credential."""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from tether.broker.base import Broker, Minter, StaticMinter
from tether.broker.github_app import GitHubAppMinter
from tether.broker.google import GoogleServiceAccountMinter
from tether.broker.jwt import JWTError
from tether.broker.oauth2 import OAuth2Minter
from tether.broker.provider_http import ProviderHTTP
from tether.broker.slack import SlackMinter
from tether.config import AnyCredential, ConfigError, CredentialConfig, UpstreamOverride
from tether.credential_types import (
    GitHubAppCredential,
    GoogleServiceAccountCredential,
    OAuth2Credential,
    SlackCredential,
)


def build_broker(
    credentials: Mapping[str, AnyCredential], overrides: Mapping[str, UpstreamOverride] | None = None
) -> Broker:
    """Raises ConfigError when a credential's key material cannot be used (tether refuses to start)."""
    http = ProviderHTTP(overrides or {})
    minters: dict[str, Minter] = {}
    problems: list[str] = []
    for name, config in credentials.items():
        try:
            minters[name] = _minter(name, config, http)
        except JWTError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    return Broker(minters, close=http.close)


def _minter(name: str, config: AnyCredential, http: ProviderHTTP) -> Minter:
    if isinstance(config, CredentialConfig):
        return StaticMinter(name, config)
    if isinstance(config, GitHubAppCredential):
        return GitHubAppMinter(name, config, http)
    if isinstance(config, SlackCredential):
        return SlackMinter(name, config, http)
    if isinstance(config, GoogleServiceAccountCredential):
        return GoogleServiceAccountMinter(name, config, http)
    if isinstance(config, OAuth2Credential):
        return OAuth2Minter(name, config, http)
    assert_never(config)
