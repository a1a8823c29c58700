"""Gateway mode: one tether, many agents, each proving who it is with Proxy-Authorization."""

import base64
import http.client
import json
import socket
import subprocess
import sys
import time

import pytest
import requests
import yaml

from tests.integration.harness import GITHUB_SECRET, github_policy
from tether.gateway import hash_secret

API = "https://api.github.com"
SECRETS = {
    "agt_reviewer": "reviewer-secret-0123456789abcdef",
    "agt_writer": "writer-secret-0123456789abcdefgh",
}


@pytest.fixture
def gateway(make_tether, tmp_path):
    agents = {
        "agents": {
            "agt_reviewer": {"name": "review-bot", "secret_hash": hash_secret(SECRETS["agt_reviewer"])},
            "agt_writer": {"name": "write-bot", "secret_hash": hash_secret(SECRETS["agt_writer"])},
        }
    }
    (tmp_path / "agents.yaml").write_text(yaml.safe_dump(agents))
    reviewer = github_policy(id="pol_reviewer", agents=["review-*"])
    reviewer["providers"]["github"].update(credential="github-ro", scopes=["issues:read"])
    writer = github_policy(id="pol_writer", agents=["write-*"])
    writer["providers"]["github"].update(credential="github-rw", scopes=["issues:write"])
    (tmp_path / "reviewer.yaml").write_text(yaml.safe_dump(reviewer))
    (tmp_path / "writer.yaml").write_text(yaml.safe_dump(writer))
    secret = tmp_path / "github-token"
    secret.write_text(GITHUB_SECRET)
    return make_tether(
        gateway={"agents_file": str(tmp_path / "agents.yaml")},
        policy_files=[str(tmp_path / "reviewer.yaml"), str(tmp_path / "writer.yaml")],
        credentials={name: {"secret_file": str(secret)} for name in ("github-ro", "github-rw")},
    )


def agent_session(tether, agent_id, secret):
    session = tether.session()
    proxy = f"http://{agent_id}:{secret}@127.0.0.1:{tether.proxy_port}"
    session.proxies = {"http": proxy, "https": proxy}
    return session


def test_two_agents_get_their_own_identity_policy_and_token(gateway, sandbox):
    with agent_session(gateway, "agt_reviewer", SECRETS["agt_reviewer"]) as reviewer:
        assert reviewer.get(f"{API}/repos/acme/api/issues").status_code == 200
        denied = reviewer.post(f"{API}/repos/acme/api/issues", json={"title": "x"})
        assert denied.status_code == 403  # the reviewer's policy grants no issues:write
    assert "Proxy-Authorization" not in sandbox.github.requests[-1].headers
    with agent_session(gateway, "agt_writer", SECRETS["agt_writer"]) as writer:
        # A forged X-Tether header cannot change who the agent is: identity follows the credential.
        created = writer.post(
            f"{API}/repos/acme/api/issues", json={"title": "y"}, headers={"X-Tether-Agent": "x"}
        )
        assert created.status_code == 201
    seen = sandbox.github.requests[-1].headers
    assert "Proxy-Authorization" not in seen
    assert seen["X-Tether-Agent"] == "write-bot"

    events = gateway.events()
    assert all(e["detail"]["tether_mode"] == "gateway" for e in events)
    minted = {e["agent_id"]: e for e in events if e["event_type"] == "token.minted"}
    assert set(minted) == {"agt_reviewer", "agt_writer"}
    assert minted["agt_reviewer"]["token_id"] != minted["agt_writer"]["token_id"]
    assert minted["agt_reviewer"]["detail"]["credential"] == "static:github-ro"
    assert minted["agt_writer"]["detail"]["credential"] == "static:github-rw"
    assert minted["agt_reviewer"]["run_id"] != minted["agt_writer"]["run_id"]
    denied_event = next(e for e in events if e["event_type"] == "api.denied")
    assert (denied_event["agent_name"], denied_event["policy_id"]) == ("review-bot", "pol_reviewer")
    responses = [e for e in events if e["event_type"] == "api.response"]
    assert {(e["agent_id"], e["policy_id"]) for e in responses} == {
        ("agt_reviewer", "pol_reviewer"),
        ("agt_writer", "pol_writer"),
    }


