"""slack_sdk through tether with only the placeholder token: tether rotates the Slack refresh-token chain,
persists the new refresh token before using the new access token, and the chain survives a restart."""

import stat
import subprocess
import sys

import pytest

from tests.integration.harness import client_env, github_policy, slack_config

pytestmark = pytest.mark.timeout(180)

AGENT = """
from slack_sdk import WebClient

client = WebClient(token="tether")
sent = client.chat_postMessage(channel="C0GENERAL", text="PR #7 reviewed: one nit.")
print(sent["ts"])
"""


def slack_policy():
    policy = github_policy()
    policy["providers"] = {"slack": {"credential": "slack-bot", "scopes": ["chat:write"], "ttl_seconds": 600}}
    return policy


def post(tether):
    return subprocess.run(
        [sys.executable, "-c", AGENT], env=client_env(tether), capture_output=True, text=True, timeout=120
    )


def test_chat_post_message_with_a_rotated_token(make_tether, sandbox, tmp_path):
    credentials = slack_config(sandbox, tmp_path)
    refresh_file = tmp_path / "refresh_token"
    tether = make_tether(slack_policy(), credentials=credentials)
    rotations = sandbox.slack.rotations

    first = post(tether)
    assert first.returncode == 0, sandbox.slack.tokens.redact(first.stderr)
    assert sandbox.slack.messages[-1].text == "PR #7 reviewed: one nit."
    assert sandbox.slack.messages[-1].ts == first.stdout.strip()
    assert sandbox.slack.rotations == rotations + 1

    # The spent refresh token was replaced on disk by Slack's new one, still owner-only.
    assert refresh_file.read_text().strip() == sandbox.slack.refresh_token
    assert stat.S_IMODE(refresh_file.stat().st_mode) == 0o600

    events = tether.events()
    minted = [e for e in events if e["event_type"] == "token.minted" and e["provider"] == "slack"]
    assert len(minted) == 1
    assert minted[0]["detail"] == {
        "credential": "slack:1234567890.0987654321/team:T0SANDBOX",
        "credential_name": "slack-bot",
        "minted": True,
    }
    assert minted[0]["scope_granted"] == ["chat:write"] and minted[0]["ttl_seconds"] == 600
    calls = [e for e in events if e["event_type"].startswith("api.")]
    assert calls and {e["token_id"] for e in calls} == {minted[0]["token_id"]}
    assert {e["request"]["route"] for e in calls} == {"POST /api/chat.postMessage"}

    # A new tether process (a restart) continues the chain from the file: nothing was stranded.
    tether.stop()
    again = make_tether(slack_policy(), credentials=credentials)
    second = post(again)
    assert second.returncode == 0, sandbox.slack.tokens.redact(second.stderr)
    assert sandbox.slack.rotations == rotations + 2 and sandbox.slack.spent == 0

    for text in (first.stdout, first.stderr, second.stderr, tether.log(), again.log(), str(events)):
        assert sandbox.slack.tokens.redact(text) == text, "a Slack token leaked"


def test_a_spent_refresh_token_is_a_mint_failure(make_tether, sandbox, tmp_path):
    credentials = slack_config(sandbox, tmp_path)
    (tmp_path / "refresh_token").write_text("xoxe-1-spent\n")
    tether = make_tether(slack_policy(), credentials=credentials)
    result = post(tether)
    assert result.returncode != 0
    failed = [e for e in tether.events() if e["event_type"] == "token.mint_failed"]
    assert len(failed) == 1 and "invalid_refresh_token" in failed[0]["decision"]["reason"]
