"""Tokens, GitHub-style permission checks and credential parsing shared by the sandbox providers."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# GitHub App permission levels; a higher level includes the lower ones.
_LEVELS = {"read": 1, "write": 2, "admin": 3}
_PERMISSION_NAME = re.compile(r"^[a-z_]+$")


def grants(permissions: Mapping[str, str], permission: str, level: str) -> bool:
    """Whether `permissions` hold `permission` at `level` or higher."""
    held = permissions.get(permission)
    return held is not None and _LEVELS[held] >= _LEVELS[level]


def _check_permissions(permissions: Mapping[str, str], owner: str) -> None:
    for name, level in permissions.items():
        if not _PERMISSION_NAME.match(name) or level not in _LEVELS:
            raise ValueError(f"{owner}: bad permission {name!r}={level!r} (levels: read, write, admin)")


@dataclass(frozen=True)
class SandboxToken:
    """A token the sandbox accepts: `name` labels it in recordings; `secret` is never recorded.

    `permissions` uses GitHub App names and levels, e.g. {"contents": "write", "issues": "read"}.
    `repositories` limits it to some "owner/repo" names (like an installation token); None = all.
    """

    name: str
    secret: str = field(repr=False)
    permissions: Mapping[str, str]
    repositories: frozenset[str] | None = None
    expires_at: float | None = None  # installation tokens expire (an hour after minting on GitHub)

    def __post_init__(self) -> None:
        if not self.name or not self.secret:
            raise ValueError("a sandbox token needs a non-empty name and secret")
        _check_permissions(self.permissions, f"token {self.name!r}")

    def can_access(self, full_name: str) -> bool:
        if self.repositories is None:
            return True
        return full_name.lower() in {r.lower() for r in self.repositories}


@dataclass(frozen=True)
class Requirement:
    """What an endpoint needs: any one of `alternatives`, each a set of permission -> level.

    Written like GitHub's `X-Accepted-GitHub-Permissions` header: sets separated by ";",
    permissions within a set by ",", e.g. "issues=write; pull_requests=write".
    """

    alternatives: tuple[Mapping[str, str], ...]

    @classmethod
    def parse(cls, spec: str) -> Requirement:
        alternatives: list[Mapping[str, str]] = []
        for part in spec.split(";"):
            pairs: dict[str, str] = {}
            for item in part.split(","):
                name, sep, level = item.strip().partition("=")
                if not sep:
                    raise ValueError(f"requirement {spec!r}: expected permission=level, got {item.strip()!r}")
                pairs[name] = level
            _check_permissions(pairs, f"requirement {spec!r}")
            alternatives.append(pairs)
        return cls(tuple(alternatives))

    def satisfied_by(self, permissions: Mapping[str, str]) -> bool:
        return any(all(grants(permissions, p, lvl) for p, lvl in alt.items()) for alt in self.alternatives)

    def header_value(self) -> str:
        return "; ".join(",".join(f"{p}={lvl}" for p, lvl in alt.items()) for alt in self.alternatives)


@dataclass(frozen=True)
class Credential:
    """A credential as presented in an Authorization header (the secret must not be logged)."""

    scheme: str  # "Bearer", "token" or "Basic", as the client spelled it
    username: str | None  # Basic only
    secret: str = field(repr=False)


def parse_authorization(value: str | None) -> Credential | None:
    """Parses `Bearer <t>`, `token <t>` (as GitHub accepts) and `Basic base64(user:t)`."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if not rest:
        return None
    if scheme.lower() in ("bearer", "token"):
        return Credential(scheme, None, rest)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        return Credential(scheme, username, password) if sep and password else None
    return None


class TokenRegistry:
    """The set of valid tokens, looked up by secret. Tokens can be added (minted) and revoked; an
    expired or revoked token is never found, but its secret is still redacted from recordings."""

    def __init__(self, tokens: Iterable[SandboxToken] = ()) -> None:
        self._by_secret: dict[str, SandboxToken] = {}
        self._retired: dict[str, SandboxToken] = {}
        for token in tokens:
            self.add(token)

    def add(self, token: SandboxToken) -> None:
        if token.secret in self._by_secret or token.secret in self._retired:
            raise ValueError(f"token {token.name!r} reuses the secret of another token")
        self._by_secret[token.secret] = token

    def lookup(self, credential: Credential | None) -> SandboxToken | None:
        token = None if credential is None else self._by_secret.get(credential.secret)
        if token is not None and token.expires_at is not None and token.expires_at <= time.time():
            return None
        return token

    def named(self, name: str) -> SandboxToken | None:
        """A live token by its name (tests revoke minted tokens out of band with it)."""
        return next((t for t in self._by_secret.values() if t.name == name), None)

    def revoke(self, token: SandboxToken) -> None:
        if self._by_secret.pop(token.secret, None) is not None:
            self._retired[token.secret] = token

    def _known(self) -> Iterable[tuple[str, SandboxToken]]:
        yield from self._by_secret.items()
        yield from self._retired.items()

    def redact(self, text: str) -> str:
        """Replaces every known secret inside `text` with its marker."""
        for secret, token in self._known():
            text = text.replace(secret, token_marker(token.name))
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        for secret, token in self._known():
            data = data.replace(secret.encode(), token_marker(token.name).encode())
        return data


def token_marker(name: str) -> str:
    """How a recording shows a known token in place of its value."""
    return f"<token:{name}>"


UNKNOWN_CREDENTIAL_MARKER = "<unknown credential>"
