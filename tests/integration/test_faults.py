"""Bad input and faults: each gets a clear answer, loses nothing, and the proxy stays up."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from tests.integration.harness import github_config

API = "https://api.github.com"
GIT_REFS = "https://github.com/acme/api.git/info/refs?service=git-upload-pack"


def raw_get(tether, extra_headers: bytes) -> tuple[int, dict[str, Any]]:
    """A hand-written request (what `requests` would refuse to send), in absolute form to the proxy."""
    with socket.create_connection(("127.0.0.1", tether.proxy_port), timeout=30) as sock:
        sock.sendall(
            b"GET http://api.github.com/zen HTTP/1.1\r\nHost: api.github.com\r\n" + extra_headers + b"\r\n"
        )
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, json.loads(resp.read())


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"X-Tether-Task: review\rX-Injected: 1\r\n", "control characters"),
        (b"X-Tether-Task: review\x00pr\r\n", "control characters"),
        (b"X-Tether-Task: \xff\xfe review\r\n", "not valid UTF-8"),
        (b"X-Tether-Task: " + b"a" * 65536 + b"\r\n", "longer than 512"),
        (b"X-Tether-Run: ../../etc\r\n", "run id may only contain"),
        (b"X-Tether-Scopes: github\r\n", "is not provider=scope"),
    ],
)
def test_hostile_tether_headers_get_400_and_an_event(tether, header, reason):
    status, body = raw_get(tether, header)
    assert status == 400
    assert body["error"] == "tether_bad_request"
    assert reason in body["reason"]
    events = {e["event_id"]: e for e in tether.events()}
    event = events[body["event_id"]]
    assert event["event_type"] == "api.denied"
    assert event["decision"]["rule"] == "identity"
    with tether.session() as s:  # the proxy stays up
        assert s.get(f"{API}/zen").status_code == 200


def test_mismatched_host_header_is_refused(tether):
    status, body = raw_get(tether, b"Host: evil.example.com\r\n")
    assert status == 400
    assert "Host header" in body["reason"]


def test_upstream_down_gives_502_and_an_event(make_tether, sandbox, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = github_config(sandbox, tmp_path / "secret")
    config["upstream_overrides"]["api.github.com"]["address"] = f"127.0.0.1:{port}"
    tether = make_tether(**config)
    with tether.session() as s:
        assert s.get(f"{API}/zen").status_code == 502
    responses = [e for e in tether.events() if e["event_type"] == "api.response"]
    assert responses[-1]["response"]["status"] == 502
    assert "error" in responses[-1]["detail"]
    with tether.session() as s:
        assert s.get(GIT_REFS).status_code == 200


def test_upstream_that_never_answers_is_cut_off_and_recorded(make_tether, sandbox, tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    config = github_config(sandbox, tmp_path / "secret")
    config["upstream_overrides"]["api.github.com"]["address"] = f"127.0.0.1:{silent.getsockname()[1]}"
    tether = make_tether(upstream_timeout_seconds=2, **config)
    try:
        with tether.session() as s, pytest.raises(requests.ConnectionError):
            s.get(f"{API}/zen", timeout=60)
        response = [e for e in tether.events() if e["event_type"] == "api.response"][-1]
        assert response["response"]["status"] == 502
        assert response["response"]["duration_ms"] >= 2000
        with tether.session() as s:  # the proxy stays up
            assert s.get(GIT_REFS).status_code == 200
    finally:
        silent.close()
        for conn in held:
            conn.close()


def test_unwritable_ledger_fails_closed(tether, sandbox):
    with tether.session() as s:
        assert s.get(f"{API}/zen").status_code == 200
    # The database and its write-ahead log; SQLite's shared-memory index (-shm) is not the ledger.
    files = [tether.ledger_path, tether.ledger_path.with_name("ledger.db-wal")]
    if subprocess.run(["chattr", "+i", *map(str, files)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        before = len(sandbox.github.requests)
        with tether.session() as s:
            resp = s.get(f"{API}/repos/acme/api/issues")
        assert resp.status_code == 503
        assert resp.json()["error"] == "tether_ledger_unavailable"
        assert len(sandbox.github.requests) == before  # nothing was forwarded
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    with tether.session() as s:  # writable again: calls flow and the chain is intact
        assert s.get(f"{API}/zen").status_code == 200
    assert tether.cli("verify", "--ledger", str(tether.ledger_path)).returncode == 0


def test_missing_secret_file_stops_start_with_file_and_line(tmp_path):
    config = tmp_path / "tether.yaml"
    config.write_text("agent_name: a\ncredentials:\n  gh:\n    secret_file: /nonexistent/token\n")
    out = subprocess.run(
        [sys.executable, "-m", "tether.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"{config}:4: credentials.gh.secret_file: no such file: /nonexistent/token" in out.stderr
    assert "Traceback" not in out.stderr


def test_kill_9_under_load_loses_no_recorded_call(make_tether):
    tether = make_tether()
    received: list[str] = []
    stop = threading.Event()

    def agent(worker: int) -> None:
        with tether.session() as s:
            for i in range(10_000):
                if stop.is_set():
                    return
                task = f"w{worker}-{i}"
                try:
                    resp = s.get(f"{API}/zen", headers={"X-Tether-Task": task}, timeout=10)
                except requests.RequestException:
                    return
                if resp.status_code == 200:
                    received.append(task)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(received) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(received) >= 60, f"load did not get going: {len(received)} calls answered"
    tether.stop(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    tether.start()  # restart on the same ledger
    with tether.session() as s:
        assert s.get(f"{API}/zen").status_code == 200
    tether.stop()
    verify = tether.cli("verify", "--ledger", str(tether.ledger_path))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    recorded = {e["task_context"] for e in tether.events() if e["event_type"] == "api.request"}
    assert set(received) <= recorded
