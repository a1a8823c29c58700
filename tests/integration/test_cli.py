"""The CLI contract on real ledgers, the demo, and the addon chain inside a stock mitmdump."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.integration.harness import GITHUB_SECRET, github_config, github_policy
from tether.sandbox.sidecar import free_port

API = "https://api.github.com"


def tether_cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def test_verify_names_the_seq_after_one_byte_changes(tether):
    with tether.session() as s:
        for _ in range(3):
            assert s.get(f"{API}/zen").status_code == 200
    tether.stop()
    ledger = str(tether.ledger_path)
    assert tether_cli("verify", "--ledger", ledger).returncode == 0

    with sqlite3.connect(ledger) as db:
        seq, body = db.execute(
            "SELECT seq, body FROM events WHERE event_type = 'api.request' LIMIT 1"
        ).fetchone()
        triggers = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for trigger in triggers:
            db.execute(f"DROP TRIGGER {trigger}")
        tampered = body.replace('"GET"', '"PUT"', 1)
        assert tampered != body
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (tampered, seq))

    out = tether_cli("verify", "--ledger", ledger)
    assert out.returncode == 1
    assert f"modified at seq {seq}" in out.stdout
    as_json = tether_cli("verify", "--ledger", ledger, "--json")
    assert json.loads(as_json.stdout)["first_bad_seq"] == seq


def test_verify_usage_errors_exit_2(tmp_path):
    assert tether_cli("verify", "--ledger", str(tmp_path / "missing.db")).returncode == 2


def test_export_digests_and_timeline(tether):
    with tether.session(**{"X-Tether-Task": "digest-check"}) as s:
        assert s.get(f"{API}/zen").status_code == 200
    ledger = str(tether.ledger_path)
    header, *lines = tether_cli("export", "digests", "--ledger", ledger).stdout.splitlines()
    assert set(yaml.safe_load(header)) == {"export"}
    digests = [line for line in lines if not line.startswith('{"checkpoint"')]
    assert digests and all(set(yaml.safe_load(line)) == {"seq", "timestamp", "leaf"} for line in digests)
    table = tether_cli("timeline", "--ledger", ledger).stdout
    assert "api.request" in table and "digest-check" in table


def test_env_prints_what_an_agent_needs(tmp_path):
    out = tether_cli("env", "--ca-path", "/etc/tether/ca.pem", cwd=tmp_path)
    lines = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert lines["HTTPS_PROXY"] == "http://127.0.0.1:8080"
    for key in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"):
        assert lines[key] == "/etc/tether/ca.pem"
    assert lines["NODE_USE_ENV_PROXY"] == "1"
    assert "NO_PROXY" in lines


def test_policy_check_reports_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: pol_x\nagents: ['a-[']\nmode: enforce\nscops: []\n")
    out = tether_cli("policy", "check", str(bad))
    assert out.returncode == 1
    assert f"{bad}:2:" in out.stdout and f"{bad}:4:" in out.stdout


def test_demo_runs_end_to_end(tmp_path):
    out = tether_cli("demo", "--dir", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ledger intact" in out.stdout
    for marker in ("api.denied", "downscoped", "token.minted", "200"):
        assert marker in out.stdout


@pytest.mark.skipif(
    shutil.which("mitmdump", path=str(Path(sys.executable).parent)) is None, reason="no mitmdump"
)
def test_stock_mitmdump_loads_the_addon_chain(tmp_path, sandbox):
    (tmp_path / "state").mkdir()
    config = {
        "agent_name": "test-agent",
        "api_listen": f"127.0.0.1:{free_port()}",
        "state_dir": str(tmp_path / "state"),
        "policy_files": [str(tmp_path / "policy.yaml")],
        **github_config(sandbox, tmp_path / "token"),
    }
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(github_policy()))
    (tmp_path / "tether.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    addon = Path(__file__).resolve().parents[2] / "addons" / "tether.py"
    proc = subprocess.Popen(
        [
            str(mitmdump),
            "-q",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--set",
            f"confdir={tmp_path / 'state'}",
            "-s",
            str(addon),
            "--set",
            f"tether_config={tmp_path / 'tether.yaml'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    try:
        ca = tmp_path / "state" / "mitmproxy-ca-cert.pem"
        proxies = {"https": f"http://127.0.0.1:{port}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                resp = requests.get(
                    f"{API}/repos/acme/api/pulls/7", proxies=proxies, verify=str(ca), timeout=10
                )
                break
            except (requests.ConnectionError, OSError):
                assert proc.poll() is None and time.monotonic() < deadline, "mitmdump did not start"
                time.sleep(0.3)
        assert resp.status_code == 200
        assert sandbox.github.requests[-1].headers["Authorization"] == "Bearer <token:tether-static>"
        denied = requests.delete(f"{API}/repos/acme/api", proxies=proxies, verify=str(ca), timeout=10)
        assert denied.status_code == 403
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert GITHUB_SECRET not in output
    events = tether_cli("export", "events", "--ledger", str(tmp_path / "state" / "ledger.db")).stdout
    assert '"api.request"' in events and '"api.denied"' in events


def test_bad_inputs_are_usage_errors_not_tampering(tmp_path):
    not_a_ledger = tmp_path / "notes.db"
    not_a_ledger.write_text("not sqlite")
    out = tether_cli("verify", "--ledger", str(not_a_ledger))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    bad_time = tether_cli("export", "events", "--ledger", str(not_a_ledger), "--from", "yesterday")
    assert bad_time.returncode == 2
