"""`tether policy suggest` from recorded-looking events: valid policy, evidence comments, nothing broader."""

from __future__ import annotations

import datetime
from pathlib import Path

import yaml

from tests.unit.analysis_events import at, call, minted
from tether.analysis.suggest import render, suggest
from tether.catalog import load_catalog
from tether.policy.engine import PolicyEngine, RequestFacts
from tether.policy.loader import check_files, load_policy_files

CATALOG = load_catalog()
NOW = datetime.datetime(2026, 3, 2, 10, tzinfo=datetime.UTC)


def decide(engine: PolicyEngine, method: str, host: str, path: str) -> str:
    return engine.decide(RequestFacts("pr-bot", method, host, 443, path, "", None, (), True, NOW)).action


def test_suggestion_is_a_valid_exact_policy(tmp_path: Path) -> None:
    evil_run = "run_evil\nproviders: {}\n# "
    events = [
        minted("run_1", at(0)),
        call("run_1", at(1)),
        call(
            "run_1",
            at(2),
            method="POST",
            path="/repos/Acme/API/issues",
            route="POST /repos/{owner}/{repo}/issues",
        ),
        call("run_1", at(3), host="status.example.com", path="/health", route=None, provider=None),
        call("run_1", at(4), path="/repos/acme/api/not-a-github-route", route=None),
        call("run_1", at(5), path="/{weird}", route=None),
        call(evil_run, at(6), method="DELETE", path="/repos/acme/api", kind="api.denied"),
        call("run_other_agent", at(7), agent="someone-else", path="/repos/x/y/pulls/1"),
    ]
    result = suggest(events, CATALOG, "pr-bot")
    assert result.runs == ["run_1", evil_run] and result.calls == 6
    text = render(result, CATALOG, "2026-03-02T10:00:00.000Z")
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    assert check_files([policy]) == []
    loaded = yaml.safe_load(text)
    assert loaded["providers"]["github"]["scopes"] == ["issues:write", "pull_requests:read"]
    assert loaded["providers"]["github"]["repositories"] == ["acme/api"]
    assert loaded["providers"]["github"]["credential"] == "github-bot"
    assert loaded["egress"] == ["status.example.com"]
    assert loaded["rules"] == [
        {
            "name": "observed-1",
            "action": "allow",
            "methods": ["GET"],
            "host": "api.github.com",
            "path": "/repos/acme/api/not-a-github-route",
        }
    ]
    assert "run_evil\\nproviders" in text  # the hostile run id stays inside its comment
    assert "x GET api.github.com/{weird} (not a route tether knows" in text
    assert "someone-else" not in text and "/repos/x/y" not in text

    engine = PolicyEngine(load_policy_files([policy], CATALOG), CATALOG)
    for method, host, path in [
        ("GET", "api.github.com", "/repos/acme/api/pulls/7"),
        ("POST", "api.github.com", "/repos/acme/api/issues"),
        ("GET", "status.example.com", "/health"),
        ("GET", "api.github.com", "/repos/acme/api/not-a-github-route"),
    ]:
        assert decide(engine, method, host, path) == "allow", (method, host, path)
    for method, host, path in [
        ("DELETE", "api.github.com", "/repos/acme/api"),
        ("GET", "api.github.com", "/repos/acme/web/pulls/7"),
        ("PUT", "api.github.com", "/repos/acme/api/contents/README.md"),
        ("GET", "evil.example", "/"),
    ]:
        assert decide(engine, method, host, path) == "deny", (method, host, path)


def test_last_runs_only_and_nothing_forwarded(tmp_path: Path) -> None:
    events = [
        call(
            "run_1", at(1), method="POST", path="/repos/a/b/issues", route="POST /repos/{owner}/{repo}/issues"
        )
    ]
    events += [call("run_2", at(2)), call("run_3", at(3), kind="api.denied")]
    assert suggest(events, CATALOG, "pr-bot", runs=2).runs == ["run_2", "run_3"]
    only_denied = suggest(events, CATALOG, "pr-bot", runs=1)
    text = render(only_denied, CATALOG, "now")
    assert "this policy allows nothing" in text
    policy = tmp_path / "nothing.yaml"
    policy.write_text(text)
    assert check_files([policy]) == []
    engine = PolicyEngine(load_policy_files([policy], CATALOG), CATALOG)
    assert decide(engine, "GET", "api.github.com", "/repos/acme/api/pulls/7") == "deny"


def test_suggestion_names_the_configured_credential_of_a_minted_token() -> None:
    # A GitHub App token's source names the installation; the policy must name the tether.yaml entry.
    source = {"credential": "github_app:12345/installation:678", "credential_name": "gh-app", "minted": True}
    events = [minted("run_1", at(0), detail=source), call("run_1", at(1))]
    loaded = yaml.safe_load(render(suggest(events, CATALOG, "pr-bot"), CATALOG, "2026-03-02T10:00:00.000Z"))
    assert loaded["providers"]["github"]["credential"] == "gh-app"
