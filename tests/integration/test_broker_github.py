"""Minted GitHub App tokens end to end: PyGithub and `git push` through tether holding only the placeholder
`tether`; the sandbox GitHub verifies the App JWT, mints down-scoped installation tokens, checks them on
every REST and git call and sees them revoked at run end."""

import subprocess
import sys
import threading

import pytest

from tests.integration.harness import client_env, github_policy
from tests.integration.test_git import REMOTE, agent_git_env, git
from tether.catalog import load_catalog
from tether.sandbox.providers import APP_ID, INSTALLATION_ID

pytestmark = pytest.mark.timeout(180)

API = "https://api.github.com"
SOURCE = f"github_app:{APP_ID}/installation:{INSTALLATION_ID}"

AGENT = """
from github import Auth, Github

gh = Github(auth=Auth.Token("tether"), retry=None)
repo = gh.get_repo("acme/api")
pulls = list(repo.get_pulls())
pr = repo.get_pull(pulls[0].number)
comment = pr.create_review_comment("Handle the empty file before parsing.", repo.get_commit(pr.head.sha),
                                   "app.py", line=1)
print(len(pulls), pr.number, comment.id)
"""


def app_credentials(sandbox, **extra):
    return {
        "credentials": {
            "github-bot": {
                "type": "github_app",
                "app_id": APP_ID,
                "private_key_file": str(sandbox.app_key_path),
                **extra,
            }
        }
    }


def app_policy(scopes):
    policy = github_policy()
    policy["providers"]["github"]["scopes"] = scopes
    policy["providers"]["github"]["repositories"] = ["acme/api"]
    return policy


def run_events(tether, run_id):
    return [e for e in tether.events() if e["run_id"] == run_id]


def assert_no_known_token(sandbox, text):
    # redact() replaces every token the sandbox ever issued: unchanged text holds none of them.
    assert sandbox.tokens.redact(text) == text, "a provider token leaked"


def test_pygithub_and_git_push_use_one_minted_token_revoked_at_run_end(make_tether, sandbox, tmp_path):
    tether = make_tether(
        app_policy(["repo:write", "pull_requests:write", "issues:read"]), **app_credentials(sandbox)
    )
    ask = {"github": ["repo:write", "pull_requests:write", "administration:write"]}
    opened = tether.api("POST", "/v1/runs", {"task_context": "review-pr-7", "scopes": ask})
    assert opened.status_code == 201, opened.text
    run_id = opened.json()["run_id"]
    minted_before = len(sandbox.app.minted)
    review = sandbox.github.repositories["acme/api"].issues[7].review_comments
    reviews_before = len(review)  # the sandbox is shared by the session's tests

    agent = subprocess.run(
        [sys.executable, "-c", AGENT], env=client_env(tether), capture_output=True, text=True, timeout=120
    )
    assert agent.returncode == 0, sandbox.tokens.redact(agent.stderr)
    count, number, comment_id = agent.stdout.split()
    assert (count, number) == ("1", "7")
    new = review[reviews_before:]
    assert [c.id for c in new] == [int(comment_id)] and new[0].author.startswith("installation-")

    env = agent_git_env(tether, tmp_path)
    assert git(["clone", REMOTE, "work"], tmp_path, env).returncode == 0
    work = tmp_path / "work"
    (work / "REVIEW.md").write_text("reviewed\n")
    assert git(["add", "REVIEW.md"], work, env).returncode == 0
    assert git(["commit", "-m", "review notes"], work, env).returncode == 0
    pushed = git(["push", "origin", "HEAD:main"], work, env)
    assert pushed.returncode == 0, sandbox.tokens.redact(pushed.stderr)

    ended = tether.api("POST", f"/v1/runs/{run_id}/end")
    assert ended.status_code == 200, ended.text

    # One mint for the run and provider, down-scoped to what the policy grants of the ask.
    assert len(sandbox.app.minted) == minted_before + 1
    record = sandbox.app.minted[-1]
    granted = ["pull_requests:write", "repo:write"]
    assert dict(record.permissions) == load_catalog().providers["github"].native(granted)
    assert record.repositories == ("acme/api",)
    events = run_events(tether, run_id)
    minted = [e for e in events if e["event_type"] == "token.minted"]
    assert len(minted) == 1
    token = minted[0]
    assert token["provider"] == "github" and token["token_id"].startswith("tok_")
    assert token["scope_requested"] == sorted(ask["github"])
    assert token["scope_granted"] == granted and token["scope_downscoped"] is True
    assert token["policy_id"] == "pol_test" and token["ttl_seconds"] == 900
    assert token["source_ip"] == "127.0.0.1" and token["token_sha256"]
    assert token["detail"] == {"credential": SOURCE, "credential_name": "github-bot", "minted": True}

    # Every call of the run names that token.
    calls = [e for e in events if e["event_type"].startswith("api.")]
    hosts = {e["request"]["host"] for e in calls}
    assert hosts == {"api.github.com", "github.com"}
    assert {e["token_id"] for e in calls} == {token["token_id"]}
    routes = {e["request"]["route"] for e in calls}
    assert "POST /repos/{owner}/{repo}/pulls/{pull_number}/comments" in routes
    assert "POST /{owner}/{repo}/git-receive-pack" in routes

    # Revoked at run end, at GitHub too.
    revoked = [e for e in events if e["event_type"] == "token.revoked"]
    assert [e["token_id"] for e in revoked] == [token["token_id"]]
    assert revoked[0]["detail"]["revocation"] == "provider" and revoked[0]["detail"]["reason"] == "run_ended"
    for field in (
        "scope_requested",
        "scope_granted",
        "scope_downscoped",
        "policy_id",
        "source_ip",
        "ttl_seconds",
    ):
        assert revoked[0][field] == token[field]
    assert record.name in sandbox.app.revoked
    deletes = [r for r in sandbox.github.requests if r.method == "DELETE" and r.path == "/installation/token"]
    assert deletes and deletes[-1].headers["Authorization"] == f"Bearer <token:{record.name}>"

    for text in (agent.stdout, agent.stderr, pushed.stderr, tether.log(), str(tether.events())):
        assert_no_known_token(sandbox, text)


