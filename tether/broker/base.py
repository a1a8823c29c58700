"""Credential broker: one token per (agent, run, provider, granted scopes), never shared across runs.

Minters produce secret values; the broker caches, expires and revokes them and gives every issuance
its own `token_id`. It mints once per key even under concurrent first calls (single flight), retries
a provider's 5xx and timeouts with backoff inside the credential's deadline, and revokes minted
tokens at the provider when their run ends or their policy ttl runs out. The minters (static here,
GitHub App, Google, Slack, OAuth2 in their own modules) implement the `Minter` protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tether.config import CredentialConfig

log = logging.getLogger("tether")


class MintError(Exception):
    """A token could not be produced; the message is safe to show (it never holds a secret).

    `status` is the provider's HTTP status when it answered; `retryable` marks 5xx, 429, timeouts and
    network errors, which the broker retries inside the credential's deadline. `sent` marks errors
    after the request may have reached the provider (timeouts, a dropped connection, 5xx): the
    provider may have acted on it, so a spent single-use refresh token is not presented again."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, sent: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.sent = sent


@dataclass(frozen=True)
class MintRequest:
    agent_id: str
    run_id: str
    provider: str
    scopes: tuple[str, ...]
    ttl_seconds: int
    native_permissions: Mapping[str, str]
    target: str | None = None  # what the minter partitions tokens by (GitHub: the owner's installation)
    repositories: tuple[str, ...] | None = None  # the policy's repository globs (GitHub), lower-case
    repository: str | None = None  # the `owner/repo` of the call that asked, a hint for the minter


@dataclass(frozen=True)
class MintedSecret:
    value: str = field(repr=False)
    expires_at: float | None  # the provider's own expiry, if it has one
    source: str  # where it came from, e.g. "static:github-bot" or "github_app:12345/installation:678"
    minted: bool  # False for static secrets that tether only hands out


class Minter(Protocol):
    # Total time for one issuance, retries included (0: no retries).
    deadline_seconds: float
    # Each mint spends a single-use refresh token: errors once the request was sent are not retried.
    spends_refresh_token: bool

    def target(self, owner: str | None) -> str | None:
        """The part of a request that selects a different token (GitHub: which installation)."""
        ...

    async def mint(self, request: MintRequest) -> MintedSecret: ...

    async def revoke(self, secret: MintedSecret) -> bool:
        """Invalidate the secret at the provider: True when it did, False when the provider has
        nothing to revoke for it; raises MintError when the provider refuses or cannot be reached."""
        ...


def hashed_token(value: str) -> str:
    """GitHub's `hashed_token` form: base64 of the SHA-256 of the token."""
    return base64.b64encode(hashlib.sha256(value.encode()).digest()).decode()


class StaticMinter:
    """Hands out a configured secret, re-read at each issuance so rotated files take effect."""

    deadline_seconds = 0.0
    spends_refresh_token = False

    def __init__(self, name: str, config: CredentialConfig) -> None:
        self.name = name
        self.config = config

    def target(self, owner: str | None) -> str | None:
        return None

    async def mint(self, request: MintRequest) -> MintedSecret:
        return MintedSecret(value=self.read(), expires_at=None, source=f"static:{self.name}", minted=False)

    async def revoke(self, secret: MintedSecret) -> bool:
        """A static secret outlives the run; revocation only retires its token_id."""
        return False

    def read(self) -> str:
        if self.config.secret_file is not None:
            return read_secret_file(self.config.secret_file, f"credential {self.name}", "secret file")
        where = f"credential {self.name}: environment variable {self.config.secret_env}"
        return _checked_secret(os.environ.get(self.config.secret_env or "", "").strip(), where)


def _checked_secret(value: str, where: str) -> str:
    if not value:
        raise MintError(f"{where} is empty")
    if any(ch in value for ch in "\r\n\0"):
        raise MintError(f"{where} holds a line break or NUL")
    return value


