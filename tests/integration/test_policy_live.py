"""Policy behaviour on the running sidecar: report mode, hot reload, tagging switch, agent credentials."""

import time

from tests.integration.harness import github_policy

API = "https://api.github.com"


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_report_mode_forwards_and_says_what_enforce_would_do(make_tether, sandbox):
    tether = make_tether(github_policy(mode="report"))
    with tether.session() as s:
        resp = s.post(
            f"{API}/repos/acme/api/issues",
            json={"title": "report mode"},
            headers={"X-Tether-Scopes": "github=repo:read"},
        )
    assert resp.status_code == 201
    request = [e for e in tether.events() if e["event_type"] == "api.request"][-1]
    assert request["decision"]["action"] == "allow"
    assert request["decision"]["would"] == "deny"
    assert request["decision"]["mode"] == "report"
    assert request["decision"]["reason"].startswith("scope_not_granted")


def test_hot_reload_swaps_valid_and_keeps_last_good_on_invalid(tether):
    with tether.session() as s:
        assert s.get(f"{API}/repos/acme/api/issues").status_code == 200
        narrowed = github_policy()
        narrowed["providers"]["github"]["scopes"] = ["pull_requests:read"]
        tether.write_policy(narrowed)
        assert wait_for(lambda: s.get(f"{API}/repos/acme/api/issues").status_code == 403)
        broken = github_policy()
        broken["providers"]["github"]["scops"] = ["repo:write"]
        tether.write_policy(broken)
        assert wait_for(lambda: any(e["event_type"] == "policy.rejected" for e in tether.events()))
        assert s.get(f"{API}/repos/acme/api/issues").status_code == 403  # last good policy still applies
        assert s.get(f"{API}/repos/acme/api/pulls/7").status_code == 200
    rejected = [e for e in tether.events() if e["event_type"] == "policy.rejected"][-1]
    assert any("scops" in line for line in rejected["detail"]["errors"])


def test_tagging_can_be_switched_off(make_tether, sandbox):
    policy = github_policy()
    policy["providers"]["github"]["tag_upstream"] = False
    tether = make_tether(policy)
    with tether.session(**{"User-Agent": "agent/1.0"}) as s:
        assert s.get(f"{API}/zen").status_code == 200
    seen = sandbox.github.requests[-1].headers
    assert "X-Tether-Agent" not in seen and "X-Tether-Run" not in seen
    assert seen["User-Agent"] == "agent/1.0"


def test_agent_supplied_credential_is_replaced_and_flagged(tether, sandbox):
    agent_token = "ghp_AGENTOWNTOKENshouldNEVERleave0000"
    with tether.session(Authorization=f"token {agent_token}") as s:
        assert s.get(f"{API}/repos/acme/api/pulls/7").status_code == 200
    seen = sandbox.github.requests[-1]
    assert seen.headers["Authorization"] == "Bearer <token:tether-static>"
    assert agent_token not in str(dict(seen.headers))
    request = [e for e in tether.events() if e["event_type"] == "api.request"][-1]
    assert request["detail"]["agent_credential"] == "replaced"
    assert agent_token not in tether.ledger_path.read_bytes().decode(errors="replace")


def test_placeholder_credential_is_accepted_silently(tether):
    with tether.session(Authorization="token tether") as s:
        assert s.get(f"{API}/zen").status_code == 200
    request = [e for e in tether.events() if e["event_type"] == "api.request"][-1]
    assert request["detail"]["agent_credential"] == "placeholder"
