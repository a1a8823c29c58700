import dataclasses
import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.unit.test_policy_fakes import fake_catalog, policy_set
from tether.catalog import load_catalog
from tether.policy.engine import PolicyEngine, RequestFacts
from tether.policy.loader import load_policy_files

WEDNESDAY_10_UTC = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
PUBLIC_IP = (ipaddress.ip_address("140.82.112.6"),)
POLICIES = Path(__file__).resolve().parents[2] / "policies"
DEMO_POLICY = Path(__file__).resolve().parents[2] / "tether" / "defaults" / "demo-policy.yaml"


def review_policy(**overrides: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "id": "pol_review",
        "agents": ["pr-review-*"],
        "egress": ["status.example.com", "*.internal.example.com:8443", "10.1.2.3"],
        "providers": {
            "github": {
                "credential": "github-bot",
                "scopes": ["repo:read", "pull_requests:read", "issues:write"],
                "ttl_seconds": 900,
                "repositories": ["acme/api", "acme/web-*"],
            },
            "slack": {"credential": "slack-bot", "scopes": ["chat:write"], "tag_upstream": False},
        },
        "rules": [
            {
                "name": "no-repo-deletes",
                "action": "deny",
                "methods": ["DELETE"],
                "path": "/repos/{owner}/{repo}",
            },
            {
                "name": "health",
                "action": "allow",
                "methods": ["GET"],
                "host": "metrics.example.org",
                "path": "/health",
            },
            {
                "name": "gh-user",
                "action": "allow",
                "methods": ["GET"],
                "host": "api.github.com",
                "path": "/user",
            },
        ],
    }
    policy.update(overrides)
    return policy


def engine(*policies: dict[str, Any]) -> PolicyEngine:
    return PolicyEngine(policy_set(*(policies or (review_policy(),))), fake_catalog())


def facts(
    method: str = "GET",
    url: str = "https://api.github.com/repos/acme/api/pulls/7",
    *,
    agent: str = "pr-review-1",
    requested: dict[str, frozenset[str]] | None = None,
    ips: tuple[Any, ...] = PUBLIC_IP,
    trusted: bool = False,
    now: datetime = WEDNESDAY_10_UTC,
) -> RequestFacts:
    parts = urlsplit(url)
    assert parts.hostname is not None
    return RequestFacts(
        agent_name=agent,
        method=method,
        host=parts.hostname,
        port=parts.port or 443,
        path=parts.path,
        query=parts.query,
        requested_scopes=requested,
        resolved_ips=[ipaddress.ip_address(ip) if isinstance(ip, str) else ip for ip in ips],
        trusted_destination=trusted,
        now=now,
    )


def test_agent_without_policy_is_denied():
    decision = engine().decide(facts(agent="deploy-bot"))
    assert (decision.action, decision.forward, decision.mode) == ("deny", False, "enforce")
    assert decision.reason == "no_policy: no policy applies to agent 'deploy-bot'"
    assert decision.policy_id is None


def test_first_matching_policy_in_order_applies():
    first = review_policy(id="pol_first", agents=["pr-review-1"])
    second = review_policy(id="pol_second", agents=["pr-review-*"])
    both = engine(first, second)
    assert [both.policy_for(name) for name in ("pr-review-1", "pr-review-2", "other")] == [
        both.policies.policies[0],
        both.policies.policies[1],
        None,
    ]


def test_provider_call_within_the_grant_is_allowed_with_route_and_grant():
    decision = engine().decide(facts())
    assert (decision.action, decision.forward, decision.reason) == ("allow", True, None)
    assert decision.rule == "providers.github"
    assert decision.policy_id == "pol_review"
    assert decision.provider == "github"
    assert decision.route == "GET /repos/{owner}/{repo}/pulls/{pull_number}"
    assert dict(decision.params) == {"owner": "acme", "repo": "api", "pull_number": "7"}
    assert decision.scope_needed == ("pull_requests:read", "repo:read")
    assert decision.grant is not None
    assert decision.grant.granted == ("issues:write", "pull_requests:read", "repo:read")
    assert (decision.grant.credential, decision.grant.ttl_seconds) == ("github-bot", 900)
    assert decision.downscoped is False


