"""The request path end to end: a real `requests` client, the real sidecar, a sandbox GitHub."""

from tests.integration.harness import GITHUB_SECRET

API = "https://api.github.com"


def by_type(events, event_type):
    return [e for e in events if e["event_type"] == event_type]


def test_allowed_call_gets_the_injected_token_and_is_recorded(tether, sandbox):
    sandbox.github.requests.clear()
    with tether.session(Authorization="Bearer tether", **{"X-Tether-Task": "review-pr-7"}) as s:
        resp = s.get(f"{API}/repos/acme/api/pulls/7")
    assert resp.status_code == 200, resp.text
    assert resp.json()["number"] == 7

    seen = sandbox.github.requests[-1]
    assert seen.headers["Authorization"] == "Bearer <token:tether-static>"
    assert seen.headers["X-Tether-Agent"] == "test-agent"
    assert seen.headers["X-Tether-Task"] == "review-pr-7"
    assert "tether/" in seen.headers["User-Agent"]

    events = tether.events()
    minted = by_type(events, "token.minted")
    request, response = by_type(events, "api.request")[-1], by_type(events, "api.response")[-1]
    assert len(minted) == 1
    assert request["token_id"] == response["token_id"] == minted[0]["token_id"]
    assert request["request"]["route"] == "GET /repos/{owner}/{repo}/pulls/{pull_number}"
    assert request["task_context"] == "review-pr-7"
    assert request["seq"] < response["seq"]
    assert response["response"]["status"] == 200
    assert request["source_ip"] == "127.0.0.1"
    assert all(e["run_id"] for e in events)


def test_denied_scope_gets_403_with_event_id(tether):
    with tether.session() as s:
        resp = s.delete(f"{API}/repos/acme/api")
    assert resp.status_code == 403
    body = resp.json()
    assert body["error"] == "tether_denied"
    denied = [e for e in tether.events() if e["event_id"] == body["event_id"]]
    assert denied and denied[0]["event_type"] == "api.denied"
    assert denied[0]["decision"]["action"] == "deny"


def test_host_outside_the_policy_is_denied(tether):
    with tether.session() as s:
        resp = s.get("https://example.org/")
    assert resp.status_code == 403
    assert resp.json()["error"] == "tether_denied"


def test_secret_never_reaches_the_agent_or_the_ledger(tether):
    with tether.session() as s:
        for path in ("/repos/acme/api/pulls/7", "/repos/acme/api", "/repos/acme/api/issues"):
            assert GITHUB_SECRET not in s.get(f"{API}{path}").text
    assert GITHUB_SECRET not in tether.ledger_path.read_bytes().decode(errors="replace")
    assert GITHUB_SECRET not in tether.log()


def test_keep_alive_connection_serves_many_calls(tether, sandbox):
    """One client connection, many calls: upstream connections are reused, not piled up."""
    with tether.session() as s:
        statuses = [s.get(f"{API}/zen", timeout=10).status_code for _ in range(12)]
    assert statuses == [200] * 12
