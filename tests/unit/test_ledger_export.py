"""export (events, digests) and timeline over a small ledger."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tether.ledger.chain import GENESIS, chain_hash, entry_bytes, leaf_hash
from tether.ledger.events import new_event
from tether.ledger.export import export_digests, export_events
from tether.ledger.store import Ledger
from tether.ledger.timeline import format_table, timeline_rows

RUN = "run_01JKGQ3V8T00000000000000RN"
TOKEN = "tok_01JKGQ3V8T00000000000000TK"
ALICE = "alice@example.com"


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    common = {"agent_name": "pr-review-agent", "run_id": RUN, "task_context": "review-pr-4521"}
    request = {"method": "GET", "host": "api.github.com", "path": "/repos/acme/api/pulls/7"}
    events = [
        new_event("run.started", timestamp="2025-02-03T14:00:00.000Z", triggered_by=ALICE, **common),
        new_event(
            "token.minted",
            timestamp="2025-02-03T14:00:01.000Z",
            provider="github",
            token_id=TOKEN,
            scope_requested=["repo:write"],
            scope_granted=["repo:read"],
            scope_downscoped=True,
            **common,
        ),
        new_event(
            "api.request",
            timestamp="2025-02-03T14:00:02.000Z",
            provider="github",
            token_id=TOKEN,
            request=request,
            decision={"action": "allow"},
            **common,
        ),
        new_event(
            "api.response",
            timestamp="2025-02-03T14:00:02.084Z",
            provider="github",
            token_id=TOKEN,
            request=request,
            response={"status": 200, "bytes": 5123, "duration_ms": 84.1},
            decision={"action": "allow"},
            **common,
        ),
        new_event(
            "api.denied",
            timestamp="2025-02-03T14:00:03.000Z",
            provider="github",
            request={"method": "PUT", "host": "api.github.com", "path": "/repos/acme/api/pulls/7\x1b[2J"},
            decision={"action": "deny", "reason": "scope pull_requests:write not granted", "rule": "scope"},
            **common,
        ),
        new_event(
            "api.request",
            timestamp="2025-02-03T14:00:04.000Z",
            agent_name="other-agent",
            run_id="run_other",
            request={"method": "GET", "host": "example.com", "path": "/"},
            decision={"action": "allow", "mode": "report", "would": "deny"},
        ),
    ]
    with Ledger(tmp_path / "ledger.db") as writer:
        for event in events:
            writer.append_sync(event)
    return Ledger.open_readonly(tmp_path / "ledger.db")


def test_export_events_writes_stored_events_as_json_lines(ledger: Ledger) -> None:
    out = io.StringIO()
    assert export_events(ledger, out) == 6
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == list(ledger.iter_events())
    assert all(line == row.body for line, row in zip(lines, ledger.iter_rows(), strict=True))


def test_export_ranges_are_contiguous_seqs(ledger: Ledger) -> None:
    out = io.StringIO()
    assert export_events(ledger, out, since="2025-02-03T14:00:01Z", until="2025-02-03T14:00:02.084Z") == 3
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [1, 2, 3]
    assert export_events(ledger, io.StringIO(), since="2026-01-01") == 0


def test_export_digests_lets_an_auditor_recompute_the_chain(ledger: Ledger) -> None:
    out = io.StringIO()
    assert export_digests(ledger, out) == 6
    header, *lines = out.getvalue().splitlines()
    assert json.loads(header)["export"] == {
        "chain_id": ledger.chain_id,
        "from": None,
        "to": None,
        "first_seq": 0,
        "last_seq": 5,
        "ledger_size": 6,
    }
    digests = [json.loads(line) for line in lines]
    events = list(ledger.iter_events())
    assert [list(digest) for digest in digests] == [["seq", "timestamp", "leaf"]] * 6
    first_line = lines[0]
    assert first_line.startswith('{"seq": 0, "timestamp": "2025-02-03T14:00:00.000Z", "leaf": "')
    prev = GENESIS
    for digest, event in zip(digests, events, strict=True):
        assert digest["leaf"] == leaf_hash(entry_bytes(event)).hex()
        assert (digest["seq"], digest["timestamp"]) == (event["seq"], event["timestamp"])
        prev = chain_hash(prev, bytes.fromhex(digest["leaf"]))
        assert prev.hex() == event["hash"]


def test_timeline_rows_for_an_agent(ledger: Ledger) -> None:
    rows = timeline_rows(ledger, agent="pr-review-agent")
    assert [row["event_type"] for row in rows] == [
        "run.started",
        "token.minted",
        "api.request",
        "api.response",
        "api.denied",
    ]
    assert rows[0]["target"] == "by alice@example.com" and rows[0]["outcome"] is None
    assert rows[1]["target"] == "scopes repo:read" and rows[1]["outcome"] == "downscoped"
    assert rows[2]["target"] == "GET api.github.com/repos/acme/api/pulls/7" and rows[2]["outcome"] == "allow"
    assert rows[3]["outcome"] == "allow, 200 84ms"
    assert rows[4]["outcome"] == "deny: scope pull_requests:write not granted"
    assert [row["seq"] for row in timeline_rows(ledger, run="run_other")] == [5]
    assert timeline_rows(ledger, run="run_other")[0]["outcome"] == "allow (report mode, would deny)"
    assert [row["seq"] for row in timeline_rows(ledger, since="2025-02-03T14:00:02.5Z")] == [4, 5]


def test_format_table(ledger: Ledger) -> None:
    table = format_table(timeline_rows(ledger))
    lines = table.splitlines()
    header = ["TIME", "RUN", "EVENT TYPE", "PROVIDER", "TARGET", "OUTCOME", "TOKEN", "TASK"]
    assert re.split(r"\s{2,}", lines[0]) == header
    assert len(lines) == 7
    assert lines[4].startswith("2025-02-03 14:00:02.084  run_01JKGQ3V8T00000000000000RN  api.response")
    assert "tok_…0000TK" in lines[2] and TOKEN not in table  # token ids are shortened
    assert "\x1b" not in table and "pulls/7\\x1b[2J" in table  # no terminal control from event data
    starts = {line.index("api.") for line in lines[3:6]}
    assert len(starts) == 1  # fixed-width columns
    assert format_table([]) == "(no events)"


def test_rows_are_json_ready(ledger: Ledger) -> None:
    rows = json.loads(json.dumps(timeline_rows(ledger, agent="pr-review-agent")))
    assert rows[3] == {
        "seq": 3,
        "event_id": rows[3]["event_id"],
        "time": "2025-02-03T14:00:02.084Z",
        "run": RUN,
        "event_type": "api.response",
        "provider": "github",
        "target": "GET api.github.com/repos/acme/api/pulls/7",
        "outcome": "allow, 200 84ms",
        "token": TOKEN,
        "task": "review-pr-4521",
    }
