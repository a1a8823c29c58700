"""Investigation on recorded runs: real clients (requests, httpx, curl) drive a real sidecar against
the sandbox GitHub; the live monitor flags what departs from the agent's baseline; runs, timeline,
report and policy suggestions read the ledger it wrote."""

from __future__ import annotations

import datetime
import json
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import GITHUB_SECRET, client_env, github_config, github_policy
from tests.integration.test_report_browser import CHROMIUM, markers, screenshot
from tether.analysis.report import LANES
from tether.catalog import load_catalog
from tether.policy.engine import PolicyEngine, RequestFacts
from tether.policy.loader import load_policy_files
from tether.sandbox.sidecar import SidecarProcess

API = "https://api.github.com"
STEADY = ("/repos/acme/api/pulls/7", "/repos/acme/api/pulls", "/repos/acme/api")
SETTINGS = {"learning_runs": 3, "volume_min_calls": 8, "volume_factor": 2.0}


def steady_run(tether: SidecarProcess, run: str, repeat: int = 1, **headers: str) -> None:
    with tether.session(**{"X-Tether-Run": run, "X-Tether-Task": f"review {run}", **headers}) as s:
        for _ in range(repeat):
            for path in STEADY:
                assert s.get(f"{API}{path}").status_code == 200


def anomalies_by_run(events: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for event in events:
        if event["event_type"] == "anomaly.detected":
            found.setdefault(event["run_id"], []).append(
                (event["detail"]["anomaly"], event["detail"]["subject"])
            )
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, sandbox: Any) -> dict[str, Any]:
    """One sidecar, one agent: 5 steady runs, then one run per anomaly; stopped (the monitor drains)."""
    directory = tmp_path_factory.mktemp("investigate")
    config = {**github_config(sandbox, directory / "github-token"), "anomalies": SETTINGS}
    tether = SidecarProcess(directory / "tether", config, github_policy()).start()
    try:
        for index in range(5):
            steady_run(tether, f"run_steady_{index}")
        # A new route: the issues list, never called before.
        with tether.session(**{"X-Tether-Run": "run_new_route", "X-Tether-Task": "triage"}) as s:
            for path in (*STEADY, "/repos/acme/api/issues", "/repos/acme/api/issues"):
                assert s.get(f"{API}{path}").status_code == 200
        # A burst of calls (httpx): 12 calls where at most 5 were made before (limit max(8, 2*5) = 10).
        headers = {"X-Tether-Run": "run_burst", "X-Tether-Task": "burst"}
        with httpx.Client(
            proxy=tether.proxy_url, verify=ssl.create_default_context(cafile=tether.ca_cert), headers=headers
        ) as client:
            for _ in range(4):
                for path in STEADY:
                    assert client.get(f"{API}{path}").status_code == 200
        # Repeated downscoping (curl): the agent asks for pull requests only, then reads issues 6 times.
        env = client_env(tether)
        for _ in range(6):
            out = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-H",
                    "X-Tether-Run: run_downscope",
                    "-H",
                    "X-Tether-Scopes: github=pull_requests:read",
                    f"{API}/repos/acme/api/issues",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout == "403"
        # The agent sends a real-looking credential of its own.
        steady_run(tether, "run_own_token", Authorization=f"Bearer {GITHUB_SECRET[::-1]}")
        steady_run(tether, "run_steady_after")
        api_checks = check_control_api(tether)
    finally:
        tether.stop()
    return {"tether": tether, "events": tether.events(), "api": api_checks, "directory": directory}


def check_control_api(tether: SidecarProcess) -> dict[str, Any]:
    assert wait_for(lambda: "run_own_token" in anomalies_by_run(tether.events()))
    runs = tether.api("GET", "/v1/runs?agent=test-agent").json()["runs"]
    timeline = tether.api("GET", "/v1/timeline?run=run_burst&type=anomaly").json()["events"]
    report = tether.api("GET", "/v1/runs/run_new_route/report")
    bad = tether.api("GET", "/v1/timeline?type=nope")
    missing = tether.api("GET", "/v1/runs/run_nope/report")
    newest = tether.api("GET", "/v1/runs?limit=2").json()
    bad_limit = tether.api("GET", "/v1/runs?limit=0")
    return {
        "runs": runs,
        "timeline": timeline,
        "report": report,
        "bad": bad,
        "missing": missing,
        "newest": newest,
        "bad_limit": bad_limit,
    }