def test_host_outside_the_policy_is_denied_by_default():
    decision = engine().decide(facts("GET", "https://paste.example.net/upload"))
    assert decision.action == "deny" and not decision.forward
    assert decision.reason == (
        "host_not_allowed: paste.example.net:443 is not in the policy's egress, providers or allow rules"
    )
    assert decision.rule == "default-deny"
    assert decision.grant is None and decision.provider is None


def test_provider_host_the_policy_does_not_grant_is_denied_naming_the_provider():
    decision = engine().decide(facts("GET", "https://storage.googleapis.com/storage/v1/b/x/o"))
    assert decision.action == "deny"
    assert decision.reason is not None and decision.reason.startswith("host_not_allowed: ")
    assert "provider 'google'" in decision.reason


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://status.example.com/", True),
        ("http://status.example.com:8080/x", True),  # no port in the entry: any port
        ("https://STATUS.example.com./", True),  # case and trailing dot do not matter
        ("https://a.internal.example.com:8443/", True),
        ("https://a.b.internal.example.com:8443/", True),
        ("https://a.internal.example.com/", False),  # wrong port
        ("https://internal.example.com:8443/", False),  # the apex is not a subdomain
        ("https://evilstatus.example.com/", False),
    ],
)
def test_egress_entries_match_exact_wildcard_and_port(url, allowed):
    decision = engine().decide(facts("GET", url))
    assert decision.action == ("allow" if allowed else "deny")
    if allowed:
        assert decision.rule == "egress" and decision.grant is None


def test_allow_rule_opens_only_its_method_and_path_on_a_host_outside_egress():
    assert engine().decide(facts("GET", "https://metrics.example.org/health")).rule == "health"
    assert engine().decide(facts("POST", "https://metrics.example.org/health")).action == "deny"
    assert engine().decide(facts("GET", "https://metrics.example.org/admin")).action == "deny"


@pytest.mark.parametrize(
    ("url", "ip", "kind"),
    [
        ("https://a.internal.example.com:8443/", "10.0.0.5", "private"),
        ("https://a.internal.example.com:8443/", "169.254.169.254", "link-local"),
        ("https://a.internal.example.com:8443/", "127.0.0.1", "loopback"),
        ("https://a.internal.example.com:8443/", "::ffff:192.168.1.1", "private"),
        ("https://a.internal.example.com:8443/", "fd00::1", "unique-local"),
        ("https://a.internal.example.com:8443/", "100.64.0.1", "shared address space (CGNAT)"),
        ("https://api.github.com/repos/acme/api/pulls/7", "fe80::1", "link-local"),
    ],
)
def test_ssrf_guard_denies_private_destinations(url, ip, kind):
    decision = engine().decide(facts("GET", url, ips=(PUBLIC_IP[0], ip)))
    assert decision.action == "deny"
    assert decision.rule == "ssrf-guard"
    assert decision.reason is not None and decision.reason.startswith("private_address: ")
    assert f"({kind})" in decision.reason


def test_ssrf_guard_trusts_exact_egress_names_and_upstream_overrides():
    private = ("10.0.0.7",)
    assert engine().decide(facts("GET", "https://status.example.com/", ips=private)).action == "allow"
    assert engine().decide(facts("GET", "https://10.1.2.3/", ips=())).action == "allow"
    overridden = facts(ips=(), trusted=True)
    assert engine().decide(overridden).action == "allow"
    assert engine().decide(facts(ips=private)).reason == (
        "private_address: api.github.com resolves to 10.0.0.7 (private)"
    )


def test_ssrf_guard_fails_closed_without_an_address():
    decision = engine().decide(facts(ips=()))
    assert decision.reason == "unresolved_host: api.github.com has no resolved address to check"


def test_ip_literal_hosts_are_checked_even_without_resolution():
    policy = review_policy(rules=[{"name": "any-local", "action": "allow", "host": "127.0.0.1"}])
    decision = engine(policy).decide(facts("GET", "http://127.0.0.1:9000/", ips=()))
    assert decision.reason == "private_address: 127.0.0.1 resolves to 127.0.0.1 (loopback)"


@pytest.mark.parametrize("path", ["/repos/acme/api", "/repos/acme/api/", "/repos/%61cme/api"])
def test_deny_rule_beats_a_grant_that_would_allow(path):
    policy = review_policy()
    policy["providers"]["github"]["scopes"].append("administration:write")
    decision = engine(policy).decide(facts("DELETE", f"https://api.github.com{path}"))
    assert decision.action == "deny"
    assert (decision.reason, decision.rule) == ("denied_by_rule: no-repo-deletes", "no-repo-deletes")
    assert decision.provider == "github" and decision.grant is not None


