"""Sidecar configuration: `tether.yaml` overridden by `TETHER_*` environment variables.

A bad file fails at start with `file:line: message` lines (ConfigError), never a traceback.
Secrets are never written inline: credentials name a file or an environment variable.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tether.analysis.settings import AnomalySettings
from tether.credential_types import (
    GitHubAppCredential,
    GoogleServiceAccountCredential,
    InjectSettings,
    MintedCredential,
    OAuth2Credential,
    SlackCredential,
)
from tether.ledger.settings import LedgerSettings
from tether.sinks.config import SinkConfig, check_unique
from tether.yamlpos import LineMap, error_line, line_for, parse_with_lines

_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ConfigError(Exception):
    """A configuration that cannot be used; `lines` are `file:line: message`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def split_host_port(value: str, *, what: str) -> tuple[str, int]:
    match = _HOST_PORT.match(value)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{what} must be HOST:PORT, got {value!r}")
    return match["host"].strip("[]"), int(match["port"])


class CredentialConfig(InjectSettings):
    """A static secret (API key, PAT, bot token), read from a file or an environment variable."""

    type: Literal["static"] = Field("static", description="static, or a minting type (see README).")
    secret_file: Path | None = Field(None, description="File holding the secret (trailing newline ignored).")
    secret_env: str | None = Field(None, description="Environment variable holding the secret.")

    @model_validator(mode="after")
    def _one_source(self) -> CredentialConfig:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("set exactly one of secret_file or secret_env (secrets are never inline)")
        return self


def _credential_type(value: Any) -> str:
    return str(value.get("type", "static") if isinstance(value, dict) else getattr(value, "type", "static"))


CREDENTIAL_TYPES = ("static", "github_app", "slack", "google_service_account", "oauth2")

# A `credentials:` entry: its `type:` (default static) picks the model.
AnyCredential = Annotated[
    Annotated[CredentialConfig, Tag("static")]
    | Annotated[GitHubAppCredential, Tag("github_app")]
    | Annotated[SlackCredential, Tag("slack")]
    | Annotated[GoogleServiceAccountCredential, Tag("google_service_account")]
    | Annotated[OAuth2Credential, Tag("oauth2")],
    Discriminator(
        _credential_type,
        custom_error_type="credential_type",
        custom_error_message=f"type must be one of: {', '.join(CREDENTIAL_TYPES)}",
    ),
]


class UpstreamOverride(_Model):
    """Send traffic for a host to another address, like curl --resolve (mirrors, GHE, tests)."""

    address: str = Field(description="HOST:PORT to connect to instead; TLS still verifies the original name.")
    ca_file: Path | None = Field(None, description="Extra CA (PEM) trusted for this upstream.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_host_port(value, what="address")
        return value


class TetherConfig(_Model):
    agent_id: str = Field("", description="Stable agent id (agt_...); derived from agent_name when empty.")
    agent_name: str = Field("agent", description="Agent name matched against policy `agents` globs.")
    proxy_listen: str = Field("127.0.0.1:8080", description="Proxy listen address HOST:PORT.")
    api_listen: str = Field("127.0.0.1:8081", description="Control API listen address HOST:PORT.")
    state_dir: Path = Field(Path("state"), description="CA, ledger and runtime state.")
    ledger_path: Path | None = Field(None, description="SQLite ledger; default <state_dir>/ledger.db.")
    policy_files: tuple[Path, ...] = Field((), description="Policy YAML files (hot reloaded).")
    policy_reload_seconds: float = Field(2.0, ge=0.2, le=3600)
    credentials: Mapping[str, AnyCredential] = Field(default_factory=dict)
    fail_mode: Literal["closed", "open"] = Field(
        "closed", description="closed: 503 when the ledger cannot record; open: forward anyway (logged)."
    )
    upstream_overrides: Mapping[str, UpstreamOverride] = Field(default_factory=dict)
    upstream_timeout_seconds: float = Field(30.0, gt=0, le=600)
    anomalies: AnomalySettings = Field(
        default_factory=AnomalySettings, description="Behavioural baselines and anomaly thresholds."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Larger request bodies get 413 (responses: 1 GiB backstop)."
    )
    sinks: tuple[SinkConfig, ...] = Field((), description="SIEM destinations the ledger is shipped to.")
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)

    @field_validator("proxy_listen", "api_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_host_port(value, what="listen address")
        return value

    @field_validator("agent_name")
    @classmethod
    def _agent_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("agent_name: 1-63 characters of letters, digits, '.', '_' or '-'")
        return value

    @field_validator("credentials")
    @classmethod
    def _credential_names(cls, value: Mapping[str, AnyCredential]) -> Mapping[str, AnyCredential]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"credential name {name!r}: letters, digits, '.', '_' or '-'")
        return value

    @field_validator("upstream_overrides")
    @classmethod
    def _override_hosts(cls, value: Mapping[str, UpstreamOverride]) -> Mapping[str, UpstreamOverride]:
        return {host.lower(): override for host, override in value.items()}

    @field_validator("sinks")
    @classmethod
    def _sink_names(cls, value: tuple[SinkConfig, ...]) -> tuple[SinkConfig, ...]:
        return check_unique(value)

    @property
    def effective_agent_id(self) -> str:
        return self.agent_id or f"agt_{self.agent_name}"

    @property
    def effective_ledger_path(self) -> Path:
        return self.ledger_path or self.state_dir / "ledger.db"

    @property
    def ca_cert_path(self) -> Path:
        """The CA agents must trust; mitmproxy creates it in the state dir on first start."""
        return self.state_dir / "mitmproxy-ca-cert.pem"

    @property
    def proxy_address(self) -> tuple[str, int]:
        return split_host_port(self.proxy_listen, what="proxy_listen")

    @property
    def api_address(self) -> tuple[str, int]:
        return split_host_port(self.api_listen, what="api_listen")

    def check_secrets(self) -> list[str]:
        """Problems with the secret sources, without reading values into messages."""
        problems = []
        for name, cred in self.credentials.items():
            if isinstance(cred, MintedCredential):
                problems.extend(cred.problems(name))
                continue
            if cred.secret_file is not None and not cred.secret_file.is_file():
                problems.append(f"credentials.{name}.secret_file: no such file: {cred.secret_file}")
            if cred.secret_env is not None and not os.environ.get(cred.secret_env):
                problems.append(
                    f"credentials.{name}.secret_env: environment variable {cred.secret_env} is unset"
                )
        token_file, token_env = self.ledger.admin_token_file, self.ledger.admin_token_env
        if token_file is not None and not token_file.is_file():
            problems.append(f"ledger.admin_token_file: no such file: {token_file}")
        if token_env is not None and not os.environ.get(token_env):
            problems.append(f"ledger.admin_token_env: environment variable {token_env} is unset")
        for host, override in self.upstream_overrides.items():
            if override.ca_file is not None and not override.ca_file.is_file():
                problems.append(f"upstream_overrides.{host}.ca_file: no such file: {override.ca_file}")
        for index, sink in enumerate(self.sinks):
            problems.extend(sink.secret_problems(f"sinks.{index}"))
        return problems


