"""The Slack and OAuth2 minters against the sandbox servers (real HTTPS on loopback, in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from tether.broker import base
from tether.broker.base import Broker, MintedSecret, MintError, MintRequest, TokenKey
from tether.broker.oauth2 import OAuth2Minter
from tether.broker.provider_http import ProviderHTTP
from tether.broker.slack import SlackMinter
from tether.config import UpstreamOverride
from tether.credential_types import OAuth2Credential, SlackCredential
from tether.sandbox import AsyncSandboxServer, SandboxCA
from tether.sandbox.oauth2 import OAuth2Sandbox, OAuthClient
from tether.sandbox.slack import SlackSandbox

pytestmark = pytest.mark.timeout(60)

REQUEST = MintRequest("agt_a", "run_1", "slack", ("chat:write",), 600, {"chat:write": "granted"})


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, app: web.Application, host: str) -> AsyncIterator[ProviderHTTP]:
    ca = SandboxCA(tmp_path / "pki")
    async with AsyncSandboxServer(app, ca.ssl_context([host])) as server:
        http = ProviderHTTP({host: UpstreamOverride(address=server.address, ca_file=ca.cert_path)})
        try:
            yield http
        finally:
            await http.close()


def secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def slack_minter(tmp_path: Path, slack: SlackSandbox, http: ProviderHTTP, **settings: float) -> SlackMinter:
    config = SlackCredential(
        type="slack",
        client_id=slack.client_id,
        client_secret_file=secret_file(tmp_path / "secret", slack.client_secret),
        refresh_token_file=secret_file(tmp_path / "refresh", slack.refresh_token),
        **settings,
    )
    return SlackMinter("slack-bot", config, http)


def slow_answers(slack: SlackSandbox) -> list[float]:
    """Slack rotates at once but answers after the delay at the list's head (popped per answer)."""
    delays: list[float] = []

    @web.middleware
    async def delay(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if delays:
            await asyncio.sleep(delays.pop(0))
        return response

    slack.app.middlewares.append(delay)
    return delays


SLACK_KEY = TokenKey("agt_a", "run_1", "slack", "slack-bot", ("chat:write",))


async def recorded(issuance: object) -> bool:
    return True


def test_slack_rotation_that_may_have_reached_slack_is_not_retried(tmp_path):
    # The answer comes after the request timeout: Slack rotated, so the spent token is not sent again.
    slack = SlackSandbox("111.222", "client-secret", "xoxe-1-first")
    slow_answers(slack).append(1.0)

    async def go() -> None:
        async with serving(tmp_path, slack.app, "slack.com") as http:
            minter = slack_minter(tmp_path, slack, http, request_timeout_seconds=0.2, mint_deadline_seconds=5)
            with pytest.raises(MintError, match="no answer within"):
                await Broker({"slack-bot": minter}).issue(
                    SLACK_KEY, ttl_seconds=60, native={}, record=recorded
                )

    asyncio.run(go())
    assert slack.rotations == 1 and slack.spent == 0


def test_slack_rotation_outlives_the_mint_deadline(tmp_path):
    # The deadline passes while Slack rotates: the rotation still persists the new refresh token.
    slack = SlackSandbox("111.222", "client-secret", "xoxe-1-first")
    slow_answers(slack).append(1.0)

    async def go() -> None:
        async with serving(tmp_path, slack.app, "slack.com") as http:
            minter = slack_minter(tmp_path, slack, http, mint_deadline_seconds=0.2)
            broker = Broker({"slack-bot": minter})
            with pytest.raises(MintError, match="deadline"):
                await broker.issue(SLACK_KEY, ttl_seconds=60, native={}, record=recorded)
            await minter.mint(REQUEST)  # waits for the rotation still under way, then rotates again

    asyncio.run(go())
    assert slack.rotations == 2 and slack.spent == 0
    assert (tmp_path / "refresh").read_text() == slack.refresh_token + "\n"


def test_slack_keeps_a_rotated_refresh_token_it_cannot_write(tmp_path, monkeypatch, caplog):
    slack = SlackSandbox("111.222", "client-secret", "xoxe-1-first")
    write = base.write_secret_file

    def disk_full(path: Path, value: str) -> None:
        raise OSError(28, "No space left on device")

    async def go() -> None:
        async with serving(tmp_path, slack.app, "slack.com") as http:
            minter = slack_minter(tmp_path, slack, http)
            monkeypatch.setattr(base, "write_secret_file", disk_full)
            await minter.mint(REQUEST)  # the access token is good; the file is stale
            assert (tmp_path / "refresh").read_text() == "xoxe-1-first\n"
            await minter.mint(REQUEST)  # still disk full: the chain lives on in memory
            monkeypatch.setattr(base, "write_secret_file", write)
            await minter.mint(REQUEST)

    with caplog.at_level(logging.ERROR, logger="tether"):
        asyncio.run(go())
    assert slack.rotations == 3 and slack.spent == 0
    assert (tmp_path / "refresh").read_text() == slack.refresh_token + "\n"
    assert "refresh_token_file" in caplog.text and "stale" in caplog.text
    assert "xoxe-" not in caplog.text


def test_slack_rotation_persists_each_new_refresh_token(tmp_path):
    slack = SlackSandbox("111.222", "client-secret", "xoxe-1-first")

    async def go() -> list[MintedSecret]:
        async with serving(tmp_path, slack.app, "slack.com") as http:
            minter = slack_minter(tmp_path, slack, http)
            # Concurrent mints for different runs: rotations are serialized, none spends a used token.
            return list(await asyncio.gather(*(minter.mint(REQUEST) for _ in range(3))))

    minted = asyncio.run(go())
    assert slack.rotations == 3 and slack.spent == 0
    assert len({m.value for m in minted}) == 3
    assert all(m.source == "slack:111.222/team:T0SANDBOX" and m.expires_at for m in minted)
    refresh = tmp_path / "refresh"
    assert refresh.read_text() == slack.refresh_token + "\n"
    assert stat.S_IMODE(refresh.stat().st_mode) == 0o600


def test_slack_errors_keep_the_refresh_token_and_name_slacks_error(tmp_path):
    slack = SlackSandbox("111.222", "client-secret", "xoxe-1-first")

    async def go() -> None:
        async with serving(tmp_path, slack.app, "slack.com") as http:
            minter = slack_minter(tmp_path, slack, http)
            secret_file(tmp_path / "refresh", "xoxe-1-unknown")
            with pytest.raises(MintError, match=r"Slack oauth\.v2\.access: invalid_refresh_token") as caught:
                await minter.mint(REQUEST)
            assert not caught.value.retryable
            assert (tmp_path / "refresh").read_text() == "xoxe-1-unknown\n"
            assert not await minter.revoke(MintedSecret("x", None, "slack:111.222", True))

    asyncio.run(go())


def oauth_world() -> tuple[OAuth2Sandbox, list[tuple[str, tuple[str, ...]]], list[str]]:
    issued: list[tuple[str, tuple[str, ...]]] = []
    revoked: list[str] = []

    def issue(client_id: str, grant: str, scopes: tuple[str, ...], lifetime: int) -> str:
        issued.append((grant, scopes))
        return f"at-{len(issued)}"

    client = OAuthClient("app:one", "s3cr=t&x", frozenset({"read", "write"}))
    return OAuth2Sandbox([client], issue, revoked.append), issued, revoked


def oauth_minter(tmp_path: Path, http: ProviderHTTP, **config: object) -> OAuth2Minter:
    settings = {
        "type": "oauth2",
        "token_url": "https://login.example.com/oauth/token",
        "revocation_url": "https://login.example.com/oauth/revoke",
        "client_id": "app:one",
        "client_secret_file": secret_file(tmp_path / "client", "s3cr=t&x"),
        **config,
    }
    return OAuth2Minter("idp", OAuth2Credential.model_validate(settings), http)


def request(*scopes: str) -> MintRequest:
    return MintRequest("agt_a", "run_1", "p", scopes, 600, dict.fromkeys(scopes, "granted"))


@pytest.mark.parametrize("client_auth", ["basic", "post"])
def test_oauth2_client_credentials_and_revocation(tmp_path, client_auth):
    server, issued, revoked = oauth_world()

    async def go() -> None:
        async with serving(tmp_path, server.app, "login.example.com") as http:
            # The client id holds ':' and the secret '=' and '&': RFC 6749 §2.3.1 encoding is exercised.
            minter = oauth_minter(tmp_path, http, grant="client_credentials", client_auth=client_auth)
            secret = await minter.mint(request("read"))
            assert secret.value == "at-1" and secret.source == "oauth2:app:one@login.example.com"
            assert await minter.revoke(secret)

    asyncio.run(go())
    assert issued == [("client_credentials", ("read",))]
    assert revoked == ["at-1"]
    header = next(r.headers.get("Authorization") for r in server.requests)
    if client_auth == "basic":
        # Recordings show Basic credentials as user:<marker>: the user is the form-encoded client id.
        assert header is not None and header.startswith("Basic app%3Aone:")
    else:
        assert header is None


def test_oauth2_refresh_narrows_rotates_and_never_widens(tmp_path):
    server, issued, _ = oauth_world()
    refresh = secret_file(tmp_path / "refresh", server.new_refresh_token("app:one", ["read", "write"]))

    async def go() -> None:
        async with serving(tmp_path, server.app, "login.example.com") as http:
            minter = oauth_minter(tmp_path, http, grant="refresh_token", refresh_token_file=str(refresh))
            before = refresh.read_text()
            await minter.mint(request("read"))
            assert refresh.read_text() != before
            with pytest.raises(MintError, match="400 invalid_scope") as caught:
                await minter.mint(request("admin"))
            assert caught.value.status == 400 and not caught.value.retryable
            await minter.mint(request("write"))  # the refresh token survived the refused widening

    asyncio.run(go())
    assert issued == [("refresh_token", ("read",)), ("refresh_token", ("write",))]


def test_oauth2_without_revocation_endpoint_retires_locally(tmp_path):
    async def go() -> bool:
        minter = oauth_minter(tmp_path, ProviderHTTP({}), grant="client_credentials", revocation_url=None)
        return await minter.revoke(MintedSecret("x", None, "oauth2:app:one@login.example.com", True))

    assert asyncio.run(go()) is False