def test_deny_rule_beats_an_allow_rule():
    rules = [
        {"name": "open", "action": "allow", "host": "metrics.example.org"},
        {"name": "closed", "action": "deny", "methods": "*", "host": "*.example.org", "path": "/admin/**"},
    ]
    decide = engine(review_policy(rules=rules)).decide
    assert decide(facts("GET", "https://metrics.example.org/admin")).rule == "closed"
    assert decide(facts("PUT", "https://metrics.example.org/admin/users/1")).rule == "closed"
    assert decide(facts("GET", "https://metrics.example.org/public")).rule == "open"


@pytest.mark.parametrize(
    "path", ["/repos/acme/api/../other", "/repos/acme/%2e%2e/x", "/repos//acme", "/repos/acme\\api", "/a b"]
)
def test_ambiguous_paths_are_denied(path):
    decision = engine().decide(dataclasses.replace(facts(), path=path))
    assert decision.action == "deny"
    assert decision.reason is not None and decision.reason.startswith("invalid_path: ")


def hours(**overrides: Any) -> dict[str, Any]:
    window = {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00"}
    window.update({"end": "19:00", **overrides})
    return window


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (datetime(2026, 3, 4, 7, 0, tzinfo=UTC), True),  # 08:00 in Berlin (CET): start is inclusive
        (datetime(2026, 3, 4, 6, 59, tzinfo=UTC), False),
        (datetime(2026, 3, 4, 18, 0, tzinfo=UTC), False),  # 19:00 Berlin: end is exclusive
        (datetime(2026, 7, 1, 16, 30, tzinfo=UTC), True),  # 18:30 Berlin in summer time (CEST)
        (datetime(2026, 3, 7, 10, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_hours_window_in_its_time_zone(now, inside):
    decision = engine(review_policy(hours=hours())).decide(facts(now=now))
    if inside:
        assert decision.action == "allow" and decision.flags == ()
    else:
        assert decision.action == "deny" and decision.rule == "hours"
        assert (
            decision.reason
            == "off_hours: outside the policy's hours (mon,tue,wed,thu,fri 08:00-19:00 Europe/Berlin)"
        )


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (datetime(2026, 3, 6, 23, 0, tzinfo=UTC), True),  # Friday 23:00: window started Friday
        (datetime(2026, 3, 7, 5, 59, tzinfo=UTC), True),  # Saturday 05:59: still Friday's window
        (datetime(2026, 3, 7, 6, 0, tzinfo=UTC), False),
        (datetime(2026, 3, 7, 23, 0, tzinfo=UTC), False),  # Saturday night: no window starts Saturday
        (datetime(2026, 3, 2, 3, 0, tzinfo=UTC), False),  # Monday 03:00: Sunday started no window
    ],
)
def test_overnight_window_belongs_to_the_day_it_starts(now, inside):
    window = hours(timezone="UTC", days=["fri"], start="22:00", end="06:00")
    decision = engine(review_policy(hours=window)).decide(facts(now=now))
    assert decision.action == ("allow" if inside else "deny")


def test_hours_flag_lets_the_call_through_and_flags_it():
    decision = engine(review_policy(hours=hours(outside="flag"))).decide(
        facts(now=datetime(2026, 3, 7, tzinfo=UTC))
    )
    assert (decision.action, decision.flags, decision.rule) == ("allow", ("off_hours",), "providers.github")
    denied = engine(review_policy(hours=hours(outside="flag"))).decide(
        facts("GET", "https://paste.example.net/", now=datetime(2026, 3, 7, tzinfo=UTC))
    )
    assert denied.action == "deny"


def test_unknown_route_on_a_provider_host_is_denied_unless_an_allow_rule_matches():
    unknown = engine().decide(facts("GET", "https://api.github.com/gists"))
    assert unknown.action == "deny" and unknown.rule == "default-deny"
    assert unknown.reason == "unknown_route: GET /gists is not a known github route"
    allowed = engine().decide(facts("GET", "https://api.github.com/user"))
    assert (allowed.action, allowed.rule, allowed.provider) == ("allow", "gh-user", "github")
    assert allowed.grant is not None and allowed.route is None


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.github.com/repos/acme/web-shop/pulls/1", True),
        ("https://api.github.com/repos/ACME/Api/pulls/1", True),  # GitHub names are case-insensitive
        ("https://api.github.com/repos/acme/infra/pulls/1", False),
        ("https://api.github.com/repos/evil/api/pulls/1", False),
        ("https://github.com/acme/api.git/info/refs?service=git-upload-pack", True),
        ("https://github.com/acme/infra.git/info/refs?service=git-upload-pack", False),
        ("https://api.github.com/rate_limit", True),  # no repository in the route
    ],
)
def test_repository_narrowing(url, allowed):
    decision = engine().decide(facts("GET", url))
    assert decision.action == ("allow" if allowed else "deny"), decision.reason
    if not allowed:
        assert decision.rule == "providers.github.repositories"
        assert decision.reason is not None and decision.reason.startswith("repository_not_allowed: ")


