"""Credentials follow the connection target: every other name for the target must agree with it."""

import datetime
import http.client
import socket
import ssl

from tests.integration.harness import github_policy

API = "https://api.github.com"


def tunnel(tether, connect_host: str, server_name: str) -> ssl.SSLSocket:
    """CONNECT through tether, then TLS with `server_name` as SNI (what a hostile agent controls)."""
    sock = socket.create_connection(("127.0.0.1", tether.proxy_port), timeout=30)
    sock.sendall(f"CONNECT {connect_host}:443 HTTP/1.1\r\nHost: {connect_host}:443\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(tether.ca_cert))
    return context.wrap_socket(sock, server_hostname=server_name)


def exchange(tls: ssl.SSLSocket, request: bytes) -> tuple[int, bytes]:
    tls.sendall(request)
    resp = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
    resp.begin()
    return resp.status, resp.read()


def test_absolute_form_authority_inside_a_tunnel_must_match(tether, sandbox):
    before = len(sandbox.github.requests)
    with tunnel(tether, "api.github.com", "api.github.com") as tls:
        status, _ = exchange(tls, b"GET https://evil.example/zen HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
    assert status == 400
    assert len(sandbox.github.requests) == before


def test_tls_server_name_must_match_the_connect_host(tether, sandbox):
    before = len(sandbox.github.requests)
    with tunnel(tether, "api.github.com", "evil.example") as tls:
        status, body = exchange(tls, b"GET /zen HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
    assert status == 400
    assert b"TLS server name" in body
    assert len(sandbox.github.requests) == before


def test_method_override_headers_are_refused(tether):
    with tether.session() as s:
        resp = s.post(f"{API}/repos/acme/api", headers={"X-HTTP-Method-Override": "DELETE"})
    assert resp.status_code == 400


def test_trailing_dot_host_is_the_same_host(tether, sandbox):
    with tether.session() as s:
        assert s.get("https://api.github.com./zen").status_code == 200
    assert sandbox.github.requests[-1].headers["Authorization"] == "Bearer <token:tether-static>"


def test_ended_run_cannot_be_used_again(tether):
    run_id = tether.api("POST", "/v1/runs", {"task_context": "short"}).json()["run_id"]
    assert tether.api("POST", f"/v1/runs/{run_id}/end").json()["active"] is False
    with tether.session(**{"X-Tether-Run": run_id}) as s:
        resp = s.get(f"{API}/zen")
    assert resp.status_code == 400
    assert "has ended" in resp.json()["reason"]


def test_oversized_body_gets_413_and_an_event(make_tether):
    tether = make_tether(max_body_bytes=1024)
    with tether.session() as s:
        resp = s.post(f"{API}/repos/acme/api/issues", data=b"x" * 4096)
    assert resp.status_code == 413
    assert any(e["event_id"] == resp.json()["event_id"] for e in tether.events())


def test_off_hours_flag_is_recorded_and_the_call_still_checked(make_tether):
    away = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=12)).strftime("%H:%M")
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=12, minutes=1)).strftime("%H:%M")
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    hours = {"timezone": "UTC", "days": days, "start": away, "end": later, "outside": "flag"}
    tether = make_tether(github_policy(hours=hours))
    with tether.session() as s:
        assert s.get(f"{API}/repos/acme/api/issues").status_code == 200
        assert s.delete(f"{API}/repos/acme/api").status_code == 403
    request = [e for e in tether.events() if e["event_type"] == "api.request"][-1]
    assert request["decision"]["flags"] == ["off_hours"]
