"""Credential broker: one token per (agent, run, provider, granted scopes), never shared across runs.

Minters produce secret values; the broker caches, expires and revokes them and gives every issuance
its own `token_id`. This issue ships the static minter (API keys, PATs, bot tokens); the GitHub App,
Google, Slack and OAuth2 minters implement the same `Minter` protocol.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tether.config import CredentialConfig


class MintError(Exception):
    """A token could not be produced; the message is safe to show (it never holds a secret)."""


@dataclass(frozen=True)
class MintRequest:
    agent_id: str
    run_id: str
    provider: str
    scopes: tuple[str, ...]
    ttl_seconds: int
    native_permissions: Mapping[str, str]


@dataclass(frozen=True)
class MintedSecret:
    value: str = field(repr=False)
    expires_at: float | None  # the provider's own expiry, if it has one
    source: str  # where it came from, e.g. "static:github-bot" or "github_app:12345/installation:678"
    minted: bool  # False for static secrets that tether only hands out


class Minter(Protocol):
    async def mint(self, request: MintRequest) -> MintedSecret: ...

    async def revoke(self, secret: MintedSecret) -> None: ...


def hashed_token(value: str) -> str:
    """GitHub's `hashed_token` form: base64 of the SHA-256 of the token."""
    return base64.b64encode(hashlib.sha256(value.encode()).digest()).decode()


class StaticMinter:
    """Hands out a configured secret, re-read at each issuance so rotated files take effect."""

    def __init__(self, name: str, config: CredentialConfig) -> None:
        self.name = name
        self.config = config

    async def mint(self, request: MintRequest) -> MintedSecret:
        return MintedSecret(value=self.read(), expires_at=None, source=f"static:{self.name}", minted=False)

    async def revoke(self, secret: MintedSecret) -> None:
        """A static secret outlives the run; revocation only retires its token_id."""

    def read(self) -> str:
        if self.config.secret_file is not None:
            try:
                value = Path(self.config.secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise MintError(f"credential {self.name}: cannot read secret file: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise MintError(f"credential {self.name}: secret file is not UTF-8 text") from None
            where = "secret file"
        else:
            value = os.environ.get(self.config.secret_env or "", "").strip()
            where = f"environment variable {self.config.secret_env}"
        if not value:
            raise MintError(f"credential {self.name}: {where} is empty")
        if any(ch in value for ch in "\r\n\0"):
            raise MintError(f"credential {self.name}: {where} holds a line break or NUL")
        return value


@dataclass(frozen=True)
class TokenKey:
    agent_id: str
    run_id: str
    provider: str
    credential: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    key: TokenKey
    secret: MintedSecret
    token_sha256: str
    issued_at: float
    expires_at: float  # the earlier of the policy ttl and the provider's expiry
    ttl_seconds: int

    @property
    def value(self) -> str:
        return self.secret.value


@dataclass
class Issuance:
    token: IssuedToken
    fresh: bool  # minted for this call: the caller records token.minted
    expired: list[IssuedToken]  # retired on the way: the caller records token.expired


RecordIssuance = Callable[[Issuance], Awaitable[bool]]


class Broker:
    """Caches issued tokens per key; expires them at the policy ttl; retires them when a run ends."""

    # Renew this long before the provider's own expiry, so a token never dies mid-request.
    EXPIRY_MARGIN_SECONDS = 60.0

    def __init__(self, minters: Mapping[str, Minter]) -> None:
        self._minters = dict(minters)
        self._tokens: dict[TokenKey, IssuedToken] = {}
        self._locks: dict[TokenKey, asyncio.Lock] = {}

    def has_credential(self, name: str) -> bool:
        return name in self._minters

    async def issue(
        self, key: TokenKey, *, ttl_seconds: int, native: Mapping[str, str], record: RecordIssuance
    ) -> Issuance | None:
        """The token for `key`, minting one when there is none or it expired.

        A fresh token (with the expired one it replaces) is handed to `record` while the key is
        locked, and is cached and returned only once `record` returns True — so no call, not even a
        concurrent one, can use a token whose `token.minted` is not on record. None when it is not."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = time.time()
            current = self._tokens.get(key)
            if current is not None and current.expires_at > now:
                return Issuance(current, fresh=False, expired=[])
            minter = self._minters.get(key.credential)
            if minter is None:
                raise MintError(f"no credential named {key.credential!r} is configured")
            request = MintRequest(key.agent_id, key.run_id, key.provider, key.scopes, ttl_seconds, native)
            secret = await minter.mint(request)
            expires_at = now + ttl_seconds
            if secret.expires_at is not None:
                expires_at = min(expires_at, secret.expires_at - self.EXPIRY_MARGIN_SECONDS)
            token = IssuedToken(
                token_id=f"tok_{secrets.token_hex(12)}",
                key=key,
                secret=secret,
                token_sha256=hashed_token(secret.value),
                issued_at=now,
                expires_at=expires_at,
                ttl_seconds=ttl_seconds,
            )
            issuance = Issuance(token, fresh=True, expired=[current] if current is not None else [])
            if not await record(issuance):
                await minter.revoke(secret)
                return None
            self._tokens[key] = token
            return issuance

    async def end_run(self, run_id: str) -> list[IssuedToken]:
        """Revoke and forget every token of a run; returns them so the caller records token.revoked."""
        ended = [token for key, token in self._tokens.items() if key.run_id == run_id]
        for token in ended:
            self._forget(token.key)
            await self._minters[token.key.credential].revoke(token.secret)
        return ended

    def sweep(self, now: float | None = None) -> list[IssuedToken]:
        """Forget tokens past their expiry (memory stays flat); the caller records token.expired."""
        now = time.time() if now is None else now
        expired = [token for token in self._tokens.values() if token.expires_at <= now]
        for token in expired:
            self._forget(token.key)
        return expired

    def _forget(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]


def build_broker(credentials: Mapping[str, CredentialConfig]) -> Broker:
    return Broker({name: StaticMinter(name, config) for name, config in credentials.items()})