def test_a_steady_agent_has_no_anomalies_and_each_departure_exactly_its_own(recorded: dict[str, Any]) -> None:
    found = anomalies_by_run(recorded["events"])
    assert found == {
        "run_new_route": [("new_route", "github GET /repos/{owner}/{repo}/issues")],
        "run_burst": [("volume_spike", "calls")],
        "run_downscope": [("downscope_burst", "github")],
        "run_own_token": [("agent_supplied_credential", "api.github.com")],
    }
    spike = next(
        e for e in recorded["events"] if e["event_type"] == "anomaly.detected" and e["run_id"] == "run_burst"
    )
    assert spike["detail"] | {"evidence_event_id": None, "evidence_seq": None} == {
        "anomaly": "volume_spike",
        "subject": "calls",
        "evidence_event_id": None,
        "evidence_seq": None,
        "baseline_runs": 6,
        "calls": 11,
        "prior_max": 5,
        "limit": 10,
    }
    assert spike["decision"]["rule"] == "anomalies.volume_spike"
    assert spike["decision"]["reason"].startswith(
        "volume_spike: 11 calls in this run; at most 5 in 6 prior runs"
    )
    assert spike["task_context"] == "burst"
    evidence = next(e for e in recorded["events"] if e["event_id"] == spike["detail"]["evidence_event_id"])
    assert evidence["run_id"] == "run_burst" and evidence["seq"] < spike["seq"]
    assert GITHUB_SECRET[::-1] not in json.dumps(recorded["events"])


def test_control_api_runs_timeline_and_report(recorded: dict[str, Any]) -> None:
    api = recorded["api"]
    runs = {run["run_id"]: run for run in api["runs"]}
    assert runs["run_downscope"]["denials"] == 6 and runs["run_steady_0"]["calls"] == 3
    assert runs["run_burst"]["task_context"] == "burst" and runs["run_burst"]["providers"] == ["github"]
    assert [row["event_type"] for row in api["timeline"]] == ["anomaly.detected"]
    assert api["report"].status_code == 200 and api["report"].headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in api["report"].headers["Content-Security-Policy"]
    assert "github GET /repos/{owner}/{repo}/issues" in api["report"].text
    assert api["bad"].status_code == 400 and "unknown event type" in api["bad"].json()["reason"]
    assert api["missing"].status_code == 404
    assert [run["run_id"] for run in api["newest"]["runs"]] == ["run_own_token", "run_steady_after"]
    assert api["newest"]["truncated"] is True
    assert api["bad_limit"].status_code == 400 and "limit must be" in api["bad_limit"].json()["reason"]


def cli(tether: SidecarProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return tether.cli(*args, "--ledger", str(tether.ledger_path))


def test_cli_runs_report_and_baseline(recorded: dict[str, Any], tmp_path: Path) -> None:
    tether = recorded["tether"]
    out = cli(tether, "runs", "--agent", "test-agent", "--json")
    runs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["run_id"] for r in runs if r["run_id"].startswith("run_steady")][:2] == [
        "run_steady_0",
        "run_steady_1",
    ]
    table = cli(tether, "runs").stdout
    assert "run_burst" in table and "CALLS" in table
    timeline = cli(
        tether, "timeline", "--run", "run_new_route", "--type", "token,api.request", "--json"
    ).stdout
    rows = [json.loads(line) for line in timeline.splitlines()]
    assert rows[0]["event_type"] == "token.minted" and rows[0]["task"] == "triage"
    assert {row["token"] for row in rows} == {rows[0]["token"]}  # every call used the token minted first
    report = tmp_path / "incident.html"
    assert cli(tether, "report", "run_downscope", "-o", str(report)).returncode == 0
    html = report.read_text()
    assert "Ledger verified: intact" in html and "downscope_burst" in html
    assert "scope_not_granted: needs issues:read" in html
    shown = json.loads(cli(tether, "baseline", "show", "test-agent", "--json").stdout)
    assert shown["runs"] == 10 and shown["learning_complete"] is True
    assert shown["routes"]["github GET /repos/{owner}/{repo}/pulls/{pull_number}"] == 5 + 1 + 4 + 1 + 1
    text = cli(tether, "baseline", "show", "test-agent").stdout
    assert "learning period: 5 runs (complete)" in text and "api.github.com" in text


