"""Starts the real sidecar (`tether run` in a subprocess, real sockets) next to sandbox providers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tether.sandbox.providers import SandboxProviders
from tether.sandbox.sidecar import SidecarProcess

# The only real-looking secret the tests use; the secret scanner looks for it everywhere.
GITHUB_SECRET = "ghs_TESTSECRETvalue0123456789abcdefABCDEF"
FULL_PERMISSIONS = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "metadata": "read",
    "administration": "write",
}


def client_env(tether: SidecarProcess) -> dict[str, str]:
    """The environment of an agent put behind tether (the machine's global CA variables overridden)."""
    env = dict(os.environ)
    for key in (
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
    ):
        env.pop(key, None)
    env.update(
        HTTPS_PROXY=tether.proxy_url,
        HTTP_PROXY=tether.proxy_url,
        NO_PROXY="",
        SSL_CERT_FILE=str(tether.ca_cert),
        REQUESTS_CA_BUNDLE=str(tether.ca_cert),
        CURL_CA_BUNDLE=str(tether.ca_cert),
        GIT_SSL_CAINFO=str(tether.ca_cert),
    )
    return env


def github_policy(**overrides: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "id": "pol_test",
        "agents": ["test-*"],
        "mode": "enforce",
        "providers": {
            "github": {
                "credential": "github-bot",
                "scopes": ["repo:read", "issues:write", "pull_requests:read"],
                "ttl_seconds": 900,
            }
        },
    }
    policy.update(overrides)
    return policy


def github_config(sandbox: SandboxProviders, secret_file: Path) -> dict[str, Any]:
    secret_file.write_text(GITHUB_SECRET + "\n")
    secret_file.chmod(0o600)
    return {
        "credentials": {"github-bot": {"type": "static", "secret_file": str(secret_file)}},
        "upstream_overrides": sandbox.overrides(),
    }


def slack_config(sandbox: SandboxProviders, directory: Path) -> dict[str, Any]:
    """A `slack` credential holding the sandbox's current refresh token (files 0600)."""
    files = {
        "client_secret_file": sandbox.slack.client_secret,
        "refresh_token_file": sandbox.slack.refresh_token,
    }
    entry: dict[str, Any] = {"type": "slack", "client_id": sandbox.slack.client_id}
    for key, value in files.items():
        path = directory / key.removesuffix("_file")
        path.write_text(value + "\n")
        path.chmod(0o600)
        entry[key] = str(path)
    return {"slack-bot": entry}
