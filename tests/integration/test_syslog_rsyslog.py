"""Syslog to a real rsyslog over TLS (RFC 5425): RFC 5424 with structured data, octet counting,
through an outage, from a real sidecar."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.siem_support import fill_ledger, ship_all, sink_from
from tether.ledger.store import Ledger
from tether.sandbox.pki import SandboxCA
from tether.sandbox.rsyslog import Rsyslog
from tether.sandbox.sidecar import SidecarProcess

API = "https://api.github.com"


@pytest.fixture
def ca(tmp_path: Path) -> SandboxCA:
    return SandboxCA(tmp_path / "syslog-pki")


@pytest.fixture
def rsyslog(tmp_path: Path, ca: SandboxCA) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path / "rsyslog", ca).start()
    yield server
    server.stop()


def syslog_options(rsyslog: Rsyslog, ca: SandboxCA, **options: object) -> dict[str, object]:
    return {
        "name": "syslog",
        "type": "syslog",
        "address": rsyslog.address,
        "server_name": "syslog.example.com",
        "ca_file": str(ca.cert_path),
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.5,
        "flush_seconds": 0.1,
        **options,
    }


def wait_for_messages(rsyslog: Rsyslog, count: int, seconds: float = 20) -> list[dict[str, str]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        messages = rsyslog.messages()
        if len(messages) >= count:
            return messages
        time.sleep(0.1)
    raise AssertionError(f"rsyslog has {len(rsyslog.messages())} of {count} messages:\n{rsyslog.log()}")


def test_rsyslog_parses_tethers_rfc5424_messages(tmp_path: Path, rsyslog: Rsyslog, ca: SandboxCA) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        events = fill_ledger(ledger, 20, provider="github", scope_downscoped=True, task_context='q "x" ]y\\z')
    ship_all(ledger.path, sink_from(syslog_options(rsyslog, ca, hostname="sidecar-1", batch_max_events=7)))
    messages = wait_for_messages(rsyslog, 20)
    assert len(messages) == 20
    for event, message in zip(events, messages, strict=True):
        assert message["pri"] == str(13 * 8 + 6)
        assert (message["hostname"], message["app_name"], message["msgid"]) == (
            "sidecar-1",
            "tether",
            "api.request",
        )
        assert message["timestamp"].startswith(event["timestamp"][:19])
        sd = message["structured_data"]
        assert sd.startswith("[tether@32473 ")
        assert f'event_id="{event["event_id"]}"' in sd
        assert 'scope_downscoped="true"' in sd and 'provider="github"' in sd
        assert 'task_context="q \\"x\\" \\]y\\\\z"' in sd  # RFC 5424 PARAM-VALUE escaping
        assert json.loads(message["msg"].removeprefix("\ufeff")) == event


def test_a_message_over_the_limit_is_parked_not_truncated(
    tmp_path: Path, rsyslog: Rsyslog, ca: SandboxCA
) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        fill_ledger(ledger, 1)
        big = fill_ledger(ledger, 1, task_context="x" * 5000)
        fill_ledger(ledger, 1)
    shipper = ship_all(ledger.path, sink_from(syslog_options(rsyslog, ca, max_message_bytes=4096)))
    messages = wait_for_messages(rsyslog, 2)
    assert shipper.stats.parked == 1
    assert big[0]["event_id"] not in json.dumps(messages)


def test_sidecar_ships_to_rsyslog_through_an_outage(
    make_tether: Callable[..., SidecarProcess], tmp_path: Path, rsyslog: Rsyslog, ca: SandboxCA
) -> None:
    tether = make_tether(sinks=[syslog_options(rsyslog, ca)])
    with tether.session() as session:
        assert session.get(f"{API}/zen").status_code == 200
    wait_for_messages(rsyslog, len(tether.events()))
    rsyslog.stop()
    time.sleep(0.5)
    with tether.session() as session:
        for _ in range(3):
            assert session.get(f"{API}/zen").status_code == 200
    time.sleep(1)
    rsyslog.start()
    expected = [e["event_id"] for e in tether.events()]
    messages = wait_for_messages(rsyslog, len(expected))
    got = [json.loads(m["msg"].removeprefix("\ufeff"))["event_id"] for m in messages]
    assert list(dict.fromkeys(got)) == expected
    out = tether.cli("sinks", "status", "--config", str(tether.config_path), "--json")
    assert json.loads(out.stdout)["lag"] == 0