def test_call_beyond_the_policy_grant_is_denied_not_downscoped():
    policy = review_policy()
    policy["providers"]["github"]["scopes"] = ["repo:read", "pull_requests:read", "issues:read"]
    decision = engine(policy).decide(facts("POST", "https://api.github.com/repos/acme/api/issues/1/comments"))
    assert decision.action == "deny" and decision.rule == "providers.github.scopes"
    assert decision.reason == "scope_not_granted: needs issues:write or pull_requests:write"
    assert decision.scope_needed == ("issues:write", "pull_requests:write")
    assert decision.downscoped is False
    assert decision.route == "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"


def test_call_the_agents_ask_cut_is_denied_and_downscoped():
    ask = {"github": frozenset({"repo:read", "pull_requests:read", "issues:read"})}
    decision = engine().decide(
        facts("POST", "https://api.github.com/repos/acme/api/issues/1/comments", requested=ask)
    )
    assert decision.action == "deny" and decision.downscoped is True
    assert decision.grant is not None
    assert decision.grant.granted == ("issues:read", "pull_requests:read", "repo:read")
    assert decision.grant.downscoped is False  # the ask was within the policy


def test_implicit_scopes_and_scope_free_routes_are_always_permitted():
    ask: dict[str, frozenset[str]] = {"github": frozenset()}
    assert (
        engine().decide(facts("GET", "https://api.github.com/repos/acme/api", requested=ask)).action
        == "allow"
    )
    assert engine().decide(facts("GET", "https://api.github.com/rate_limit", requested=ask)).action == "allow"
    assert engine().decide(facts(requested=ask)).action == "deny"


def test_an_ask_for_another_provider_leaves_this_one_at_the_full_grant():
    decision = engine().decide(facts(requested={"slack": frozenset({"chat:write"})}))
    assert decision.action == "allow"
    assert decision.grant is not None and decision.grant.requested is None


def test_report_mode_forwards_denied_calls_and_keeps_the_verdict():
    decision = engine(review_policy(mode="report")).decide(facts("GET", "https://paste.example.net/"))
    assert (decision.action, decision.forward, decision.mode) == ("deny", True, "report")
    assert decision.reason is not None and decision.reason.startswith("host_not_allowed: ")
    allowed = engine(review_policy(mode="report")).decide(facts())
    assert (allowed.action, allowed.forward) == ("allow", True)


def test_slack_calls_use_the_slack_grant():
    decision = engine().decide(facts("POST", "https://slack.com/api/chat.postMessage"))
    assert (decision.action, decision.provider) == ("allow", "slack")
    assert decision.grant is not None and decision.grant.tag_upstream is False
    denied = engine().decide(facts("GET", "https://slack.com/api/conversations.list"))
    assert denied.reason == "scope_not_granted: needs channels:read"


def test_grant_without_an_ask_is_the_policy_grant_at_its_strongest():
    policy = review_policy()
    policy["providers"]["github"]["scopes"] = ["repo:read", "repo:write", "issues:read"]
    grant = engine(policy).grant("pr-review-1", "github", None)
    assert grant is not None
    assert (grant.requested, grant.granted, grant.downscoped) == (None, ("issues:read", "repo:write"), False)
    assert grant.policy_id == "pol_review" and grant.provider == "github"


