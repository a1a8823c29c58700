"""The `ledger:` section of tether.yaml (signed checkpoints, witnesses, the audit endpoints)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ArchiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="s3://bucket/prefix: where sealed segments and their manifests go.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, ...).")
    region: str | None = Field(None, description="Region (default: boto3's configuration).")
    interval_seconds: float = Field(300.0, ge=1, le=86_400, description="How often sealed segments go out.")
    retention_days: int | None = Field(
        None, ge=1, description="Object Lock retention (COMPLIANCE) of archived objects; none: legal hold."
    )
    local_retention_days: float | None = Field(
        None, ge=0, description="Prune local events older than this once archived and confirmed; none: keep."
    )

    @field_validator("url")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        if not value.startswith("s3://") or not value[5:].split("/", 1)[0]:
            raise ValueError("archive url must look like s3://bucket/prefix")
        return value


class LedgerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    signing_key_file: Path | None = Field(
        None,
        description="Ed25519 checkpoint signing key (PRIVATE+KEY+… or PEM, mode 0600). Default:"
        " <state_dir>/ledger-signing.key, created on first start.",
    )
    checkpoint_every_events: int = Field(1000, ge=1, le=10_000_000, description="Checkpoint after N events.")
    checkpoint_every_seconds: float = Field(
        60.0, ge=0.1, le=86_400, description="Checkpoint at least this often, also when idle."
    )
    checkpoint_idle_seconds: float = Field(
        5.0, ge=0.1, le=86_400, description="Checkpoint this long after the last event when traffic stops."
    )
    witness_file: Path | None = Field(None, description="Append every checkpoint to this file (JSON Lines).")
    witness_url: str | None = Field(None, description="POST every checkpoint as JSON to this URL.")
    admin_token_file: Path | None = Field(
        None, description="File holding the admin token for GET /v1/verify and /v1/export/digests."
    )
    admin_token_env: str | None = Field(None, description="Environment variable holding the admin token.")
    archive: ArchiveSettings | None = Field(None, description="Archive sealed segments to S3 (and prune).")

    @field_validator("witness_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("witness_url must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> LedgerSettings:
        if self.admin_token_file is not None and self.admin_token_env is not None:
            raise ValueError("set at most one of admin_token_file or admin_token_env")
        return self

    def signing_key_path(self, state_dir: Path) -> Path:
        return self.signing_key_file or state_dir / "ledger-signing.key"  # checkpoint.DEFAULT_KEY_FILE

    def admin_token(self) -> str | None:
        """The admin token, or None when none is configured (the audit endpoints then refuse everyone)."""
        if self.admin_token_env is not None:
            return os.environ.get(self.admin_token_env) or None
        if self.admin_token_file is not None:
            return self.admin_token_file.read_text(encoding="utf-8").strip() or None
        return None
