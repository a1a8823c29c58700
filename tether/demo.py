"""`tether demo`: the sidecar on its embedded demo policy, a sandbox GitHub, and a scripted agent.

No credentials and no network: the sandbox servers stand in for api.github.com and github.com through
upstream address overrides, and tether mints the run's token from a sandbox GitHub App made up on the
spot (and revokes it when the run ends).
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tether.sandbox.providers import APP_ID, SandboxProviders
from tether.sandbox.sidecar import SidecarProcess

API = "https://api.github.com"
AGENT = "demo-agent"
PERMISSIONS = {"contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"}


@dataclass(frozen=True)
class Step:
    say: str
    method: str
    url: str
    expect: int
    body: dict[str, Any] | None = None


# The run asks for repo:write, which the policy cuts to repo:read (a downscoped token), and leaves out
# issues:write, which the policy would grant: the comment below needs it and is denied.
RUN_SCOPES = {"github": ["repo:write", "pull_requests:read", "issues:read"]}
STEPS = [
    Step("read the pull request under review", "GET", f"{API}/repos/acme/api/pulls/7", 200),
    Step("list the repository's issues", "GET", f"{API}/repos/acme/api/issues", 200),
    Step(
        "comment on the PR: beyond the run's read-only ask (denied, downscoped)",
        "POST",
        f"{API}/repos/acme/api/issues/7/comments",
        403,
        {"body": "LGTM"},
    ),
    Step("delete the repository: beyond the policy (denied)", "DELETE", f"{API}/repos/acme/api", 403),
    Step("call a host outside the policy (denied)", "GET", "https://paste.example.net/upload", 403),
]


def demo_policy() -> dict[str, Any]:
    text = resources.files("tether.defaults").joinpath("demo-policy.yaml").read_text()
    policy: dict[str, Any] = yaml.safe_load(text)
    return policy


def run_demo(keep: Path | None = None) -> int:
    directory = keep or Path(tempfile.mkdtemp(prefix="tether-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    say(f"tether demo — working directory {directory}")
    # The sandbox also accepts one static token; the demo never hands it to tether.
    providers = SandboxProviders(directory / "sandbox", f"demo_{secrets.token_urlsafe(24)}", PERMISSIONS)
    # The sandbox GitHub App: tether mints a down-scoped installation token for the run and revokes it.
    app = {"type": "github_app", "app_id": APP_ID, "private_key_file": str(providers.app_key_path)}
    config = {"credentials": {"github-bot": app}, "upstream_overrides": providers.overrides()}
    sidecar = SidecarProcess(directory / "tether", config, demo_policy(), agent_name=AGENT)
    try:
        sidecar.start()
        say(f"sidecar up: proxy {sidecar.proxy_url}, control API {sidecar.api_url}")
        failures = run_agent(sidecar)
    finally:
        sidecar.stop()
        providers.stop()
    say("timeline")
    print(sidecar.cli("timeline", "--ledger", str(sidecar.ledger_path)).stdout)
    verify = sidecar.cli("verify", "--ledger", str(sidecar.ledger_path))
    say(f"verify: {verify.stdout.strip() or verify.stderr.strip()}")
    say(f"ledger kept for inspection: {sidecar.ledger_path}")
    runs = sidecar.cli("runs", "--ledger", str(sidecar.ledger_path), "--json").stdout.splitlines()
    reviewed = [run["run_id"] for run in map(json.loads, runs) if run["task_context"] == "review-pr-7"]
    report = directory / "report.html"
    if (
        reviewed
        and sidecar.cli(
            "report", reviewed[-1], "--ledger", str(sidecar.ledger_path), "-o", str(report)
        ).returncode
        == 0
    ):
        say(f"incident report of {reviewed[-1]} (open it in a browser): {report}")
    else:
        failures.append("tether report failed")
    say(f"GitHub tokens minted: {len(providers.app.minted)}, revoked at GitHub: {len(providers.app.revoked)}")
    recorded = sidecar.ledger_path.read_bytes().decode(errors="replace") + sidecar.log()
    if providers.tokens.redact(recorded) != recorded:
        failures.append("a GitHub token appears in the ledger or the log")
    if len(providers.app.revoked) != len(providers.app.minted):
        failures.append("a minted GitHub token was not revoked at run end")
    if verify.returncode != 0:
        failures.append("ledger verification failed")
    for failure in failures:
        print(f"demo FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def run_agent(sidecar: SidecarProcess) -> list[str]:
    """The scripted agent: opens a run, makes its calls with `requests` through the proxy, ends the run."""
    opened = sidecar.api(
        "POST",
        "/v1/runs",
        {"task_context": "review-pr-7", "triggered_by": "alice@example.com", "scopes": RUN_SCOPES},
    )
    opened.raise_for_status()
    run_id = opened.json()["run_id"]
    say(f"agent opened {run_id} (task review-pr-7, triggered by alice@example.com, asks {RUN_SCOPES})")
    failures = []
    # The agent holds no GitHub token: SDKs that insist on one get the placeholder.
    with sidecar.session(Authorization="Bearer tether") as agent:
        for step in STEPS:
            resp = agent.request(step.method, step.url, json=step.body, timeout=30)
            detail = resp.json().get("reason", "") if resp.status_code >= 400 else ""
            mark = "ok " if resp.status_code == step.expect else "!! "
            say(f"{mark}{step.method:6} {step.url:55} -> {resp.status_code} {detail}".rstrip())
            if resp.status_code != step.expect:
                failures.append(f"{step.say}: expected {step.expect}, got {resp.status_code}")
    sidecar.api("POST", f"/v1/runs/{run_id}/end").raise_for_status()
    say(f"agent ended {run_id}")
    return failures


def say(text: str) -> None:
    print(f"== {text}", flush=True)
