"""The `sinks:` section of tether.yaml: one entry per SIEM destination, each with its own cursor.

Secrets (HEC token, Datadog API key, OTLP header value) come from `secret_file` or `secret_env`, never
inline, like credentials. `address` and `ca_file` send a sink to another HOST:PORT and trust an extra
CA while TLS still verifies the configured name (like `upstream_overrides`, which sinks also honour).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

DATADOG_SITES = (
    "datadoghq.com",
    "datadoghq.eu",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
)
# Short names accepted for `site`, as Datadog's docs name them.
_SITE_ALIASES = {"us1": "datadoghq.com", "eu": "datadoghq.eu", "us3": "us3.datadoghq.com",
                 "us5": "us5.datadoghq.com", "ap1": "ap1.datadoghq.com", "ap2": "ap2.datadoghq.com",
                 "gov": "ddog-gov.com"}  # fmt: skip


class SinkConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique sink name; its cursor and dead letters are kept under it.")
    format: Literal["native", "ocsf"] = Field("native", description="native tether events or OCSF.")
    batch_max_events: int = Field(500, ge=1, le=10_000, description="Events per request at most.")
    batch_max_bytes: int = Field(1_000_000, ge=1024, le=50_000_000, description="Uncompressed bytes.")
    flush_seconds: float = Field(1.0, gt=0, le=300, description="Send a partial batch after this long.")
    backoff_initial_seconds: float = Field(0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(60.0, gt=0, le=3600)
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="Per request.")
    shutdown_flush_seconds: float = Field(10.0, ge=0, le=600, description="Flush deadline at shutdown.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("sink name: 1-63 characters of letters, digits, '.', '_' or '-'")
        return value

    def secret_problems(self, where: str) -> list[str]:
        return []


class SecretSource(BaseModel):
    secret_file: Path | None = Field(None, description="File holding the secret (trailing newline ignored).")
    secret_env: str | None = Field(None, description="Environment variable holding the secret.")

    def read_secret(self) -> str | None:
        """The secret, or None when the sink has none; OSError/KeyError when its source is gone."""
        if self.secret_file is not None:
            return self.secret_file.read_text(encoding="utf-8").strip()
        if self.secret_env is not None:
            return os.environ[self.secret_env]
        return None

    def _secret_problems(self, where: str) -> list[str]:
        if self.secret_file is not None and not self.secret_file.is_file():
            return [f"{where}.secret_file: no such file: {self.secret_file}"]
        if self.secret_env is not None and not os.environ.get(self.secret_env):
            return [f"{where}.secret_env: environment variable {self.secret_env} is unset"]
        return []


class HttpSinkConfig(SinkConfigBase, SecretSource):
    address: str | None = Field(
        None, description="Connect to HOST:PORT instead; TLS verifies the URL's name."
    )
    ca_file: Path | None = Field(None, description="Extra CA (PEM) trusted for this sink.")
    gzip: bool = Field(True, description="Content-Encoding: gzip request bodies.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        from tether.config import split_host_port  # tether.config imports this module

        if value is not None:
            split_host_port(value, what="address")
        return value

    def secret_problems(self, where: str) -> list[str]:
        problems = self._secret_problems(where)
        if self.ca_file is not None and not self.ca_file.is_file():
            problems.append(f"{where}.ca_file: no such file: {self.ca_file}")
        return problems


def _one_secret(model: SecretSource, *, required: bool) -> None:
    if model.secret_file is not None and model.secret_env is not None:
        raise ValueError("set only one of secret_file or secret_env")
    if required and model.secret_file is None and model.secret_env is None:
        raise ValueError("set secret_file or secret_env (secrets are never inline)")


def _https_url(value: str, *, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL such as https://splunk.example.com:8088")
    if parts.username is not None or parts.password is not None:
        # It would travel in error messages and logs; secrets come only from secret_file/secret_env.
        raise ValueError(f"{what} must not hold credentials (user:password@); use secret_file or secret_env")
    return value.rstrip("/")


class SplunkHecSink(HttpSinkConfig):
    type: Literal["splunk_hec"]
    url: str = Field(description="HEC base URL, e.g. https://splunk.example.com:8088")
    index: str | None = Field(None, description="Target index (a dedicated one, e.g. agent_tokens).")
    source: str = "tether"
    sourcetype: str = "tether:event"
    host: str | None = Field(None, description="Envelope host; default: this machine's hostname.")
    ack: bool = Field(False, description="Use indexer acknowledgment (token with useACK).")
    ack_timeout_seconds: float = Field(60.0, gt=0, le=3600, description="Resend when not acked by then.")
    ack_poll_seconds: float = Field(1.0, gt=0, le=60)
    health_check: bool = Field(True, description="GET /services/collector/health at start.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _https_url(value, what="url")

    @model_validator(mode="after")
    def _secret(self) -> SplunkHecSink:
        _one_secret(self, required=True)
        return self


class DatadogSink(HttpSinkConfig):
    type: Literal["datadog"]
    site: str = Field("datadoghq.com", description="Datadog site: " + ", ".join(DATADOG_SITES))
    ddsource: str = "tether"
    service: str = "agent-auth"
    ddtags: str = Field("", description="Comma-separated tags, e.g. env:prod,team:sec")
    hostname: str | None = Field(None, description="Default: this machine's hostname.")

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        site = _SITE_ALIASES.get(value, value)
        if site not in DATADOG_SITES:
            raise ValueError(f"unknown Datadog site {value!r}; one of: {', '.join(DATADOG_SITES)}")
        return site

    @property
    def url(self) -> str:
        return f"https://http-intake.logs.{self.site}/api/v2/logs"

    @model_validator(mode="after")
    def _secret(self) -> DatadogSink:
        _one_secret(self, required=True)
        return self


class OtlpSink(HttpSinkConfig):
    type: Literal["otlp"]
    endpoint: str = Field(description="OTLP/HTTP base URL, e.g. https://collector:4318 (POSTs to /v1/logs).")
    secret_header: str = Field("Authorization", description="Header carrying the secret, if one is set.")
    secret_prefix: str = Field("Bearer ", description="Prefix before the secret in that header.")
    service_name: str = "tether"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _https_url(value, what="endpoint")

    @model_validator(mode="after")
    def _secret(self) -> OtlpSink:
        _one_secret(self, required=False)
        return self


class SyslogSink(SinkConfigBase):
    type: Literal["syslog"]
    address: str = Field(description="Syslog receiver HOST:PORT (6514 is the RFC 5425 TLS port).")
    tls: bool = Field(True, description="RFC 5425 TLS; false sends plain TCP (RFC 6587 octet counting).")
    server_name: str | None = Field(None, description="Name TLS verifies; default: the address's host.")
    ca_file: Path | None = Field(None, description="Extra CA (PEM) trusted for the receiver.")
    facility: int = Field(13, ge=0, le=23, description="RFC 5424 facility; 13 is log audit.")
    app_name: str = Field("tether", pattern=r"^[!-~]{1,48}$")
    hostname: str | None = Field(None, description="HOSTNAME field; default: this machine's hostname.")
    sd_id: str = Field(
        "tether@32473",
        pattern=r"^[!#-<>-\\^-~]{1,32}$",
        description="SD-ID of the structured data (name@<your IANA enterprise number>; 32473 is the "
        "documentation number of RFC 5612).",
    )
    max_message_bytes: int = Field(
        65536, ge=2048, le=16 * 1024 * 1024, description="Larger messages are parked, never truncated."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        from tether.config import split_host_port  # tether.config imports this module

        split_host_port(value, what="address")
        return value

    def secret_problems(self, where: str) -> list[str]:
        if self.ca_file is not None and not self.ca_file.is_file():
            return [f"{where}.ca_file: no such file: {self.ca_file}"]
        return []


class FileSink(SinkConfigBase):
    type: Literal["file"]
    path: str = Field(description="JSON Lines file, or '-' for stdout.")
    rotate_bytes: int = Field(100 * 1024 * 1024, ge=1024, description="Rotate when the file would exceed it.")
    keep_files: int = Field(5, ge=1, le=1000, description="Rotated files kept (path.1 … path.N).")
    flush_seconds: float = Field(0.2, gt=0, le=300)


SinkConfig = Annotated[
    SplunkHecSink | DatadogSink | OtlpSink | SyslogSink | FileSink, Field(discriminator="type")
]


def check_unique(sinks: tuple[SinkConfig, ...]) -> tuple[SinkConfig, ...]:
    seen: set[str] = set()
    for sink in sinks:
        if sink.name in seen:
            raise ValueError(f"sink name {sink.name!r} is used twice (each sink keeps its own cursor)")
        seen.add(sink.name)
    return sinks
