"""`requests` to a Google API through tether holding only the placeholder token: tether mints a service
account token with exactly the granted scopes (JWT bearer grant, or IAM generateAccessToken with the
policy's ttl as lifetime) and the sandbox Google verifies the assertion."""

import pytest

from tether.sandbox.providers import GOOGLE_ACCOUNT, GOOGLE_TARGET

pytestmark = pytest.mark.timeout(120)

FILES = "https://www.googleapis.com/drive/v3/files"
DRIVE_READONLY = "https://www.googleapis.com/auth/drive.readonly"


def google_setup(sandbox, **extra):
    policy = {
        "id": "pol_google",
        "agents": ["test-*"],
        "providers": {"google": {"credential": "google-sa", "scopes": ["drive:write"], "ttl_seconds": 600}},
    }
    credential = {"type": "google_service_account", "key_file": str(sandbox.google_key_path), **extra}
    return policy, {"credentials": {"google-sa": credential}}


def test_jwt_bearer_grant_with_exactly_the_granted_scopes(make_tether, sandbox):
    policy, config = google_setup(sandbox)
    tether = make_tether(policy, **config)
    headers = {
        "Authorization": "Bearer tether",
        "X-Tether-Scopes": "google=drive:read",
        "X-Tether-Run": "run_g",
    }
    with tether.session(**headers) as s:
        response = s.get(FILES, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["files"][0]["name"] == "design.md"

    grant = sandbox.google.grants[-1]
    assert (grant.account, grant.via, grant.scopes) == (GOOGLE_ACCOUNT, "jwt-bearer", (DRIVE_READONLY,))
    events = [e for e in tether.events() if e["run_id"] == "run_g"]
    [minted] = [e for e in events if e["event_type"] == "token.minted"]
    assert minted["scope_granted"] == ["drive:read"] and minted["scope_downscoped"] is False
    assert minted["detail"]["credential"] == f"google_service_account:{GOOGLE_ACCOUNT}"
    calls = [e for e in events if e["event_type"].startswith("api.")]
    assert {e["token_id"] for e in calls} == {minted["token_id"]}
    for text in (response.text, tether.log(), str(tether.events())):
        assert sandbox.google.tokens.redact(text) == text, "a Google token leaked"


def test_generate_access_token_with_the_policy_ttl(make_tether, sandbox):
    policy, config = google_setup(sandbox, impersonate=GOOGLE_TARGET)
    tether = make_tether(policy, **config)
    with tether.session(Authorization="Bearer tether") as s:
        assert s.get(FILES, timeout=60).status_code == 200
    source, minted = sandbox.google.grants[-2:]
    assert source.via == "jwt-bearer" and source.scopes == ("https://www.googleapis.com/auth/cloud-platform",)
    assert (minted.account, minted.via, minted.lifetime) == (GOOGLE_TARGET, "generateAccessToken", 600)
    assert minted.scopes == ("https://www.googleapis.com/auth/drive",)
    [event] = [e for e in tether.events() if e["event_type"] == "token.minted"]
    assert (
        event["detail"]["credential"]
        == f"google_service_account:{GOOGLE_ACCOUNT}/impersonate:{GOOGLE_TARGET}"
    )


def test_delegation_the_account_lacks_is_googles_error_as_a_502(make_tether, sandbox):
    policy, config = google_setup(sandbox, subject="alice@acme.example")
    tether = make_tether(policy, **config)
    with tether.session() as s:
        response = s.get(FILES, timeout=60)
    assert response.status_code == 502
    assert "400 unauthorized_client: Client is unauthorized" in response.json()["reason"]