def test_concurrent_first_calls_of_a_run_mint_once(make_tether, sandbox):
    tether = make_tether(app_policy(["repo:read", "issues:read"]), **app_credentials(sandbox))
    before = len(sandbox.app.minted)
    statuses: list[int] = []

    def call():
        with tether.session(**{"X-Tether-Run": "run_concurrent", "Authorization": "Bearer tether"}) as s:
            statuses.append(s.get(f"{API}/repos/acme/api/issues", timeout=60).status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    assert len(sandbox.app.minted) == before + 1
    minted = [e for e in run_events(tether, "run_concurrent") if e["event_type"] == "token.minted"]
    assert len(minted) == 1


def test_permission_outside_the_installation_is_githubs_422_as_a_502(make_tether, sandbox):
    tether = make_tether(app_policy(["actions:read"]), **app_credentials(sandbox))
    with tether.session() as s:
        response = s.get(f"{API}/repos/acme/api/actions/runs", timeout=60)
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "tether_mint_failed"
    assert "422 The permissions requested are not granted to this installation." in body["reason"]
    failed = {e["event_id"]: e for e in tether.events()}[body["event_id"]]
    assert failed["event_type"] == "token.mint_failed"
    assert failed["detail"]["provider_status"] == 422
    assert failed["scope_granted"] == ["actions:read"] and failed["policy_id"] == "pol_test"
    assert not [e for e in tether.events() if e["event_type"] == "api.request"]


def test_provider_5xx_is_retried_then_fails_with_502(make_tether, sandbox):
    tether = make_tether(app_policy(["issues:read"]), **app_credentials(sandbox, mint_deadline_seconds=2))
    try:
        sandbox.app.fail_next[:] = [503, 500]
        with tether.session(**{"X-Tether-Run": "run_flaky"}) as s:
            assert s.get(f"{API}/repos/acme/api/issues", timeout=60).status_code == 200
        sandbox.app.fail_next[:] = [503] * 1000
        with tether.session(**{"X-Tether-Run": "run_down"}) as s:
            response = s.get(f"{API}/repos/acme/api/issues", timeout=60)
        assert response.status_code == 502
        assert "503 Service Unavailable (gave up after" in response.json()["reason"]
    finally:
        sandbox.app.fail_next.clear()
    events = tether.events()
    assert len([e for e in events if e["event_type"] == "token.minted" and e["run_id"] == "run_flaky"]) == 1
    failed = [e for e in events if e["event_type"] == "token.mint_failed" and e["run_id"] == "run_down"]
    assert len(failed) == 1 and failed[0]["detail"]["provider_status"] == 503


def test_a_401_to_a_cached_token_re_mints_once_and_sends_the_call_again(make_tether, sandbox):
    tether = make_tether(app_policy(["issues:read"]), **app_credentials(sandbox))

    def issues():
        with tether.session(**{"X-Tether-Run": "run_401"}) as s:
            response = s.get(f"{API}/repos/acme/api/issues", timeout=60)
        return response.status_code, response

    def revoke_out_of_band():
        token = sandbox.tokens.named(sandbox.app.minted[-1].name)
        assert token is not None
        sandbox.tokens.revoke(token)

    assert issues()[0] == 200
    revoke_out_of_band()
    status, response = issues()  # GitHub refuses the cached token: tether re-mints and sends again
    assert status == 200 and all("number" in issue for issue in response.json())
    revoke_out_of_band()
    assert issues()[0] == 401  # re-minted once already: the provider's 401, no loop of mints
    assert issues()[0] == 401

    events = [e for e in tether.events() if e["run_id"] == "run_401"]
    minted = [e for e in events if e["event_type"] == "token.minted"]
    revoked = [e for e in events if e["event_type"] == "token.revoked"]
    assert len(minted) == 2
    assert [e["token_id"] for e in revoked] == [minted[0]["token_id"]]
    assert revoked[0]["detail"]["reason"] == "provider_rejected"
    # The refused attempt and the second one are both on record, each naming its token.
    calls = [
        (e["event_type"], e["token_id"], (e["response"] or {}).get("status"))
        for e in events
        if e["event_type"].startswith("api.")
    ]
    first, second = minted[0]["token_id"], minted[1]["token_id"]
    assert calls[2:6] == [
        ("api.request", first, None),
        ("api.response", first, 401),
        ("api.request", second, None),
        ("api.response", second, 200),
    ]
    retry = [e for e in events if e["event_type"] == "api.request"][2]
    assert (
        retry["detail"]["retry_of"] == [e for e in events if e["event_type"] == "api.request"][1]["event_id"]
    )
    # The sandbox saw the second attempt with the new token, tagged like the first.
    seen = [r for r in sandbox.github.requests if r.path == "/repos/acme/api/issues"][-4:]
    assert [r.token_name for r in seen[:2]] == [None, sandbox.app.minted[-1].name]
    assert seen[1].headers["X-Tether-Run"] == "run_401"


@pytest.mark.parametrize(
    ("key", "mode", "message"),
    [
        (b"not a key", 0o600, "is not an unencrypted PEM private key"),
        (None, 0o644, "is accessible by group or others (mode 0644)"),
    ],
)
def test_unusable_private_key_stops_tether_at_start(make_tether, sandbox, tmp_path, key, mode, message):
    path = tmp_path / "app.pem"
    path.write_bytes(key if key is not None else sandbox.app_key_path.read_bytes())
    path.chmod(mode)
    tether = make_tether(
        start=False, credentials=app_credentials(sandbox, private_key_file=str(path))["credentials"]
    )
    done = subprocess.run(
        [sys.executable, "-m", "tether.cli", "run", "--config", str(tether.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "BEGIN" not in done.stderr  # no key material in the message


def test_a_refused_post_is_sent_again_with_its_body(make_tether, sandbox):
    tether = make_tether(app_policy(["issues:write"]), **app_credentials(sandbox))
    headers = {"X-Tether-Run": "run_401_post", "Accept-Encoding": "gzip"}
    with tether.session(**headers) as s:
        assert s.get(f"{API}/repos/acme/api/issues/5", timeout=60).status_code == 200
        token = sandbox.tokens.named(sandbox.app.minted[-1].name)
        assert token is not None
        sandbox.tokens.revoke(token)
        comments = sandbox.github.repositories["acme/api"].issues[5].comments
        before = len(comments)
        created = s.post(f"{API}/repos/acme/api/issues/5/comments", json={"body": "résumé ✓"}, timeout=60)
    assert created.status_code == 201, created.text
    assert created.json()["body"] == "résumé ✓"
    assert [c.body for c in comments[before:]] == ["résumé ✓"]  # acted on once, body intact
