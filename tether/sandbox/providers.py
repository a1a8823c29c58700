"""The sandbox world: a CA plus local HTTPS stand-ins for api.github.com (REST and GitHub App token
endpoints), github.com (git), slack.com (Web API with token rotation) and Google (token endpoint,
IAM Credentials, Drive), reachable by tether through upstream address overrides. Used by
`tether demo` and the tests."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from tether.sandbox.auth import SandboxToken, TokenRegistry
from tether.sandbox.git import GitSandbox, init_bare_repo
from tether.sandbox.github import GitHubSandbox
from tether.sandbox.github_app import GitHubAppEndpoints, SandboxApp, SandboxInstallation
from tether.sandbox.google import HOSTS as GOOGLE_HOSTS
from tether.sandbox.google import TOKEN_URI, GoogleSandbox, ServiceAccount
from tether.sandbox.oauth2 import OAuth2Sandbox, OAuthClient
from tether.sandbox.pki import SandboxCA, private_pem, write_private
from tether.sandbox.server import SandboxServer
from tether.sandbox.slack import SlackSandbox

TOKEN_NAME = "tether-static"
REPOSITORY = "acme/api"
APP_ID = 12345
APP_CLIENT_ID = "Iv23liSandbox0App"
INSTALLATION_ID = 678
SLACK_CLIENT_ID = "1234567890.0987654321"
GOOGLE_ACCOUNT = "agent-sa@acme-proj.iam.gserviceaccount.com"
GOOGLE_TARGET = "drive-reader@acme-proj.iam.gserviceaccount.com"
OAUTH_HOST = "login.example.com"
OAUTH_CLIENT_ID = "tether-agent"
DRIVE_SCOPES = ("https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/drive.readonly")


class SandboxProviders:
    """Starts both servers on ephemeral ports; they accept `secret` with `permissions` (GitHub names),
    and tokens minted by the GitHub App `APP_ID` (key in `app_key_path`), installed on `acme` with
    `permissions` as installation `INSTALLATION_ID`."""

    def __init__(self, directory: Path, secret: str, permissions: Mapping[str, str]) -> None:
        self.directory = directory
        self.ca = SandboxCA(directory / "pki")
        # One registry: tokens minted through the App endpoints work for REST and git alike.
        self.tokens = TokenRegistry([SandboxToken(TOKEN_NAME, secret, permissions)])
        self.github = GitHubSandbox(self.tokens)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.app_key_path = directory / "github-app.pem"
        write_private(self.app_key_path, private_pem(key))
        installation = SandboxInstallation(INSTALLATION_ID, "acme", dict(permissions))
        self.app = SandboxApp(APP_ID, APP_CLIENT_ID, key.public_key(), [installation])
        GitHubAppEndpoints(self.github, [self.app])
        init_bare_repo(
            directory / "git", REPOSITORY, {"README.md": "# acme/api\n", "app.py": "print('hi')\n"}
        )
        self.git = GitSandbox(directory / "git", self.tokens)
        self.github_server = SandboxServer(self.github.app, self.ca.ssl_context())
        self.git_server = SandboxServer(self.git.app, self.ca.ssl_context())
        self.slack = SlackSandbox(SLACK_CLIENT_ID, secrets.token_hex(16), f"xoxe-1-{secrets.token_hex(24)}")
        self.slack_server = SandboxServer(self.slack.app, self.ca.ssl_context())
        self.google_key_path = directory / "google-sa.json"
        self.google = GoogleSandbox([self._google_account(self.google_key_path)])
        self.google_server = SandboxServer(self.google.app, self.ca.ssl_context(GOOGLE_HOSTS))
        # A generic authorization server whose access tokens the sandbox Drive API accepts.
        client = OAuthClient(OAUTH_CLIENT_ID, secrets.token_hex(16), frozenset(DRIVE_SCOPES))
        self.oauth = OAuth2Sandbox(
            [client],
            issue=lambda client_id, grant, scopes, lifetime: self.google.issue(
                f"oauth2:{client_id}", grant, scopes, None, lifetime
            ),
            revoke=self.google.revoke,
        )
        self.oauth_server = SandboxServer(self.oauth.app, self.ca.ssl_context([OAUTH_HOST]))
        self.github_server.start()
        self.git_server.start()
        self.slack_server.start()
        self.google_server.start()
        self.oauth_server.start()

    def overrides(self) -> dict[str, Any]:
        """The `upstream_overrides` section of tether.yaml that routes GitHub's hosts here."""
        ca = str(self.ca.cert_path)
        return {
            "api.github.com": {"address": self.github_server.address, "ca_file": ca},
            "github.com": {"address": self.git_server.address, "ca_file": ca},
            "slack.com": {"address": self.slack_server.address, "ca_file": ca},
            **{host: {"address": self.google_server.address, "ca_file": ca} for host in GOOGLE_HOSTS},
            OAUTH_HOST: {"address": self.oauth_server.address, "ca_file": ca},
        }

    def stop(self) -> None:
        self.github_server.stop()
        self.git_server.stop()
        self.slack_server.stop()
        self.google_server.stop()
        self.oauth_server.stop()

    @staticmethod
    def _google_account(key_path: Path) -> ServiceAccount:
        """A service account with a JSON key like the console's download (written 0600)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        document = {
            "type": "service_account",
            "project_id": "acme-proj",
            "private_key_id": key_id,
            "private_key": private_pem(key).decode(),
            "client_email": GOOGLE_ACCOUNT,
            "client_id": "104000000000000000001",
            "token_uri": TOKEN_URI,
        }
        write_private(key_path, json.dumps(document).encode())
        return ServiceAccount(
            GOOGLE_ACCOUNT, key_id, key.public_key(), may_impersonate=frozenset({GOOGLE_TARGET})
        )