def test_grant_downgrades_an_ask_to_what_the_policy_implies():
    policy = review_policy()
    policy["providers"]["github"]["scopes"] = ["repo:read", "issues:read"]
    grant = engine(policy).grant("pr-review-1", "github", frozenset({"repo:write", "issues:write"}))
    assert grant is not None
    assert grant.requested == ("issues:write", "repo:write")
    assert grant.granted == ("issues:read", "repo:read")
    assert grant.downscoped is True


def test_grant_gives_a_narrower_ask_and_never_more_than_the_policy():
    e = engine()
    narrower = e.grant("pr-review-1", "github", frozenset({"issues:read"}))
    assert narrower is not None and (narrower.granted, narrower.downscoped) == (("issues:read",), False)
    policy = review_policy()
    policy["providers"]["slack"]["scopes"] = ["channels:write"]  # Slack: write does not imply read
    slack = engine(policy).grant("pr-review-1", "slack", frozenset({"channels:read"}))
    assert slack is not None and (slack.granted, slack.downscoped) == ((), True)


def test_grant_is_none_without_policy_or_provider_section():
    assert engine().grant("other-agent", "github", None) is None
    assert engine().grant("pr-review-1", "google", None) is None


def test_rule_without_host_or_methods_matches_everything_under_its_path():
    rules = [{"name": "no-admin", "action": "deny", "path": "/admin/**"}]
    decide = engine(review_policy(rules=rules)).decide
    assert decide(facts("PATCH", "https://status.example.com/admin")).rule == "no-admin"
    assert decide(facts("GET", "https://status.example.com/administrator")).rule == "egress"


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        engine().decide(facts(now=datetime(2026, 3, 4, 10, 0)))


def test_demo_policy_with_the_packaged_catalog():
    catalog = load_catalog()
    demo = PolicyEngine(load_policy_files([DEMO_POLICY], catalog), catalog)
    read_only = {"github": frozenset({"repo:read", "pull_requests:read", "issues:read"})}

    def decide(method: str, url: str):
        return demo.decide(facts(method, url, agent="demo-agent", requested=read_only))

    pull = decide("GET", "https://api.github.com/repos/acme/api/pulls/1")
    assert (pull.action, pull.route) == ("allow", "GET /repos/{owner}/{repo}/pulls/{pull_number}")
    comment = decide("POST", "https://api.github.com/repos/acme/api/issues/1/comments")
    assert (comment.action, comment.downscoped) == ("deny", True)
    assert decide("DELETE", "https://api.github.com/repos/acme/api").rule == "no-repo-deletes"
    assert decide("GET", "https://paste.example.net/upload").reason.startswith("host_not_allowed: ")
    clone = decide("GET", "https://github.com/acme/api.git/info/refs?service=git-upload-pack")
    assert clone.action == "allow"
    push = decide("POST", "https://github.com/acme/api.git/git-receive-pack")
    assert (push.action, push.scope_needed) == ("deny", ("repo:write",))

    grant = demo.grant("demo-agent", "github", frozenset({"repo:write", "issues:write"}))
    assert grant is not None
    assert (grant.granted, grant.downscoped) == (("issues:write", "repo:read"), True)


def test_every_decision_on_a_provider_host_names_the_route_and_grant():
    policy = review_policy(hours=hours(timezone="UTC", start="00:00", end="01:00"))
    ssrf = engine().decide(facts(ips=("10.0.0.1",)))
    by_rule = engine().decide(facts("DELETE", "https://api.github.com/repos/acme/api"))
    off_hours = engine(policy).decide(facts())
    for decision in (ssrf, by_rule, off_hours):
        assert decision.action == "deny" and decision.grant is not None
        assert decision.route is not None and decision.scope_needed
    assert by_rule.scope_needed == ("administration:write",)


def test_ssrf_is_never_forwarded_even_in_report_mode():
    decision = engine(review_policy(mode="report")).decide(facts(ips=("169.254.169.254",)))
    assert (decision.action, decision.forward, decision.rule) == ("deny", False, "ssrf-guard")


def test_deny_rules_cannot_be_dodged_by_case():
    decision = engine().decide(facts("DELETE", "https://api.github.com/repos/ACME/Api"))
    assert (decision.action, decision.rule) == ("deny", "no-repo-deletes")
