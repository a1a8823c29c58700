"""End to end: a real sidecar ships its ledger to local Splunk HEC, Datadog and OTLP receivers and a
JSON Lines file while the receivers fail in the ways SIEMs do, and after `kill -9`.

After each fault: every ledger event arrived at least once, in ledger order (by first arrival), a
duplicate only where the receiver refused a request the event was in (a retry), dead letters only
for the event the receiver rejects, no secret in any payload, and `tether sinks status` at lag 0.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import GITHUB_SECRET
from tests.siem_support import SECRETS, Siem
from tether.sandbox.sidecar import SidecarProcess
from tether.sandbox.siem import Receiver
from tether.sinks.state import SinkState

API = "https://api.github.com"
WAIT_SECONDS = 60.0


@pytest.fixture
def siem(tmp_path: Path) -> Iterator[Siem]:
    box = Siem(tmp_path / "siem")
    yield box
    box.stop()


def receivers(siem: Siem) -> dict[str, Receiver]:
    return {"splunk": siem.hec, "datadog": siem.datadog, "otlp": siem.otlp}


def start(make_tether: Callable[..., SidecarProcess], siem: Siem, tmp_path: Path) -> SidecarProcess:
    sinks = [
        siem.hec_config(ack=True, ack_poll_seconds=0.1),
        siem.datadog_config(),
        siem.otlp_config(),
        {"name": "file", "type": "file", "path": str(tmp_path / "events.jsonl")},
    ]
    siem.hec.ack_enabled = True
    return make_tether(sinks=sinks)


def traffic(tether: SidecarProcess, requests: int = 3, **headers: str) -> None:
    with tether.session(**headers) as session:
        for _ in range(requests):
            assert session.get(f"{API}/zen").status_code == 200


def status(tether: SidecarProcess) -> dict[str, dict[str, Any]]:
    out = tether.cli("sinks", "status", "--config", str(tether.config_path), "--json")
    assert out.returncode == 0, out.stderr
    return {row["sink"]: row for row in map(json.loads, out.stdout.splitlines())}


def wait_for_zero_lag(tether: SidecarProcess) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        rows = status(tether)
        if all(row["lag"] == 0 for row in rows.values()):
            return rows
        time.sleep(0.2)
    raise AssertionError(
        f"sinks still lag after {WAIT_SECONDS:.0f}s: {status(tether)}\n{tether.log()[-3000:]}"
    )


def check_delivery(
    tether: SidecarProcess,
    siem: Siem,
    *,
    parked: frozenset[str] = frozenset(),
    may_repeat: frozenset[str] = frozenset(),
) -> None:
    # The sidecar keeps appending on its own (a checkpoint after 5 idle seconds): check the events up to
    # the head the sinks were seen to have delivered, ignoring any appended since.
    head = wait_for_zero_lag(tether)["file"]["head"]
    events = tether.events()
    ledger = [e["event_id"] for e in events if e["seq"] <= head]
    later = {e["event_id"] for e in events if e["seq"] > head}
    for name, receiver in receivers(siem).items():
        got = [i for i in receiver.stored_ids() if i not in later]
        first_arrivals = list(dict.fromkeys(got))
        expected = [i for i in ledger if i not in parked]
        # Replayed dead letters arrive late, possibly before events appended since (a checkpoint).
        assert [i for i in first_arrivals if i not in parked] == expected, name
        assert set(first_arrivals) - set(expected) <= parked, name
        repeated = {i for i, n in Counter(got).items() if n > 1}
        assert repeated <= receiver.retried_ids() | may_repeat, name
    lines = (tether.directory.parent / "events.jsonl").read_text().splitlines()
    in_file = [json.loads(line)["event_id"] for line in lines]
    assert [i for i in in_file if i not in later] == ledger  # the file sink saw no faults
    shipped = json.dumps([r.stored for r in receivers(siem).values()]) + "\n".join(lines) + tether.log()
    for secret in (*SECRETS, GITHUB_SECRET):
        assert secret not in shipped


def test_fault_script(make_tether: Callable[..., SidecarProcess], siem: Siem, tmp_path: Path) -> None:
    tether = start(make_tether, siem, tmp_path)
    wait_for_zero_lag(tether)

    # Receivers down for a while: events wait in the ledger, status shows lag and the error.
    for server in (siem.hec_server, siem.datadog_server, siem.otlp_server):
        server.stop()
    traffic(tether)
    time.sleep(2)
    rows = status(tether)
    for name in receivers(siem):
        assert rows[name]["lag"] > 0 and rows[name]["last_error"], rows[name]
    assert rows["file"]["lag"] == 0
    for server in (siem.hec_server, siem.datadog_server, siem.otlp_server):
        server.start()
    wait_for_zero_lag(tether)
    check_delivery(tether, siem)

    # 500, 503, 429 with Retry-After: retried until accepted.
    for status_code, retry_after in ((500, None), (503, None), (429, "2")):
        for receiver in receivers(siem).values():
            receiver.fail_next(status_code, times=2, retry_after=retry_after)
        traffic(tether)
        wait_for_zero_lag(tether)
        check_delivery(tether, siem)
        assert all(any(r.status == status_code for r in rcv.requests) for rcv in receivers(siem).values())

    # Slow receivers (within the sink timeout): delivered once each.
    for receiver in receivers(siem).values():
        receiver.delay_seconds = 1.0
    traffic(tether)
    wait_for_zero_lag(tether)
    for receiver in receivers(siem).values():
        receiver.delay_seconds = 0
    check_delivery(tether, siem)

    # One bad event: parked with the reason, the rest flows on.
    def poison(event: dict[str, Any]) -> bool:
        native = event.get("unmapped", event)
        return bool(native.get("task_context") == "poison" and native.get("event_type") == "api.response")

    for receiver in receivers(siem).values():
        receiver.reject = poison
    traffic(tether, 1, **{"X-Tether-Task": "poison"})
    traffic(tether, 2)
    rows = wait_for_zero_lag(tether)
    bad = [e["event_id"] for e in tether.events() if poison(e)]
    assert len(bad) == 1
    for name in receivers(siem):
        assert rows[name]["dead_letters"] == 1, rows[name]
    assert rows["file"]["dead_letters"] == 0
    state = SinkState(tether.ledger_path, readonly=True)
    letters = state.dead_letters()
    state.close()
    assert {(d.sink, d.event_id) for d in letters} == {(n, bad[0]) for n in receivers(siem)}
    check_delivery(tether, siem, parked=frozenset(bad))

    # Replay once the receiver takes it again.
    for receiver in receivers(siem).values():
        receiver.reject = None
    out = tether.cli("sinks", "replay", "--config", str(tether.config_path))
    assert out.returncode == 0, out.stderr
    assert "splunk: 1 replayed, 0 rejected again" in out.stdout
    assert all(row["dead_letters"] == 0 for row in status(tether).values())
    for receiver in receivers(siem).values():
        assert bad[0] in receiver.stored_ids()
    check_delivery(tether, siem, parked=frozenset(bad))


def test_kill_9_mid_batch_resumes_from_the_cursors(
    make_tether: Callable[..., SidecarProcess], siem: Siem, tmp_path: Path
) -> None:
    tether = start(make_tether, siem, tmp_path)
    wait_for_zero_lag(tether)
    for receiver in receivers(siem).values():
        receiver.delay_seconds = 2.0  # batches are in flight when the sidecar dies
    traffic(tether, 5)
    deadline = time.monotonic() + 10
    while not all(rcv.requests[-1:] and rcv.requests[-1].event_ids for rcv in receivers(siem).values()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    tether.stop(signal.SIGKILL)
    state = SinkState(tether.ledger_path, readonly=True)
    cursors = {name: state.cursor(name) for name in receivers(siem)}
    state.close()
    for receiver in receivers(siem).values():
        receiver.delay_seconds = 0
    tether.start()
    wait_for_zero_lag(tether)
    events = tether.events()
    for name, receiver in receivers(siem).items():
        unconfirmed = frozenset(e["event_id"] for e in events if e["seq"] > cursors[name])
        repeated = {i for i, n in Counter(receiver.stored_ids()).items() if n > 1}
        assert repeated <= unconfirmed, name
    resent = frozenset(e["event_id"] for e in events if e["seq"] > min(cursors.values()))
    check_delivery(tether, siem, may_repeat=resent)
