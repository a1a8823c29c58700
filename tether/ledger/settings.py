"""The `ledger:` section of tether.yaml (signed checkpoints, witnesses, the audit endpoints)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
        return self.signing_key_file or state_dir / "ledger-signing.key"

    def admin_token(self) -> str | None:
        """The admin token, or None when none is configured (the audit endpoints then refuse everyone)."""
        if self.admin_token_env is not None:
            return os.environ.get(self.admin_token_env) or None
        if self.admin_token_file is not None:
            return self.admin_token_file.read_text(encoding="utf-8").strip() or None
        return None
