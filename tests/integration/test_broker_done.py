"""The issue's "done when": one run of an agent using PyGithub and slack_sdk through tether yields a ledger
where every call names a minted, down-scoped token of that run, and the GitHub token is revoked at GitHub
when the run ends."""

import subprocess
import sys

import pytest

from tests.integration.harness import client_env, slack_config
from tether.sandbox.providers import APP_ID

pytestmark = pytest.mark.timeout(180)

AGENT = """
from github import Auth, Github
from slack_sdk import WebClient

repo = Github(auth=Auth.Token("tether"), retry=None).get_repo("acme/api")
pr = repo.get_pull(7)
pr.create_review_comment("Add a test for the empty file.", repo.get_commit(pr.head.sha), "app.py", line=1)
WebClient(token="tether").chat_postMessage(channel="C0GENERAL", text=f"Reviewed {pr.title!r}")
"""


def test_pygithub_and_slack_sdk_run_on_minted_down_scoped_tokens(make_tether, sandbox, tmp_path):
    policy = {
        "id": "pol_review",
        "agents": ["test-*"],
        "providers": {
            "github": {
                "credential": "github-bot",
                "scopes": ["repo:write", "pull_requests:write", "issues:write"],
                "repositories": ["acme/api"],
                "ttl_seconds": 900,
            },
            "slack": {
                "credential": "slack-bot",
                "scopes": ["chat:write", "channels:read"],
                "ttl_seconds": 900,
            },
        },
    }
    credentials = {
        "github-bot": {"type": "github_app", "app_id": APP_ID, "private_key_file": str(sandbox.app_key_path)},
        **slack_config(sandbox, tmp_path),
    }
    tether = make_tether(policy, credentials=credentials)
    ask = {"github": ["repo:read", "pull_requests:write"], "slack": ["chat:write"]}
    run_id = tether.api("POST", "/v1/runs", {"task_context": "review-pr-7", "scopes": ask}).json()["run_id"]

    agent = subprocess.run(
        [sys.executable, "-c", AGENT], env=client_env(tether), capture_output=True, text=True, timeout=120
    )
    assert agent.returncode == 0, sandbox.tokens.redact(sandbox.slack.tokens.redact(agent.stderr))
    assert tether.api("POST", f"/v1/runs/{run_id}/end").status_code == 200

    events = [e for e in tether.events() if e["run_id"] == run_id]
    minted = {e["token_id"]: e for e in events if e["event_type"] == "token.minted"}
    assert sorted(e["provider"] for e in minted.values()) == ["github", "slack"]
    assert all(e["detail"]["minted"] is True for e in minted.values())
    by_provider = {e["provider"]: e for e in minted.values()}
    # Down-scoped: each token carries the run's ask, less than the policy grants.
    assert by_provider["github"]["scope_granted"] == ["pull_requests:write", "repo:read"]
    assert by_provider["slack"]["scope_granted"] == ["chat:write"]
    calls = [e for e in events if e["event_type"].startswith("api.")]
    assert {e["request"]["host"] for e in calls} == {"api.github.com", "slack.com"}
    assert all(e["token_id"] in minted and minted[e["token_id"]]["provider"] == e["provider"] for e in calls)
    # The GitHub token was revoked at GitHub when the run ended.
    revoked = [e for e in events if e["event_type"] == "token.revoked" and e["provider"] == "github"]
    assert [e["detail"]["revocation"] for e in revoked] == ["provider"]
    assert sandbox.app.minted[-1].name in sandbox.app.revoked
