"""Other real clients behind tether: curl and httpx."""

import ssl
import subprocess

import httpx

from tests.integration.harness import client_env

API = "https://api.github.com"


def test_curl_through_tether(tether, sandbox):
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-H",
            "X-Tether-Task: curl-check",
            f"{API}/repos/acme/api/issues",
        ],
        env=client_env(tether),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"number": 5' in out.stdout or '"number":5' in out.stdout
    assert sandbox.github.requests[-1].headers["Authorization"] == "Bearer <token:tether-static>"
    assert "X-Tether-Scopes" not in sandbox.github.requests[-1].headers


def test_httpx_through_tether_with_scope_header(tether):
    with httpx.Client(
        proxy=tether.proxy_url, verify=ssl.create_default_context(cafile=tether.ca_cert), trust_env=False
    ) as client:
        ok = client.get(
            f"{API}/repos/acme/api/pulls/7",
            headers={"X-Tether-Scopes": "github=pull_requests:read,repo:write"},
        )
        denied = client.post(
            f"{API}/repos/acme/api/issues",
            json={"title": "x"},
            headers={"X-Tether-Scopes": "github=pull_requests:read,repo:write"},
        )
    assert ok.status_code == 200
    assert denied.status_code == 403
    event = next(e for e in tether.events() if e["event_id"] == denied.json()["event_id"])
    assert event["scope_requested"] == ["issues:write"]
    assert event["scope_granted"] == ["pull_requests:read", "repo:read"]
    assert event["scope_downscoped"] is True
    minted = [e for e in tether.events() if e["event_type"] == "token.minted"]
    assert minted[-1]["scope_requested"] == ["pull_requests:read", "repo:write"]
    assert minted[-1]["scope_granted"] == ["pull_requests:read", "repo:read"]
    assert minted[-1]["scope_downscoped"] is True  # the ask was cut: repo:write -> repo:read