# TETHER_* environment variables that override top-level scalar settings.
_ENV_KEYS = {
    "TETHER_AGENT_ID": "agent_id",
    "TETHER_AGENT_NAME": "agent_name",
    "TETHER_PROXY_LISTEN": "proxy_listen",
    "TETHER_API_LISTEN": "api_listen",
    "TETHER_STATE_DIR": "state_dir",
    "TETHER_LEDGER_PATH": "ledger_path",
    "TETHER_FAIL_MODE": "fail_mode",
}


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {key: environ[var] for var, key in _ENV_KEYS.items() if environ.get(var)}
    if environ.get("TETHER_POLICY_FILES"):
        values["policy_files"] = [p for p in environ["TETHER_POLICY_FILES"].split(os.pathsep) if p]
    return values


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Relative paths in a config file are relative to the file, as users expect."""

    def rel(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and not os.path.isabs(value) else value

    for key in ("state_dir", "ledger_path"):
        if key in data:
            data[key] = rel(data[key])
    if isinstance(data.get("policy_files"), list):
        data["policy_files"] = [rel(p) for p in data["policy_files"]]
    ledger = data.get("ledger")
    if isinstance(ledger, dict):
        for key in ("signing_key_file", "witness_file", "admin_token_file"):
            if key in ledger:
                ledger[key] = rel(ledger[key])
    for section, suffix in (("credentials", "_file"), ("upstream_overrides", "ca_file")):
        entries = data.get(section)
        if isinstance(entries, dict):
            for entry in entries.values():
                if isinstance(entry, dict):
                    for key in entry:
                        if key.endswith(suffix):  # every credential file: secret, private key, ...
                            entry[key] = rel(entry[key])
    if isinstance(data.get("sinks"), list):
        for sink in data["sinks"]:
            for key in ("secret_file", "ca_file"):
                if isinstance(sink, dict) and key in sink:
                    sink[key] = rel(sink[key])
            if (
                isinstance(sink, dict)
                and sink.get("type") == "file"
                and isinstance(sink.get("path"), str)
                and sink["path"] != "-"
            ):
                sink["path"] = rel(sink["path"])


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> TetherConfig:
    """Load `path` (None: defaults only), apply TETHER_* overrides, validate; raise ConfigError."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    lines: LineMap = {}
    label = str(path) if path else "<environment>"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: cannot read config: {exc}"]) from None
        try:
            loaded, lines, duplicates = parse_with_lines(text)
        except yaml.YAMLError as exc:
            line = error_line(exc) or 1
            raise ConfigError([f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
        if duplicates:
            raise ConfigError([f"{path}:{line}: {message}" for line, message in duplicates])
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"{path}:1: the config must be a mapping of settings"])
        data = loaded
        _resolve_paths(data, path.parent)
    data.update(_env_overrides(environ))
    try:
        config = TetherConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [
                f"{label}:{line_for(lines, _loc(err['loc']))}: {_where(_loc(err['loc']))}{err['msg']}"
                for err in exc.errors()
            ]
        ) from None
    problems = config.check_secrets()
    if problems:
        raise ConfigError([f"{label}:{line_for(lines, _loc_of(p))}: {p}" for p in problems])
    return config


def _loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Without the union tag pydantic puts after a credential's name (credentials.gh.github_app.x)."""
    if len(loc) > 2 and loc[0] == "credentials" and loc[2] in CREDENTIAL_TYPES:
        return loc[:2] + loc[3:]
    return loc


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) + ": " if loc else ""


def _loc_of(problem: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in problem.split(":", 1)[0].split("."))


def new_run_id() -> str:
    return f"run_{secrets.token_hex(8)}"