@pytest.mark.parametrize(
    ("user", "secret", "problem"),
    [
        ("agt_writer", "wrong-secret-0123456789abcdef", "wrong_secret"),
        ("agt_nobody", SECRETS["agt_writer"], "unknown_agent"),
        (None, None, "missing"),
    ],
)
def test_bad_credentials_get_407_and_a_denial_event_without_the_secret(gateway, user, secret, problem):
    session = gateway.session() if user is None else agent_session(gateway, user, secret)
    with session, pytest.raises(requests.exceptions.ProxyError, match="407"):
        session.get(f"{API}/zen")
    # Plain HTTP carries the credential on each request: the same answer.
    with socket.create_connection(("127.0.0.1", gateway.proxy_port), timeout=30) as sock:
        auth = b""
        if user is not None:
            auth = b"Proxy-Authorization: Basic " + base64.b64encode(f"{user}:{secret}".encode()) + b"\r\n"
        sock.sendall(
            b"GET http://status.example.com/ HTTP/1.1\r\nHost: status.example.com\r\n" + auth + b"\r\n"
        )
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 407
        assert resp.getheader("Proxy-Authenticate", "").startswith("Basic")
        body = json.loads(resp.read())
    assert body["error"] == "tether_proxy_auth_required"
    events = [e for e in gateway.events() if e["event_type"] == "api.denied"]
    assert len(events) == 2  # the CONNECT and the plain request
    for event in events:
        assert event["decision"]["rule"] == "gateway"
        assert event["detail"]["auth"] == problem
        assert event["agent_id"] is None
        assert event["run_id"]
    ledger_text = gateway.ledger_path.read_bytes() + gateway.log().encode()
    if secret is not None:
        assert secret.encode() not in ledger_text
        assert base64.b64encode(f"{user}:{secret}".encode()) not in ledger_text


def test_control_api_runs_belong_to_the_authenticated_agent(gateway):
    assert gateway.api("POST", "/v1/runs", {"task_context": "t"}).status_code == 401
    opened = requests.post(
        f"{gateway.api_url}/v1/runs",
        json={"task_context": "review-pr-7"},
        auth=("agt_reviewer", SECRETS["agt_reviewer"]),
        timeout=10,
        proxies={},
    )
    assert opened.status_code == 201
    run_id = opened.json()["run_id"]
    with agent_session(gateway, "agt_reviewer", SECRETS["agt_reviewer"]) as reviewer:
        assert reviewer.get(f"{API}/repos/acme/api/issues").status_code == 200
    with agent_session(gateway, "agt_writer", SECRETS["agt_writer"]) as writer:
        assert writer.get(f"{API}/repos/acme/api/issues").status_code == 200
    other = requests.get(
        f"{gateway.api_url}/v1/runs/{run_id}",
        auth=("agt_writer", SECRETS["agt_writer"]),
        timeout=10,
        proxies={},
    )
    assert other.status_code == 404  # another agent's run is not visible
    requests_by_agent = {
        e["agent_id"]: e["run_id"] for e in gateway.events() if e["event_type"] == "api.request"
    }
    assert requests_by_agent["agt_reviewer"] == run_id
    assert requests_by_agent["agt_writer"] != run_id


def test_agents_hash_cli_reads_the_secret_from_stdin():
    out = subprocess.run(
        [sys.executable, "-m", "tether.cli", "agents", "hash"],
        input="a-long-enough-agent-secret\n",
        capture_output=True,
        text=True,
        check=True,
    )
    from tether.gateway import verify_secret

    assert verify_secret("a-long-enough-agent-secret", out.stdout.strip())
    assert "a-long-enough-agent-secret" not in out.stdout
    short = subprocess.run(
        [sys.executable, "-m", "tether.cli", "agents", "hash"],
        input="short\n",
        capture_output=True,
        text=True,
    )
    assert short.returncode == 2


def test_an_agent_removed_from_the_agents_file_is_refused_without_a_restart(gateway, tmp_path):
    with agent_session(gateway, "agt_writer", SECRETS["agt_writer"]) as writer:
        assert writer.get(f"{API}/repos/acme/api/issues").status_code == 200
        agents_file = tmp_path / "agents.yaml"
        agents = yaml.safe_load(agents_file.read_text())
        del agents["agents"]["agt_writer"]
        agents_file.write_text(yaml.safe_dump(agents))
        deadline = time.monotonic() + 20
        while True:  # the open tunnel too, once the file is re-read
            try:
                status = writer.get(f"{API}/repos/acme/api/issues").status_code
            except requests.exceptions.ProxyError:
                status = 407
            if status == 407:
                break
            assert time.monotonic() < deadline, "the removed agent was never refused"
            time.sleep(0.2)
    again = agent_session(gateway, "agt_writer", SECRETS["agt_writer"])
    with again, pytest.raises(requests.exceptions.ProxyError, match="407"):
        again.get(f"{API}/zen")
    with agent_session(gateway, "agt_reviewer", SECRETS["agt_reviewer"]) as reviewer:
        assert reviewer.get(f"{API}/repos/acme/api/issues").status_code == 200
    assert "agents file reloaded" in gateway.log()


def test_investigation_routes_are_closed_to_agents_in_gateway_mode(gateway):
    reviewer_auth = ("agt_reviewer", SECRETS["agt_reviewer"])
    for path in ("/v1/runs", "/v1/timeline", "/v1/runs/run_x/report"):
        answer = requests.get(f"{gateway.api_url}{path}", auth=reviewer_auth, timeout=10, proxies={})
        assert answer.status_code == 403, path
        assert answer.json()["error"] == "tether_forbidden"
    assert gateway.api("GET", "/readyz").status_code == 200
    runs = gateway.cli("runs", "--ledger", str(gateway.ledger_path))  # the operator's way in
    assert runs.returncode == 0, runs.stderr
