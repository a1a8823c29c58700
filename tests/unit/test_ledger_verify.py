"""verify_ledger finds the first row that breaks the chain, and why."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.ledger.chain import chain_hash, entry_bytes, leaf_hash
from tether.ledger.events import new_event
from tether.ledger.record import encode_body
from tether.ledger.store import Ledger, LedgerError
from tether.ledger.verify import verify_ledger


def write_ledger(path: Path, count: int, *, start_minute: int = 0) -> list[dict[str, Any]]:
    with Ledger(path) as ledger:
        return [
            ledger.append_sync(
                new_event(
                    "api.request",
                    agent_name="pr-review-agent",
                    run_id="run_1",
                    timestamp=f"2025-02-03T14:{start_minute + seq:02d}:00.000Z",
                    request={
                        "method": "GET",
                        "host": "api.github.com",
                        "path": f"/repos/acme/api/pulls/{seq}",
                    },
                )
            )
            for seq in range(count)
        ]


def tamper(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Change the events table behind the ledger's back, as an attacker with the file could."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
    for sql, params in statements:
        conn.execute(sql, params)
    conn.close()


def body_of(path: Path, seq: int) -> str:
    conn = sqlite3.connect(path)
    (body,) = conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return str(body)


def sealed_body(event: dict[str, Any], prev_hash: str) -> str:
    """The body a forger would compute for `event` placed after `prev_hash`."""
    prev = bytes.fromhex(prev_hash)
    entry = entry_bytes(event)
    return encode_body(entry, prev, chain_hash(prev, leaf_hash(entry)))


def test_intact_ledger_verifies(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    events = write_ledger(path, 5)
    result = verify_ledger(path)
    assert result.ok and result.events_checked == 5
    assert (result.first_seq, result.last_seq, result.last_hash) == (0, 4, events[-1]["hash"])
    assert json.loads(json.dumps(result.to_json()))["ok"] is True


def test_empty_ledger_verifies(tmp_path: Path) -> None:
    Ledger(tmp_path / "ledger.db").close()
    result = verify_ledger(tmp_path / "ledger.db")
    assert result.ok and result.events_checked == 0


def test_numbers_survive_the_round_trip_through_the_body(tmp_path: Path) -> None:
    # JCS writes 1e17 as 100000000000000000 and 3.0 as 3; reading them back must hash the same.
    path = tmp_path / "ledger.db"
    numbers = {
        "big": 1e17,
        "huge": 1e300,
        "whole": 3.0,
        "tiny": 1e-7,
        "negative_zero": -0.0,
        "int": 2**53 - 1,
    }
    with Ledger(path) as ledger:
        ledger.append_sync(new_event("anomaly.detected", detail=numbers))
        assert next(ledger.iter_events())["detail"] == numbers
    assert verify_ledger(path).ok


def test_missing_ledger_is_an_error_not_a_result(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at"):
        verify_ledger(tmp_path / "nope.db")


def test_one_byte_changed_in_a_body_is_reported_as_modified(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    write_ledger(path, 5)
    body = body_of(path, 2)
    position = body.index("pulls/2") + len("pulls/")
    tamper(
        path, ("UPDATE events SET body = ? WHERE seq = 2", (body[:position] + "9" + body[position + 1 :],))
    )
    result = verify_ledger(path)
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 2, "modified")
    assert result.events_checked == 2
    assert result.to_json()["first_bad_seq"] == 2


def test_rehashed_modification_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    events = write_ledger(path, 5)
    forged = events[2] | {"agent_name": "someone-else"}
    tamper(
        path,
        ("UPDATE events SET body = ? WHERE seq = 2", (sealed_body(forged, events[1]["hash"]),)),
        ("UPDATE events SET agent_name = 'someone-else' WHERE seq = 2", ()),
    )
    result = verify_ledger(path)
    assert (result.first_bad_seq, result.reason) == (3, "modified")
    assert result.detail is not None and result.detail.startswith("broken_link")


def test_deleted_row_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    write_ledger(path, 5)
    tamper(path, ("DELETE FROM events WHERE seq = 3", ()))
    result = verify_ledger(path)
    assert (result.first_bad_seq, result.reason) == (3, "missing")


def test_deleted_first_row_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    write_ledger(path, 3)
    tamper(path, ("DELETE FROM events WHERE seq = 0", ()))
    assert (verify_ledger(path).first_bad_seq, verify_ledger(path).reason) == (0, "missing")


def test_inserted_row_is_found(tmp_path: Path) -> None:
    # Make room at seq 2 by moving the later rows up, then insert a well-formed forged event there.
    path = tmp_path / "ledger.db"
    events = write_ledger(path, 5)
    forged = new_event(
        "api.request", agent_name="pr-review-agent", run_id="run_1", timestamp=events[2]["timestamp"]
    )
    forged |= {"chain_id": events[0]["chain_id"], "seq": 2}
    columns = (forged["event_id"], forged["timestamp"], "api.request", "pr-review-agent", "run_1", None, None)
    tamper(
        path,
        *[(f"UPDATE events SET seq = {seq + 1} WHERE seq = {seq}", ()) for seq in (4, 3, 2)],
        (
            "INSERT INTO events (seq, event_id, timestamp, event_type, agent_name, run_id, provider,"
            " token_id, body) VALUES (2, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*columns, sealed_body(forged, events[1]["hash"])),
        ),
    )
    result = verify_ledger(path)
    assert (result.first_bad_seq, result.reason) == (2, "inserted")


def test_swapped_rows_are_found(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    write_ledger(path, 5)
    body1, body2 = body_of(path, 1), body_of(path, 2)
    tamper(
        path,
        ("UPDATE events SET body = ? WHERE seq = 1", (body2,)),
        ("UPDATE events SET body = ? WHERE seq = 2", (body1,)),
    )
    result = verify_ledger(path)
    assert (result.first_bad_seq, result.reason) == (1, "reordered")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda body: body[:-1], "bad_json"),
        (lambda body: "[]", "bad_json"),
        (lambda body: body.replace('"chn_', '"chn_X'), "chain_mismatch"),
        (lambda body: body.replace('","hash":"', '","hash":"0'), "bad_json"),
        (lambda body: body.replace('{"agent_id":null', '{ "agent_id":null'), "modified"),
    ],
)
def test_malformed_bodies(tmp_path: Path, change: Any, reason: str) -> None:
    path = tmp_path / "ledger.db"
    write_ledger(path, 3)
    tamper(path, ("UPDATE events SET body = ? WHERE seq = 1", (change(body_of(path, 1)),)))
    result = verify_ledger(path)
    assert (result.first_bad_seq, result.reason) == (1, "modified"), result
    assert result.detail is not None and result.detail.startswith(reason)


def test_column_that_disagrees_with_its_event(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    write_ledger(path, 3)
    tamper(path, ("UPDATE events SET run_id = 'run_hidden' WHERE seq = 1", ()))
    result = verify_ledger(path)
    assert (result.first_bad_seq, result.reason) == (1, "modified")
    assert result.detail is not None and result.detail.startswith("column_mismatch")


def test_range_verification_without_checkpoints_walks_from_the_start(tmp_path: Path) -> None:
    # No signed checkpoint before the range: nothing vouches for its first prev_hash, so the walk
    # starts at seq 0 and a change before the range is found (tests/unit/test_ledger_audit.py covers
    # ranges anchored on checkpoints).
    path = tmp_path / "ledger.db"
    write_ledger(path, 10)  # 14:00 .. 14:09
    in_range = verify_ledger(path, since="2025-02-03T14:03:00Z", until="2025-02-03T14:06:00Z")
    assert in_range.ok and (in_range.first_seq, in_range.last_seq, in_range.events_checked) == (0, 9, 10)
    assert verify_ledger(path, since="2025-02-03T15:00:00Z").events_checked == 0
    tamper(path, ("DELETE FROM events WHERE seq = 1", ()))
    assert verify_ledger(path, since="2025-02-03T14:03:00Z").reason == "missing"


events_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "event_type": st.sampled_from(["api.request", "api.response", "token.minted", "run.started"]),
            "agent_name": st.text(max_size=8),
            "run_id": st.text(min_size=1, max_size=8),
            "detail": st.none()
            | st.dictionaries(
                st.text(max_size=5),
                st.none()
                | st.booleans()
                | st.integers(-(2**53) + 1, 2**53 - 1)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=8),
                max_size=4,
            ),
        }
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=events_strategy, data=st.data())
def test_any_ledger_verifies_and_any_single_byte_change_is_found(
    specs: list[dict[str, Any]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.db"
        with Ledger(path) as ledger:
            for spec in specs:
                ledger.append_sync(new_event(spec.pop("event_type"), **spec))
        assert verify_ledger(path).ok

        seq = data.draw(st.integers(0, len(specs) - 1), label="seq")
        body = body_of(path, seq)
        ascii_positions = [index for index, char in enumerate(body) if char.isascii()]
        position = data.draw(st.sampled_from(ascii_positions), label="position")
        replacement = data.draw(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: c != body[position])
        )
        tamper(
            path,
            (
                "UPDATE events SET body = ? WHERE seq = ?",
                (body[:position] + replacement + body[position + 1 :], seq),
            ),
        )
        result = verify_ledger(path)
        assert not result.ok
        assert result.first_bad_seq == seq