def read_secret_file(path: Path, where: str, what: str) -> str:
    """A one-line secret from a file (trailing newline ignored); errors never hold the value."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise MintError(f"{where}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MintError(f"{where}: {what} is not UTF-8 text") from None
    return _checked_secret(value, f"{where}: {what}")


def write_secret_file(path: Path, value: str) -> None:
    """Replace a secret file atomically and durably (mode 0600): a crash leaves the old or the new
    value complete, never a torn one, and the new one is on disk before this returns."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself is durable
    finally:
        os.close(directory)


async def run_to_end[T](step: Coroutine[Any, Any, T]) -> T:
    """Await `step` in a task that cancelling the caller (the mint deadline) does not stop: a
    refresh-token rotation must reach its persist once the provider may have rotated. An error that
    comes after the caller gave up has no one left to tell (the caller reported its deadline)."""
    task = asyncio.ensure_future(step)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(task)


class RefreshTokenFile:
    """The file of a rotating single-use refresh token. A rotated token that cannot be written stays
    current in memory (the file is stale, which is logged): the next mint spends it and retries the
    write first, so a full disk or a read-only mount never loses the chain."""

    WHAT = "refresh_token_file"

    def __init__(self, path: Path, where: str) -> None:
        self.path = path
        self.where = where
        self._unsaved: str | None = None  # the current refresh token when the file is stale

    async def current(self) -> str:
        unsaved = self._unsaved
        if unsaved is None:
            return await asyncio.to_thread(read_secret_file, self.path, self.where, self.WHAT)
        await self.save(unsaved)
        return unsaved

    async def save(self, value: str) -> None:
        try:
            await asyncio.to_thread(write_secret_file, self.path, value)
        except OSError as exc:
            self._unsaved = value
            log.error(
                "%s: cannot write %s (%s): the file is stale, the rotated refresh token is kept in memory",
                self.where,
                self.WHAT,
                exc.strerror,
            )
            return
        self._unsaved = None


@dataclass(frozen=True)
class TokenKey:
    agent_id: str
    run_id: str
    provider: str
    credential: str
    scopes: tuple[str, ...]
    target: str | None = None  # Minter.target of the request, e.g. the GitHub owner
    repositories: tuple[str, ...] | None = None  # the policy's repository narrowing


@dataclass(frozen=True)
class TokenOrigin:
    """Why the token was issued, repeated on every event of its lifecycle."""

    scope_requested: tuple[str, ...] | None = None  # the agent's ask (None: the policy's grant)
    downscoped: bool = False
    policy_id: str | None = None
    source_ip: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    key: TokenKey
    secret: MintedSecret
    token_sha256: str
    issued_at: float
    expires_at: float  # the earlier of the policy ttl and the provider's expiry
    ttl_seconds: int
    origin: TokenOrigin = TokenOrigin()

    @property
    def value(self) -> str:
        return self.secret.value


@dataclass(frozen=True)
class Retired:
    """A token taken out of use: revoked at the provider, or not (nothing to revoke there, or
    `revoke_error` says why the provider did not confirm it)."""

    token: IssuedToken
    at_provider: bool = False
    revoke_error: str | None = None


@dataclass
class Issuance:
    token: IssuedToken
    fresh: bool  # minted for this call: the caller records token.minted
    expired: list[Retired]  # retired on the way: the caller records token.expired


RecordIssuance = Callable[[Issuance], Awaitable[bool]]


