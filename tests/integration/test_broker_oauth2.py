"""The generic `oauth2` minter through tether: a refresh narrowed to the granted scope (the rotated refresh
token written back), client credentials, RFC 8693 token exchange, and RFC 7009 revocation at run end.
The sandbox authorization server's tokens open the sandbox Drive API, reached with `requests`."""

import stat

import pytest

from tether.sandbox.providers import DRIVE_SCOPES, OAUTH_CLIENT_ID, OAUTH_HOST

pytestmark = pytest.mark.timeout(120)

FILES = "https://www.googleapis.com/drive/v3/files"
READONLY = "https://www.googleapis.com/auth/drive.readonly"


def write_secret(path, value):
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def setup(sandbox, tmp_path, grant, scopes=("drive:read",), **extra):
    credential = {
        "type": "oauth2",
        "grant": grant,
        "token_url": f"https://{OAUTH_HOST}/oauth/token",
        "revocation_url": f"https://{OAUTH_HOST}/oauth/revoke",
        "client_id": OAUTH_CLIENT_ID,
        "client_secret_file": write_secret(
            tmp_path / "client_secret", sandbox.oauth.clients[OAUTH_CLIENT_ID].secret
        ),
        **extra,
    }
    policy = {
        "id": "pol_oauth",
        "agents": ["test-*"],
        "providers": {"google": {"credential": "idp", "scopes": list(scopes), "ttl_seconds": 600}},
    }
    return policy, {"credentials": {"idp": credential}}


def drive(tether, run):
    with tether.session(Authorization="Bearer tether", **{"X-Tether-Run": run}) as s:
        return s.get(FILES, timeout=60)


def test_refresh_narrowed_to_the_grant_rotated_and_revoked_at_run_end(make_tether, sandbox, tmp_path):
    refresh_file = tmp_path / "refresh_token"
    write_secret(refresh_file, sandbox.oauth.new_refresh_token(OAUTH_CLIENT_ID, DRIVE_SCOPES))
    policy, config = setup(sandbox, tmp_path, "refresh_token", refresh_token_file=str(refresh_file))
    tether = make_tether(policy, **config)
    before = refresh_file.read_text()

    assert drive(tether, "run_refresh").status_code == 200
    record = sandbox.oauth.issued[-1]
    assert (record.grant, record.scopes) == ("refresh_token", (READONLY,))  # narrowed from drive + readonly
    assert refresh_file.read_text() != before and stat.S_IMODE(refresh_file.stat().st_mode) == 0o600

    assert tether.api("POST", "/v1/runs/run_refresh/end").status_code == 200
    events = [e for e in tether.events() if e["run_id"] == "run_refresh"]
    [minted] = [e for e in events if e["event_type"] == "token.minted"]
    [revoked] = [e for e in events if e["event_type"] == "token.revoked"]
    assert minted["detail"]["credential"] == f"oauth2:{OAUTH_CLIENT_ID}@{OAUTH_HOST}"
    assert revoked["token_id"] == minted["token_id"] and revoked["detail"]["revocation"] == "provider"
    assert minted["token_sha256"] in sandbox.oauth.revoked
    # The next run gets a fresh token from the rotated refresh token.
    assert drive(tether, "run_refresh_2").status_code == 200


def test_client_credentials_with_post_authentication(make_tether, sandbox, tmp_path):
    policy, config = setup(sandbox, tmp_path, "client_credentials", client_auth="post")
    tether = make_tether(policy, **config)
    assert drive(tether, "run_cc").status_code == 200
    record = sandbox.oauth.issued[-1]
    assert (record.grant, record.scopes) == ("client_credentials", (READONLY,))


def test_token_exchange_with_audience(make_tether, sandbox, tmp_path):
    subject = write_secret(tmp_path / "subject", sandbox.oauth.new_subject_token(DRIVE_SCOPES))
    policy, config = setup(
        sandbox,
        tmp_path,
        "token_exchange",
        subject_token_file=subject,
        audience="https://www.googleapis.com/",
    )
    tether = make_tether(policy, **config)
    assert drive(tether, "run_tx").status_code == 200
    record = sandbox.oauth.issued[-1]
    assert record.grant == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert record.scopes == (READONLY,) and record.audience == "https://www.googleapis.com/"


def test_a_scope_beyond_the_refresh_grant_is_invalid_scope(make_tether, sandbox, tmp_path):
    refresh_file = tmp_path / "refresh_token"
    write_secret(refresh_file, sandbox.oauth.new_refresh_token(OAUTH_CLIENT_ID, [READONLY]))
    policy, config = setup(
        sandbox, tmp_path, "refresh_token", ("drive:write",), refresh_token_file=str(refresh_file)
    )
    tether = make_tether(policy, **config)
    response = drive(tether, "run_wide")
    assert response.status_code == 502
    assert "400 invalid_scope: The requested scope exceeds the scope granted." in response.json()["reason"]
