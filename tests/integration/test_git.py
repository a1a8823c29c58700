"""`git clone` and `git push` through tether against the real `git http-backend`: the agent holds no token."""

import subprocess

from tests.integration.harness import GITHUB_SECRET, client_env, github_policy

REMOTE = "https://github.com/acme/api.git"


def git(args, cwd, env):
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def agent_git_env(tether, tmp_path):
    env = client_env(tether)
    env.update(
        GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="agent",
        GIT_AUTHOR_EMAIL="agent@example.com",
        GIT_COMMITTER_NAME="agent",
        GIT_COMMITTER_EMAIL="agent@example.com",
    )
    (tmp_path / "gitconfig").write_text("")
    return env


def test_clone_and_push_with_injected_token(make_tether, sandbox, tmp_path):
    policy = github_policy()
    policy["providers"]["github"]["scopes"] = ["repo:write"]
    tether = make_tether(policy)
    env = agent_git_env(tether, tmp_path)

    cloned = git(["clone", REMOTE, "work"], tmp_path, env)
    assert cloned.returncode == 0, cloned.stderr
    work = tmp_path / "work"
    assert (work / "README.md").exists()

    (work / "NOTES.md").write_text("reviewed by the agent\n")
    assert git(["add", "NOTES.md"], work, env).returncode == 0
    assert git(["commit", "-m", "agent notes"], work, env).returncode == 0
    pushed = git(["push", "origin", "HEAD:main"], work, env)
    assert pushed.returncode == 0, pushed.stderr

    seen = [r for r in sandbox.git.requests if r.path.endswith("git-receive-pack")]
    assert seen and seen[-1].headers["Authorization"] == "Basic x-access-token:<token:tether-static>"
    routes = {e["request"]["route"] for e in tether.events() if e["event_type"] == "api.request"}
    assert "POST /{owner}/{repo}/git-upload-pack" in routes
    assert "POST /{owner}/{repo}/git-receive-pack" in routes
    assert GITHUB_SECRET not in cloned.stderr + pushed.stderr + tether.log()


def test_push_beyond_read_scope_is_denied(tether, tmp_path):
    env = agent_git_env(tether, tmp_path)
    assert git(["clone", REMOTE, "work"], tmp_path, env).returncode == 0
    work = tmp_path / "work"
    (work / "x.txt").write_text("x")
    git(["add", "x.txt"], work, env)
    git(["commit", "-m", "x"], work, env)
    pushed = git(["push", "origin", "HEAD:main"], work, env)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr
    denied = [e for e in tether.events() if e["event_type"] == "api.denied"]
    assert denied[-1]["scope_requested"] == ["repo:write"]
    assert denied[-1]["scope_downscoped"] is True