class Broker:
    """Caches issued tokens per key; expires them at the policy ttl; retires them when a run ends."""

    # Renew this long before the provider's own expiry (at most a tenth of the token's lifetime, so a
    # short-lived one is still reused), so a token never dies mid-request.
    EXPIRY_MARGIN_SECONDS = 60.0
    RETRY_FIRST_DELAY = 0.2
    RETRY_MAX_DELAY = 2.0
    MAX_ENDED_RUNS = 10_000

    def __init__(
        self, minters: Mapping[str, Minter], close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._minters = dict(minters)
        self._close = close
        self._tokens: dict[TokenKey, IssuedToken] = {}
        # Per-key locks (single flight), kept while the key holds a token or a caller uses the lock.
        self._locks: dict[TokenKey, _KeyLock] = {}
        # The last failed mint per key: callers that waited on it get its error instead of retrying.
        self._failures: dict[TokenKey, tuple[float, MintError]] = {}
        # Keys whose token the provider refused, until when (monotonic): one re-mint per policy ttl.
        self._rejected: dict[TokenKey, float] = {}
        # Runs that ended, newest last (bounded): a mint racing the end of its run is revoked, not used.
        self._ended_runs: dict[tuple[str, str], None] = {}  # (agent_id, run_id)

    def has_credential(self, name: str) -> bool:
        return name in self._minters

    def target(self, credential: str, owner: str | None) -> str | None:
        minter = self._minters.get(credential)
        return minter.target(owner) if minter is not None else None

    async def issue(
        self,
        key: TokenKey,
        *,
        ttl_seconds: int,
        native: Mapping[str, str],
        record: RecordIssuance,
        origin: TokenOrigin = TokenOrigin(),
        repository: str | None = None,
    ) -> Issuance | None:
        """The token for `key`, minting one when there is none or it expired.

        A fresh token (with the expired one it replaces) is handed to `record` while the key is
        locked, and is cached and returned only once `record` returns True — so no call, not even a
        concurrent one, can use a token whose `token.minted` is not on record. None when it is not.
        Concurrent callers wait for one mint; when it fails they all get its MintError."""
        arrived = time.monotonic()
        async with self._locked(key):
            failed = self._failures.get(key)
            if failed is not None and failed[0] >= arrived:
                raise failed[1]
            now = time.time()
            self._refuse_ended(key)
            current = self._tokens.get(key)
            if current is not None and current.expires_at > now:
                return Issuance(current, fresh=False, expired=[])
            minter = self._minters.get(key.credential)
            if minter is None:
                raise MintError(f"no credential named {key.credential!r} is configured")
            request = MintRequest(
                key.agent_id,
                key.run_id,
                key.provider,
                key.scopes,
                ttl_seconds,
                native,
                target=key.target,
                repositories=key.repositories,
                repository=repository,
            )
            try:
                secret = await self._mint(minter, request)
            except MintError as exc:
                self._failures[key] = (time.monotonic(), exc)
                raise
            self._failures.pop(key, None)
            now = time.time()
            expires_at = now + ttl_seconds
            if secret.expires_at is not None:
                margin = min(self.EXPIRY_MARGIN_SECONDS, max(secret.expires_at - now, 0) / 10)
                expires_at = min(expires_at, secret.expires_at - margin)
            token = IssuedToken(
                token_id=f"tok_{secrets.token_hex(12)}",
                key=key,
                secret=secret,
                token_sha256=hashed_token(secret.value),
                issued_at=now,
                expires_at=expires_at,
                ttl_seconds=ttl_seconds,
                origin=origin,
            )
            # The run ended during the mint: end_run takes `current`.
            if (key.agent_id, key.run_id) in self._ended_runs:
                await self._revoke(token)
                self._refuse_ended(key)
            expired: list[Retired] = []
            if current is not None:
                self._tokens.pop(key, None)
                expired.append(await self._revoke(current))
            issuance = Issuance(token, fresh=True, expired=expired)
            if not await record(issuance):
                await self._revoke(token)
                # Waiters share this outcome rather than each minting (and rotating) in turn.
                unrecorded = MintError("the new token could not be recorded in the ledger")
                self._failures[key] = (time.monotonic(), unrecorded)
                return None
            self._tokens[key] = token
            return issuance

    async def _mint(self, minter: Minter, request: MintRequest) -> MintedSecret:
        """One mint, retried with exponential backoff on retryable errors until the deadline."""
        deadline = time.monotonic() + minter.deadline_seconds
        delay = self.RETRY_FIRST_DELAY
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - time.monotonic()
            try:
                if minter.deadline_seconds <= 0:
                    return await minter.mint(request)
                return await asyncio.wait_for(minter.mint(request), timeout=max(remaining, 0.001))
            except TimeoutError:
                error = MintError(
                    f"no token within the {minter.deadline_seconds:g}s deadline", retryable=True, sent=True
                )
            except MintError as exc:
                error = exc
            if not error.retryable or (error.sent and minter.spends_refresh_token):
                raise error
            if deadline - time.monotonic() <= delay:
                tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                raise MintError(f"{error} (gave up after {tries})", status=error.status) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.RETRY_MAX_DELAY)

    async def reject(self, token: IssuedToken) -> Retired | None:
        """The provider refused a minted `token` (401): retire it so the next call mints a fresh one,
        once per key and policy ttl — a fresh token refused again is kept (the calls fail) rather than
        minting in a loop. None when nothing was retired (static secret, already replaced, or the
        re-mint was used)."""
        key = token.key
        if not token.secret.minted or self._rejected.get(key, 0.0) > time.monotonic():
            return None
        async with self._locked(key):
            if self._tokens.get(key) is not token:
                return None
            self._tokens.pop(key, None)
            self._rejected[key] = time.monotonic() + token.ttl_seconds
        return await self._revoke(token)

    def _refuse_ended(self, key: TokenKey) -> None:
        if (key.agent_id, key.run_id) in self._ended_runs:
            raise MintError(f"run {key.run_id} has ended: no new tokens are issued for it")

    async def end_run(self, agent_id: str, run_id: str) -> list[Retired]:
        """Revoke and forget every token of an agent's run, and issue none for it any more; the caller
        records token.revoked. Each key's lock is taken first, so a mint under way is collected too.
        Scoped to the agent: in gateway mode another agent may use the same run id."""
        self._ended_runs[(agent_id, run_id)] = None
        while len(self._ended_runs) > self.MAX_ENDED_RUNS:
            del self._ended_runs[next(iter(self._ended_runs))]
        ended: list[IssuedToken] = []
        for key in [k for k in {*self._locks, *self._tokens} if (k.agent_id, k.run_id) == (agent_id, run_id)]:
            async with self._locked(key):
                token = self._tokens.pop(key, None)
                if token is not None:
                    ended.append(token)
        self._failures = {
            k: v for k, v in self._failures.items() if (k.agent_id, k.run_id) != (agent_id, run_id)
        }
        self._rejected = {k: v for k, v in self._rejected.items() if k.run_id != run_id}
        return [await self._revoke(token) for token in ended]

    async def sweep(self, now: float | None = None) -> list[Retired]:
        """Revoke and forget tokens past their expiry (memory stays flat); the caller records
        token.expired."""
        now = time.time() if now is None else now
        expired = [token for token in self._tokens.values() if token.expires_at <= now]
        for token in expired:
            self._forget(token.key)
        stale = time.monotonic() - 60
        self._failures = {k: v for k, v in self._failures.items() if v[0] > stale}
        self._rejected = {k: v for k, v in self._rejected.items() if v > time.monotonic()}
        return [await self._revoke(token) for token in expired]

    async def _revoke(self, token: IssuedToken) -> Retired:
        try:
            at_provider = await self._minters[token.key.credential].revoke(token.secret)
        except MintError as exc:
            log.warning("could not revoke %s at the provider: %s", token.token_id, exc)
            return Retired(token, revoke_error=str(exc))
        return Retired(token, at_provider=at_provider)

    async def close(self) -> None:
        """Release the minters' connections (after the last run ended)."""
        if self._close is not None:
            await self._close()

    @contextlib.asynccontextmanager
    async def _locked(self, key: TokenKey) -> AsyncIterator[None]:
        """Hold `key`'s lock; the lock is dropped once no caller uses it and the key holds no token,
        so keys that never got one (a failed mint, an agent changing run ids) leave nothing behind."""
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and key not in self._tokens and self._locks.get(key) is entry:
                del self._locks[key]

    def _forget(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)
        entry = self._locks.get(key)
        if entry is not None and entry.users == 0:
            del self._locks[key]


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # callers holding or waiting for the lock
