"""Operating tether: /readyz, /metrics, its own JSON logs, and a clean SIGTERM under load."""

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
import requests
from aiohttp import web

from tests.integration.harness import GITHUB_SECRET, github_config, github_policy
from tether.sandbox.pki import SandboxCA
from tether.sandbox.server import SandboxServer

API = "https://api.github.com"
SLOW_HOST = "slow.example.test"
SLOW_SECONDS = 0.5


def test_readyz_turns_unready_when_the_ledger_is_unwritable(tether):
    ready = tether.api("GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"ledger": "ok", "ca": "ok", "policy": "ok", "draining": "ok"}
    # Only the database file: SQLite's -shm file must never be made immutable (mmap'd: SIGBUS).
    if subprocess.run(["chattr", "+i", str(tether.ledger_path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        unready = tether.api("GET", "/readyz")
        assert unready.status_code == 503
        assert "not writable" in unready.json()["checks"]["ledger"]
        assert tether.api("GET", "/healthz").status_code == 200  # alive, just not ready
    finally:
        subprocess.run(["chattr", "-i", str(tether.ledger_path)], check=True)
    assert tether.api("GET", "/readyz").status_code == 200
    os.chmod(tether.ledger_path, 0o400)  # what an operator does to stop writes
    try:
        assert tether.api("GET", "/readyz").status_code == 503
    finally:
        os.chmod(tether.ledger_path, 0o600)


def test_metrics_count_calls_mints_and_ledger_appends(tether):
    with tether.session() as s:
        assert s.get(f"{API}/repos/acme/api/issues").status_code == 200
        assert s.delete(f"{API}/repos/acme/api").status_code == 403
    text = tether.api("GET", "/metrics").text
    assert 'tether_calls_total{decision="allow",provider="github"} 1.0' in text
    assert 'tether_calls_total{decision="deny",provider="github"} 1.0' in text
    assert 'tether_mint_seconds_count{provider="github"} 1.0' in text
    appends = next(
        line for line in text.splitlines() if line.startswith("tether_ledger_append_seconds_count")
    )
    assert float(appends.split()[-1]) >= 4  # run.started, policy.loaded, token.minted, api.request, ...
    assert "tether_in_flight_calls 0.0" in text
    assert tether.cli("probe", "--config", str(tether.config_path)).returncode == 0
    assert tether.cli("probe", "--ready", "--config", str(tether.config_path)).returncode == 0


def test_own_logs_are_json_lines_without_secrets(make_tether, sandbox):
    broken = github_policy()
    tether = make_tether()
    agent_token = "ghp_AGENTOWNTOKENshouldNEVERleave0000"
    with tether.session(Authorization=f"Bearer {agent_token}") as s:
        assert s.get(f"{API}/repos/acme/api/issues").status_code == 200
    broken["providers"]["github"]["scops"] = ["x"]
    tether.write_policy(broken)  # a rejected reload logs an error
    deadline = time.monotonic() + 15
    while "policy change rejected" not in tether.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    tether.stop()
    lines = [line for line in tether.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(e["level"] == "error" and "policy change rejected" in e["msg"] for e in entries)
    assert any("proxy on" in e["msg"] for e in entries)
    for secret in (GITHUB_SECRET, agent_token):
        assert secret not in tether.log()


def slow_upstream(sandbox, seen):
    async def work(request: web.Request) -> web.Response:
        started = time.monotonic()
        await asyncio.sleep(SLOW_SECONDS)
        seen.append((started, time.monotonic()))
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/work", work)
    return SandboxServer(app, sandbox.ca.ssl_context([SLOW_HOST]))


def test_sigterm_during_load_loses_no_event(make_tether, sandbox, tmp_path):
    seen: list[tuple[float, float]] = []
    server = slow_upstream(sandbox, seen)
    server.start()
    config = github_config(sandbox, tmp_path / "secret")
    config["upstream_overrides"][SLOW_HOST] = {
        "address": server.address,
        "ca_file": str(sandbox.ca.cert_path),
    }
    tether = make_tether(github_policy(egress=[SLOW_HOST]), **config)
    outcomes: dict[str, object] = {}
    lock = threading.Lock()

    def agent(worker: int) -> None:
        with tether.session() as s:
            for i in range(10_000):
                task = f"w{worker}-{i}"
                try:
                    resp = s.get(f"https://{SLOW_HOST}/work", headers={"X-Tether-Task": task}, timeout=30)
                except requests.RequestException as exc:
                    with lock:
                        outcomes[task] = type(exc).__name__
                    return  # tether stopped listening
                with lock:
                    outcomes[task] = resp.status_code

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(6)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(seen) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(seen) >= 12, "load did not get going"
        signalled = time.monotonic()
        assert tether.process is not None
        tether.process.send_signal(signal.SIGTERM)
        assert tether.process.wait(timeout=60) == 0
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.stop()
    # Calls were in flight when the signal came; they finished upstream after it.
    assert any(start < signalled < end for start, end in seen)

    events = tether.events()
    assert tether.cli("verify", "--ledger", str(tether.ledger_path)).returncode == 0
    by_task: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["task_context"]:
            by_task.setdefault(event["task_context"], []).append(event)
    answered = {task for task, outcome in outcomes.items() if outcome == 200}
    assert answered, "no call was answered"
    for task in answered:
        kinds = [(e["event_type"], (e["response"] or {}).get("status")) for e in by_task[task]]
        assert kinds == [("api.request", None), ("api.response", 200)], (task, kinds)
    requested = {e["event_id"] for e in events if e["event_type"] == "api.request"}
    assert len(requested) == len([e for e in events if e["event_type"] == "api.response"])
    for task, outcome in outcomes.items():
        if outcome == 503:  # asked on a kept-alive connection while draining: refused and recorded
            assert [e["event_type"] for e in by_task[task]] == ["api.denied"]
    # The runs end, then the final signed checkpoint covers everything (it is the last event).
    assert [e["event_type"] for e in events if e["event_type"] != "ledger.checkpoint"][-1] == "run.ended"
    assert events[-1]["event_type"] == "ledger.checkpoint"
    assert "shutting down" in tether.log()


def test_operator_supplied_ca_is_used_and_its_certificate_exported(make_tether, tmp_path):
    """Gateway replicas share one CA from a Secret: `mitmproxy-ca.pem` (key + certificate) only."""
    ca = SandboxCA(tmp_path / "operator-ca", common_name="operator CA")
    tether = make_tether(start=False, ca_cert_export=str(tmp_path / "shared" / "ca.pem"))
    state = tether.directory / "state"
    state.mkdir()
    (state / "mitmproxy-ca.pem").write_bytes(
        (ca.directory / "ca-key.pem").read_bytes() + ca.cert_path.read_bytes()
    )
    tether.start()
    exported = tmp_path / "shared" / "ca.pem"
    assert exported.read_bytes() == ca.cert_path.read_bytes()
    assert b"PRIVATE KEY" not in exported.read_bytes()
    with tether.session() as s:
        s.verify = str(exported)
        assert s.get(f"{API}/zen").status_code == 200
    assert tether.api("GET", "/readyz").status_code == 200


def test_sinks_report_lag_and_dead_letters_on_metrics_and_readyz(make_tether, tmp_path):
    sink = {"name": "archive", "type": "file", "path": str(tmp_path / "shipped.jsonl"), "flush_seconds": 0.2}
    tether = make_tether(sinks=[sink])
    with tether.session() as s:
        assert s.get(f"{API}/zen").status_code == 200
    deadline = time.monotonic() + 20
    while 'tether_sink_lag_events{sink="archive"} 0.0' not in tether.api("GET", "/metrics").text:
        assert time.monotonic() < deadline, "the file sink never caught up"
        time.sleep(0.2)
    text = tether.api("GET", "/metrics").text
    assert 'tether_sink_dead_letters{sink="archive"} 0.0' in text
    ready = tether.api("GET", "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["sink:archive"] == "ok"
    shipped = [json.loads(line) for line in (tmp_path / "shipped.jsonl").read_text().splitlines()]
    assert any(e["event_type"] == "api.response" for e in shipped)