def test_policy_suggest_allows_the_recorded_runs_and_nothing_broader(
    recorded: dict[str, Any], tmp_path: Path
) -> None:
    tether = recorded["tether"]
    policy = tmp_path / "suggested.yaml"
    out = cli(tether, "policy", "suggest", "--agent", "test-agent", "-o", str(policy))
    assert out.returncode == 0, out.stderr
    text = policy.read_text()
    assert 'scopes: ["issues:read", "pull_requests:read"]' in text
    assert 'repositories: ["acme/api"]' in text
    # evidence: pull requests were read in every run with a forwarded call
    assert "#   in 9 run(s): run_steady_0, run_steady_1" in text
    assert "scope_not_granted" in text  # the denied calls are listed, not granted
    check = tether.cli("policy", "check", str(policy))
    assert check.returncode == 0, check.stdout + check.stderr

    catalog = load_catalog()
    engine = PolicyEngine(load_policy_files([policy], catalog), catalog)

    def decide(method: str, path: str, host: str = "api.github.com", when: str | None = None) -> str:
        now = (
            datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
            if when
            else datetime.datetime.now(datetime.UTC)
        )
        facts = RequestFacts("test-agent", method, host, 443, path, "", None, (), True, now)
        return engine.decide(facts).action

    replayed = [
        e for e in recorded["events"] if e["event_type"] == "api.request" and e["agent_name"] == "test-agent"
    ]
    assert len(replayed) == 38
    for event in replayed:
        request = event["request"]
        assert decide(request["method"], request["path"], request["host"], event["timestamp"]) == "allow", (
            request
        )
    assert decide("POST", "/repos/acme/api/issues") == "deny"  # never created an issue
    assert decide("DELETE", "/repos/acme/api") == "deny"
    assert decide("GET", "/repos/acme/other/pulls/7") == "deny"  # another repository
    assert decide("GET", "/", host="status.example.com") == "deny"  # a host it never called
    # only its own runs: --runs 1 sees the last steady run alone
    narrow = cli(tether, "policy", "suggest", "--agent", "test-agent", "--runs", "1").stdout
    assert "issues:read" not in narrow and "in 1 run(s): run_steady_after" in narrow
    assert cli(tether, "policy", "suggest", "--agent", "nobody").returncode == 2


def test_off_hours_against_configured_business_hours(make_tether: Callable[..., SidecarProcess]) -> None:
    hour = datetime.datetime.now(datetime.UTC).hour
    window = {"timezone": "UTC", "start": f"{(hour + 6) % 24:02d}:00", "end": f"{(hour + 8) % 24:02d}:00"}
    tether = make_tether(anomalies={**SETTINGS, "business_hours": window})
    steady_run(tether, "run_night")
    steady_run(tether, "run_night_2")
    tether.stop()
    assert anomalies_by_run(tether.events()) == {
        "run_night": [("off_hours", "business_hours")],
        "run_night_2": [("off_hours", "business_hours")],
    }


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_incident_report_of_a_recorded_run_in_a_browser(recorded: dict[str, Any], tmp_path: Path) -> None:
    page = tmp_path / "run_burst.html"
    assert cli(recorded["tether"], "report", "run_burst", "-o", str(page)).returncode == 0
    image = screenshot(page, tmp_path / "shot.png", tmp_path / "profile")
    colours = {name: colour for name, _, colour in LANES}
    calls = markers(image, colours["call"], min_height=15)
    anomaly = markers(image, colours["anomaly"], min_height=15)
    tokens = markers(image, colours["token"], min_height=15)
    assert calls and anomaly and tokens
    # lanes top to bottom: tokens, calls, anomalies; the token was minted before the first call
    assert min(top for top, _ in tokens.values()) < min(top for top, _ in calls.values())
    assert min(top for top, _ in calls.values()) < min(top for top, _ in anomaly.values())
    assert min(tokens) <= min(calls)
