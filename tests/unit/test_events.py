"""The event schema: every contract field present, names checked, ids and timestamps well formed."""

from __future__ import annotations

import re
import time

import pydantic
import pytest

from tether.ledger.events import (
    CONTRACT_FIELDS,
    EVENT_FIELDS,
    EVENT_TYPES,
    SCHEMA_VERSION,
    Event,
    check_appendable,
    new_event,
    new_id,
    normalize_time,
)

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def test_the_thirteen_event_types_of_the_design() -> None:
    assert {
        "run.started",
        "run.ended",
        "token.minted",
        "token.revoked",
        "token.expired",
        "token.mint_failed",
        "api.request",
        "api.response",
        "api.denied",
        "policy.loaded",
        "policy.rejected",
        "anomaly.detected",
        "ledger.checkpoint",
    } == EVENT_TYPES


def test_new_event_has_every_contract_field_and_detail() -> None:
    event = new_event("api.request", agent_name="pr-review-agent", run_id="run_1")
    assert list(event) == [*CONTRACT_FIELDS, "detail"] == list(EVENT_FIELDS)
    assert event["schema_version"] == SCHEMA_VERSION == 1
    assert event["event_type"] == "api.request"
    assert event["agent_name"] == "pr-review-agent"
    assert event["provider"] is event["request"] is event["detail"] is None
    assert event["chain_id"] is event["seq"] is event["prev_hash"] is event["hash"] is None


def test_event_id_and_timestamp_format() -> None:
    event = new_event("run.started")
    assert event["event_id"].startswith("evt_") and ULID.fullmatch(event["event_id"][4:])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])


def test_ids_sort_by_time_and_are_unique() -> None:
    first = new_id("run_")
    time.sleep(0.002)  # the next millisecond
    later = [new_id("run_") for _ in range(1000)]
    assert all(first < other for other in later)
    assert len(set(later)) == 1000


def test_nested_objects_get_every_key() -> None:
    event = new_event(
        "api.denied",
        request={"method": "GET", "host": "api.github.com"},
        response={"status": 403},
        decision={"action": "deny", "mode": "report", "would": "deny"},
    )
    assert event["request"] == {
        "method": "GET",
        "host": "api.github.com",
        "path": None,
        "route": None,
        "body_sha256": None,
        "bytes": None,
    }
    assert event["response"] == {"status": 403, "bytes": None, "duration_ms": None}
    assert event["decision"] == {
        "action": "deny",
        "reason": None,
        "rule": None,
        "mode": "report",
        "would": "deny",
    }
    assert "mode" not in new_event("api.request", decision={"action": "allow"})["decision"]


@pytest.mark.parametrize(
    ("event_type", "fields", "message"),
    [
        ("api.requested", {}, "unknown event type"),
        ("api.request", {"agent": "x"}, "unknown or ledger-owned event field"),
        ("api.request", {"seq": 3}, "unknown or ledger-owned event field"),
        ("api.request", {"schema_version": 2}, "unknown or ledger-owned event field"),
        ("api.request", {"request": {"method": "GET", "query": "x"}}, "unknown key"),
        ("api.request", {"decision": {"action": "allow", "because": "x"}}, "unknown key"),
        ("api.request", {"request": "GET /"}, "must be an object"),
        ("api.request", {"timestamp": "2025-02-03 14:00"}, "timestamp must look like"),
        ("api.request", {"detail": ["not", "an", "object"]}, "'detail' must be an object"),
    ],
)
def test_new_event_rejects_unknown_names(event_type: str, fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        new_event(event_type, **fields)


def test_given_event_id_and_timestamp_are_kept() -> None:
    event = new_event(
        "run.ended", event_id="evt_01JKGQ3V8T0000000000000000", timestamp="2025-02-03T14:23:17.432Z"
    )
    assert event["event_id"] == "evt_01JKGQ3V8T0000000000000000"
    assert event["timestamp"] == "2025-02-03T14:23:17.432Z"


def test_pydantic_model_accepts_a_full_event() -> None:
    event = new_event(
        "api.response",
        agent_name="a",
        scope_granted=["repo:read"],
        request={"method": "GET", "bytes": 0},
        response={"status": 200, "bytes": 5123, "duration_ms": 84.1},
        decision={"action": "allow"},
        detail={"anything": [1, None]},
    )
    event.update(chain_id="chn_01JKGQ3V8T6ZD5M2N4P7R9W1XA", seq=41, prev_hash="0" * 64, hash="ab" * 32)
    assert Event.model_validate(event).model_dump(exclude_unset=True) == event


@pytest.mark.parametrize(
    "change",
    [
        {"scope_downscoped": "yes"},
        {"seq": -1},
        {"hash": "AB" * 32},
        {"event_type": "api.other"},
        {"extra": 1},
    ],
)
def test_pydantic_model_rejects_wrong_types(change: dict[str, object]) -> None:
    event = new_event("api.request") | change
    with pytest.raises(pydantic.ValidationError):
        Event.model_validate(event)


def test_pydantic_model_requires_every_field() -> None:
    event = new_event("api.request")
    del event["token_id"]
    with pytest.raises(pydantic.ValidationError, match="token_id"):
        Event.model_validate(event)


def test_json_schema_lists_every_field() -> None:
    schema = Event.model_json_schema()
    assert set(schema["properties"]) == set(EVENT_FIELDS)
    assert set(schema["required"]) >= set(CONTRACT_FIELDS)


def test_check_appendable() -> None:
    check_appendable(new_event("api.request"))
    with pytest.raises(ValueError, match="missing: token_id"):
        check_appendable({k: v for k, v in new_event("api.request").items() if k != "token_id"})
    with pytest.raises(ValueError, match="set by the ledger"):
        check_appendable(new_event("api.request") | {"seq": 4})
    with pytest.raises(ValueError, match="unknown event type"):
        check_appendable(new_event("api.request") | {"event_type": "nope"})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2025-02-03T14:23:17.432Z", "2025-02-03T14:23:17.432Z"),
        ("2025-02-03T14:23:17Z", "2025-02-03T14:23:17.000Z"),
        ("2025-02-03", "2025-02-03T00:00:00.000Z"),
        ("2025-02-03T15:00:00+01:00", "2025-02-03T14:00:00.000Z"),
        ("2025-02-03T14:23:17.4329", "2025-02-03T14:23:17.432Z"),
    ],
)
def test_normalize_time(given: str, expected: str) -> None:
    assert normalize_time(given) == expected


def test_normalize_time_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        normalize_time("yesterday")
