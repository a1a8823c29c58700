"""The GitHub App minter against the sandbox's App endpoints (real HTTPS on loopback, real JWTs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tether.broker.base import Broker, MintError, MintRequest, TokenKey
from tether.broker.github_app import GitHubAppMinter, repositories_for
from tether.broker.jwt import decode_rs256
from tether.broker.provider_http import ProviderHTTP
from tether.config import ConfigError, UpstreamOverride, load_config
from tether.credential_types import GitHubAppCredential
from tether.sandbox import AsyncSandboxServer, GitHubSandbox, SandboxCA
from tether.sandbox.auth import TokenRegistry
from tether.sandbox.github_app import GitHubAppEndpoints, SandboxApp, SandboxInstallation
from tether.sandbox.pki import private_pem, write_private

pytestmark = pytest.mark.timeout(60)

INSTALLATION = {"contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"}


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class World:
    sandbox: GitHubSandbox
    app: SandboxApp
    http: ProviderHTTP
    server: AsyncSandboxServer
    key_file: Path

    def minter(self, **config: object) -> GitHubAppMinter:
        settings = {"type": "github_app", "app_id": "12345", "private_key_file": self.key_file, **config}
        return GitHubAppMinter("gh-app", GitHubAppCredential.model_validate(settings), self.http)

    async def get(self, path: str, token: str) -> int:
        response = await self.http.request(
            "GET", f"https://api.github.com{path}", headers={"Authorization": f"Bearer {token}"}
        )
        return response.status


@contextlib.asynccontextmanager
async def world(tmp_path: Path, key: rsa.RSAPrivateKey) -> AsyncIterator[World]:
    ca = SandboxCA(tmp_path / "pki")
    sandbox = GitHubSandbox(TokenRegistry())
    app = SandboxApp(12345, "Iv23liTest", key.public_key(), [SandboxInstallation(678, "acme", INSTALLATION)])
    GitHubAppEndpoints(sandbox, [app])
    key_file = tmp_path / "app.pem"
    write_private(key_file, private_pem(key))
    async with AsyncSandboxServer(sandbox.app, ca.ssl_context()) as server:
        override = UpstreamOverride(address=server.address, ca_file=ca.cert_path)
        http = ProviderHTTP({"api.github.com": override})
        try:
            yield World(sandbox, app, http, server, key_file)
        finally:
            await http.close()


def request(**fields: object) -> MintRequest:
    base: dict[str, object] = {
        "agent_id": "agt_a",
        "run_id": "run_1",
        "provider": "github",
        "scopes": ("pull_requests:read",),
        "ttl_seconds": 900,
        "native_permissions": {"pull_requests": "read"},
        "target": "acme",
        "repository": "acme/api",
    }
    return MintRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_mints_a_down_scoped_token_that_works_until_revoked(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            minter = w.minter()
            secret = await minter.mint(request(repositories=("acme/api",)))
            assert secret.minted and secret.source == "github_app:12345/installation:678"
            assert secret.expires_at is not None and secret.expires_at > time.time() + 3000
            record = w.app.minted[-1]
            assert record.permissions == {"pull_requests": "read"}
            assert record.repositories == ("acme/api",)
            assert await w.get("/repos/acme/api/pulls", secret.value) == 200
            # The token carries only what was granted: issues are out of reach.
            assert await w.get("/repos/acme/api/issues", secret.value) == 403
            await minter.revoke(secret)
            assert w.app.revoked == [record.name]
            assert await w.get("/repos/acme/api/pulls", secret.value) == 401
            await minter.revoke(secret)  # already revoked: GitHub's 401 is not an error

    asyncio.run(go())


def test_a_grant_of_only_implicit_scopes_asks_for_metadata_read_not_everything(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            secret = await w.minter().mint(request(scopes=("metadata:read",), native_permissions={}))
            assert w.app.minted[-1].permissions == {"metadata": "read"}
            assert await w.get("/repos/acme/api", secret.value) == 200
            assert await w.get("/repos/acme/api/pulls", secret.value) == 403

    asyncio.run(go())


def test_installation_is_resolved_from_the_owner_once(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            minter = w.minter()
            await minter.mint(request())
            await minter.mint(request(repository=None))
            lookups = [r.path for r in w.sandbox.requests if r.path.endswith("/installation")]
            assert lookups == ["/repos/acme/api/installation"]
            # An owner the App is not installed on: a clear 404 error, not retried.
            with pytest.raises(MintError, match="not installed on nobody") as caught:
                await minter.mint(request(target="nobody", repository=None))
            assert caught.value.status == 404 and not caught.value.retryable
            # Asked again soon: the answer is reused, GitHub is not asked again.
            with pytest.raises(MintError, match="not installed on nobody"):
                await minter.mint(request(target="nobody", repository=None))
            lookups = [r.path for r in w.sandbox.requests if r.path.endswith("/installation")]
            assert lookups[1:] == ["/orgs/nobody/installation", "/users/nobody/installation"]

    asyncio.run(go())


def test_permissions_beyond_the_installation_are_githubs_422(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            with pytest.raises(MintError) as caught:
                await w.minter().mint(request(native_permissions={"administration": "write"}))
            assert caught.value.status == 422 and not caught.value.retryable
            assert "not granted to this installation" in str(caught.value)
            with pytest.raises(MintError, match="not accessible to the parent installation"):
                await w.minter().mint(request(repositories=("acme/elsewhere",)))

    asyncio.run(go())


def test_app_jwt_claims(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            _, claims = decode_rs256(w.minter().app_jwt(), app_key.public_key())
            now = time.time()
            assert claims["iss"] == "12345"
            assert now - 61 <= claims["iat"] <= now - 59
            assert claims["exp"] - claims["iat"] <= 600 and claims["exp"] > now

    asyncio.run(go())


def test_a_jwt_from_another_key_is_refused(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            other = tmp_path / "other.pem"
            write_private(other, private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
            with pytest.raises(MintError) as caught:
                await w.minter(private_key_file=other).mint(request())
            assert caught.value.status == 401

    asyncio.run(go())


def test_configured_installation_and_enterprise_api_base(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            minter = w.minter(installation_id=678, api_base="https://api.github.com/")
            assert minter.target("acme") is None
            secret = await minter.mint(request(target=None, repository=None))
            assert secret.source.endswith("installation:678")
            assert not [r for r in w.sandbox.requests if r.path.endswith("/installation")]

    asyncio.run(go())


def test_broker_retries_5xx_within_the_deadline(tmp_path, app_key):
    async def recorded(_):
        return True

    async def go():
        async with world(tmp_path, app_key) as w:
            broker = Broker({"gh-app": w.minter()})
            key = TokenKey("agt_a", "run_1", "github", "gh-app", ("pull_requests:read",), target="acme")
            w.app.fail_next[:] = [502, 503]
            issued = await broker.issue(
                key, ttl_seconds=900, native={"pull_requests": "read"}, record=recorded
            )
            assert issued is not None and issued.fresh and not w.app.fail_next

            w.app.fail_next[:] = [503] * 100
            broker = Broker({"gh-app": w.minter(mint_deadline_seconds=1.0)})
            with pytest.raises(
                MintError, match=r"503 Service Unavailable \(gave up after \d+ attempts\)"
            ) as c:
                await broker.issue(key, ttl_seconds=900, native={"pull_requests": "read"}, record=recorded)
            assert c.value.status == 503

    asyncio.run(go())


def test_unreachable_provider_is_a_retryable_error_without_secrets(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            await w.server.stop()
            with pytest.raises(MintError) as caught:
                await w.minter().mint(request())
            assert caught.value.retryable and caught.value.status is None

    asyncio.run(go())


def test_repositories_from_policy_globs():
    assert repositories_for(None, "acme") is None
    assert repositories_for(("acme/api", "acme/web", "other/x"), "acme") == ["api", "web"]
    assert repositories_for(("acme/*",), "acme") is None
    assert repositories_for(("*/api",), "acme") == ["api"]
    with pytest.raises(MintError, match="no repository of acme"):
        repositories_for(("other/x",), "acme")


def test_group_readable_private_key_refuses_to_start(tmp_path):
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    config = tmp_path / "tether.yaml"
    config.write_text(
        "credentials:\n  gh:\n    type: github_app\n    app_id: 1\n    private_key_file: app.pem\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    assert "mode 0644" in str(caught.value) and "chmod 600" in str(caught.value)
    assert str(caught.value).startswith(f"{config}:5: credentials.gh.private_key_file")


def test_unusable_private_key_refuses_to_start(tmp_path):
    from tether.broker.registry import build_broker

    key = tmp_path / "app.pem"
    write_private(key, b"not a key")
    config = GitHubAppCredential.model_validate({"type": "github_app", "app_id": 1, "private_key_file": key})
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        build_broker({"gh": config})


def test_sweep_revokes_tokens_past_the_policy_ttl(tmp_path, app_key):
    async def recorded(_):
        return True

    async def go():
        async with world(tmp_path, app_key) as w:
            broker = Broker({"gh-app": w.minter()})
            key = TokenKey("agt_a", "run_1", "github", "gh-app", ("pull_requests:read",), target="acme")
            issued = await broker.issue(
                key, ttl_seconds=60, native={"pull_requests": "read"}, record=recorded
            )
            assert issued is not None
            assert await broker.sweep(now=time.time() + 30) == []
            [retired] = await broker.sweep(now=time.time() + 61)
            assert retired.token is issued.token and retired.revoke_error is None
            assert w.app.revoked == [w.app.minted[-1].name]
            assert await w.get("/repos/acme/api/pulls", issued.token.value) == 401

    asyncio.run(go())


def test_a_vanished_installation_is_looked_up_again(tmp_path, app_key):
    async def go():
        async with world(tmp_path, app_key) as w:
            minter = w.minter()
            await minter.mint(request())
            w.app.installations[:] = [SandboxInstallation(679, "acme", INSTALLATION)]  # reinstalled
            with pytest.raises(MintError) as caught:
                await minter.mint(request())
            assert caught.value.status == 404
            secret = await minter.mint(request())
            assert secret.source == "github_app:12345/installation:679"

    asyncio.run(go())
