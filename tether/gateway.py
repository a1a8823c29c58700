"""Gateway mode: one tether for many agents, each authenticated with Proxy-Authorization Basic.

The agents file names every agent and holds its secret only as a scrypt hash:

    agents:
      agt_pr-review:                       # the agent id: the Proxy-Authorization user name
        name: pr-review-agent              # matched against policy `agents` globs
        secret_hash: "$scrypt$ln=14,r=8,p=1$<salt>$<hash>"   # from `tether agents hash`

Identity (and so the policy, the tokens and the ledger's attribution) follows the credential the
agent proved, never a header it could set to anything. A scrypt check costs tens of milliseconds, so
a credential that verified once is remembered under an HMAC with a per-process key (never the
secret itself) and later requests of that agent cost one HMAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tether.yamlpos import error_line, line_for, parse_with_lines, where

AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAX_CREDENTIAL = 1024
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 14, 8, 1
_B64 = r"([A-Za-z0-9+/]+={0,2})"
_HASH = re.compile(r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$" + _B64 + r"\$" + _B64 + "$")
_CACHE_LIMIT = 4096


class AgentsError(Exception):
    """An agents file that cannot be used; `lines` are `file:line: message`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Agent:
    """Who made a call: the sidecar's configured agent, or the agent a gateway authenticated."""

    agent_id: str
    agent_name: str


def hash_secret(secret: str, *, log_n: int = SCRYPT_LOG_N) -> str:
    """`$scrypt$ln=14,r=8,p=1$salt$hash` (base64): what goes into the agents file."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, log_n, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"$scrypt$ln={log_n},r={SCRYPT_R},p={SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, encoded: str) -> bool:
    match = _HASH.match(encoded)
    if match is None:
        return False
    log_n, r, p = int(match[1]), int(match[2]), int(match[3])
    expected = base64.b64decode(match[5])
    return hmac.compare_digest(_scrypt(secret, base64.b64decode(match[4]), log_n, r, p), expected)


def _scrypt(secret: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32)


class _AgentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="Agent name for policy `agents` globs (default: the id).")
    secret_hash: str = Field(description="scrypt hash from `tether agents hash`; never the secret.")

    @field_validator("secret_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        match = _HASH.match(value)
        if match is None:
            raise ValueError(
                "secret_hash must be a `tether agents hash` value ($scrypt$ln=..,r=..,p=..$..$..)"
            )
        if not 10 <= int(match[1]) <= 20:
            raise ValueError("secret_hash: ln (log2 of the scrypt cost) must be between 10 and 20")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not AGENT_ID.match(value):
            raise ValueError("name: 1-63 characters of letters, digits, '.', '_' or '-'")
        return value


class _AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: dict[str, _AgentEntry]

    @field_validator("agents")
    @classmethod
    def _ids(cls, value: dict[str, _AgentEntry]) -> dict[str, _AgentEntry]:
        for agent_id in value:
            if not AGENT_ID.match(agent_id):
                raise ValueError(
                    f"agent id {agent_id!r}: 1-63 characters of letters, digits, '.', '_' or '-'"
                )
        if not value:
            raise ValueError("name at least one agent")
        return value


@dataclass(frozen=True)
class _Known:
    agent: Agent
    secret_hash: str


def load_agents(path: Path) -> dict[str, _Known]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentsError([f"{path}: cannot read the agents file: {exc}"]) from None
    try:
        data, lines, duplicates = parse_with_lines(text)
    except yaml.YAMLError as exc:
        raise AgentsError([f"{path}:{error_line(exc) or 1}: invalid YAML"]) from None
    if duplicates:
        raise AgentsError([f"{path}:{line}: {message}" for line, message in duplicates])
    try:
        parsed = _AgentsFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        # No input values in messages: a mistaken secret in the file must not reach a log.
        raise AgentsError(
            [f"{path}:{line_for(lines, e['loc'])}: {where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from None
    return {
        agent_id: _Known(Agent(agent_id, entry.name or agent_id), entry.secret_hash)
        for agent_id, entry in parsed.agents.items()
    }


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) of a `Basic` credential; None when it is not one."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value or len(value) > MAX_CREDENTIAL:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@dataclass(frozen=True)
class AuthResult:
    agent: Agent | None
    problem: str | None  # "missing" | "malformed" | "unknown_agent" | "wrong_secret"
    claimed_id: str | None  # the user name the client sent, when it looks like an agent id


class Authenticator:
    """Checks Proxy-Authorization values against the agents file (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._agents = load_agents(path)
        self._digest = _digest(path)
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, Agent] = {}
        self._lock = threading.Lock()

    def reload(self) -> list[str] | None:
        """Re-read the agents file if its contents changed: None when unchanged, [] when the new file is
        in force (remembered credentials are forgotten, so a removed agent or a changed secret takes
        effect at once), else its errors (the previous agents stay in force)."""
        digest = _digest(self.path)
        if digest == self._digest:
            return None
        self._digest = digest
        try:
            agents = load_agents(self.path)
        except AgentsError as exc:
            return exc.lines
        with self._lock:
            self._agents = agents
            self._verified = {}
        return []

    @property
    def agents(self) -> list[Agent]:
        return [known.agent for known in self._agents.values()]

    def get(self, agent_id: str) -> Agent | None:
        known = self._agents.get(agent_id)
        return known.agent if known else None

    def cached(self, header: str | None) -> Agent | None:
        """The agent of a credential that verified before (one HMAC); None otherwise."""
        if not header:
            return None
        return self._verified.get(self._mac(header))

    def check(self, header: str | None) -> AuthResult:
        """Verify a `Basic id:secret` value (scrypt: call it off the event loop)."""
        if not header:
            return AuthResult(None, "missing", None)
        agent = self.cached(header)
        if agent is not None:
            return AuthResult(agent, None, agent.agent_id)
        basic = parse_basic(header)
        if basic is None:
            return AuthResult(None, "malformed", None)
        user, password = basic
        claimed = user if AGENT_ID.match(user) else None
        known = self._agents.get(user)
        if known is None:
            return AuthResult(None, "unknown_agent", claimed)
        if not verify_secret(password, known.secret_hash):
            return AuthResult(None, "wrong_secret", claimed)
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[self._mac(header)] = known.agent
        return AuthResult(known.agent, None, claimed)

    def _mac(self, header: str) -> bytes:
        return hmac.digest(self._key, header.strip().encode(errors="surrogateescape"), "sha256")


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
