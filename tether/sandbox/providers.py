"""The sandbox world: a CA plus local HTTPS stand-ins for api.github.com (REST) and github.com (git),
reachable by tether through upstream address overrides. Used by `tether demo` and the tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tether.sandbox.auth import SandboxToken
from tether.sandbox.git import GitSandbox, init_bare_repo
from tether.sandbox.github import GitHubSandbox
from tether.sandbox.pki import SandboxCA
from tether.sandbox.server import SandboxServer

TOKEN_NAME = "tether-static"
REPOSITORY = "acme/api"


class SandboxProviders:
    """Starts both servers on ephemeral ports; they accept `secret` with `permissions` (GitHub names)."""

    def __init__(self, directory: Path, secret: str, permissions: Mapping[str, str]) -> None:
        self.directory = directory
        self.ca = SandboxCA(directory / "pki")
        token = SandboxToken(TOKEN_NAME, secret, permissions)
        self.github = GitHubSandbox([token])
        init_bare_repo(
            directory / "git", REPOSITORY, {"README.md": "# acme/api\n", "app.py": "print('hi')\n"}
        )
        self.git = GitSandbox(directory / "git", [token])
        self.github_server = SandboxServer(self.github.app, self.ca.ssl_context())
        self.git_server = SandboxServer(self.git.app, self.ca.ssl_context())
        self.github_server.start()
        self.git_server.start()

    def overrides(self) -> dict[str, Any]:
        """The `upstream_overrides` section of tether.yaml that routes GitHub's hosts here."""
        ca = str(self.ca.cert_path)
        return {
            "api.github.com": {"address": self.github_server.address, "ca_file": ca},
            "github.com": {"address": self.git_server.address, "ca_file": ca},
        }

    def stop(self) -> None:
        self.github_server.stop()
        self.git_server.stop()
