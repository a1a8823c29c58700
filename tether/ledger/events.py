"""The event schema (DESIGN.md "Event (contract)").

Every event carries every contract field, `None` where it does not apply, so one SIEM rule serves all
providers. Beyond the contract, an event has one extra member, `detail`: a JSON object (or `None`)
with event-specific data that has no contract field (for example the policy file of a
`policy.rejected`, or the anomaly of an `anomaly.detected`). `detail` is hashed like every other field.

`new_event` builds events cheaply (it runs on the proxy's hot path) and only checks names; the pydantic
model `Event` validates types and documents the schema (JSON Schema via `Event.model_json_schema()`).
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

EventType = Literal[
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
]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))

# The contract fields, in the order DESIGN.md lists them.
CONTRACT_FIELDS: tuple[str, ...] = (
    "schema_version",
    "event_type",
    "event_id",
    "timestamp",
    "agent_id",
    "agent_name",
    "run_id",
    "task_context",
    "triggered_by",
    "provider",
    "token_id",
    "token_sha256",
    "scope_requested",
    "scope_granted",
    "scope_downscoped",
    "ttl_seconds",
    "policy_id",
    "source_ip",
    "request",
    "response",
    "decision",
    "chain_id",
    "seq",
    "prev_hash",
    "hash",
)
# Filled in by the ledger when the event is appended.
CHAIN_FIELDS: tuple[str, ...] = ("chain_id", "seq", "prev_hash", "hash")
EVENT_FIELDS: tuple[str, ...] = (*CONTRACT_FIELDS, "detail")

REQUEST_KEYS: tuple[str, ...] = ("method", "host", "path", "route", "body_sha256", "bytes")
RESPONSE_KEYS: tuple[str, ...] = ("status", "bytes", "duration_ms")
DECISION_KEYS: tuple[str, ...] = ("action", "reason", "rule")
# Present only when they apply: the policy mode, and what enforce mode would have done in report mode.
DECISION_OPTIONAL_KEYS: tuple[str, ...] = ("mode", "would", "flags")

_NESTED_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "request": (REQUEST_KEYS, ()),
    "response": (RESPONSE_KEYS, ()),
    "decision": (DECISION_KEYS, DECISION_OPTIONAL_KEYS),
}
_EVENT_FIELD_SET = frozenset(EVENT_FIELDS)
_CALLER_FIELDS = _EVENT_FIELD_SET - {"schema_version", "event_type", *CHAIN_FIELDS}

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_PATTERN = r"[0-9A-HJKMNP-TV-Z]{26}"
TIMESTAMP_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
HEX_HASH_PATTERN = r"[0-9a-f]{64}"
CHAIN_ID_PATTERN = r"chn_[0-9A-Za-z_.-]{1,100}"
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ulid(ms: int) -> str:
    """26 Crockford base32 characters: 48 bits of milliseconds, then 80 random bits (ULID layout)."""
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _format_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def new_id(prefix: str) -> str:
    """A time-sortable unique id such as `run_01JK3…` (prefix + 26-character ULID-style id)."""
    return prefix + _ulid(time.time_ns() // 1_000_000)


def utc_timestamp() -> str:
    """The current time in the event timestamp format, e.g. `2025-02-03T14:23:17.432Z`."""
    return _format_ms(time.time_ns() // 1_000_000)


def utc_timestamp_at(seconds: float) -> str:
    """A POSIX time in the event timestamp format."""
    return _format_ms(int(seconds * 1000))


def normalize_time(value: str) -> str:
    """An ISO 8601 time (`2025-02-03`, `2025-02-03T14:00:00+01:00`, `…Z`; naive means UTC) in the
    event timestamp format, so it compares as a string with stored timestamps."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r} (example: 2025-02-03T14:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _format_ms((parsed - _EPOCH) // timedelta(milliseconds=1))


def _nested(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"event field {name!r} must be an object or None, not {type(value).__name__}")
    required, optional = _NESTED_KEYS[name]
    unknown = set(value) - set(required) - set(optional)
    if unknown:
        raise ValueError(f"unknown key(s) in event field {name!r}: {', '.join(sorted(unknown))}")
    nested = {key: value.get(key) for key in required}
    nested.update((key, value[key]) for key in optional if key in value)
    return nested


def new_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """A new event with every field present (None where not given).

    `event_id` and `timestamp` are generated unless given; the chain fields are left None for the
    ledger to fill. `request`, `response` and `decision` get every one of their keys.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    unknown = set(fields) - _CALLER_FIELDS
    if unknown:
        raise ValueError(f"unknown or ledger-owned event field(s): {', '.join(sorted(unknown))}")
    if not isinstance(fields.get("detail", {}), dict | None):
        raise ValueError("event field 'detail' must be an object or None")
    timestamp = fields.get("timestamp")
    if timestamp is not None and not (isinstance(timestamp, str) and _TIMESTAMP_RE.fullmatch(timestamp)):
        raise ValueError(f"timestamp must look like 2025-02-03T14:23:17.432Z, not {timestamp!r}")
    ms = time.time_ns() // 1_000_000
    event = dict.fromkeys(EVENT_FIELDS)
    event.update(fields)
    event["schema_version"] = SCHEMA_VERSION
    event["event_type"] = event_type
    event["event_id"] = fields.get("event_id") or "evt_" + _ulid(ms)
    event["timestamp"] = timestamp or _format_ms(ms)
    for name in _NESTED_KEYS:
        event[name] = _nested(name, event[name])
    return event


def check_appendable(event: dict[str, Any]) -> None:
    """Raise ValueError unless `event` has exactly the event fields and no chain fields yet."""
    if event.keys() != _EVENT_FIELD_SET:
        missing = _EVENT_FIELD_SET - event.keys()
        unknown = event.keys() - _EVENT_FIELD_SET
        raise ValueError(
            f"not an event (missing: {', '.join(sorted(missing)) or '-'}; "
            f"unknown: {', '.join(sorted(unknown)) or '-'}); build events with new_event()"
        )
    if event["event_type"] not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event['event_type']!r}")
    if not isinstance(event["event_id"], str) or not isinstance(event["timestamp"], str):
        raise ValueError("event_id and timestamp must be strings")
    if not (event["chain_id"] is event["seq"] is event["prev_hash"] is event["hash"] is None):
        raise ValueError("chain fields (chain_id, seq, prev_hash, hash) are set by the ledger")


# --- pydantic model: validation and JSON Schema -------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RequestInfo(_Strict):
    method: str | None
    host: str | None
    path: str | None
    route: str | None
    body_sha256: str | None
    bytes: int | None


class ResponseInfo(_Strict):
    status: int | None
    bytes: int | None
    duration_ms: float | None


class Decision(_Strict):
    action: str | None
    reason: str | None
    rule: str | None
    mode: Literal["enforce", "report"] | None = None
    would: str | None = None


class Event(_Strict):
    """One ledger event. Every field is required (null where it does not apply)."""

    schema_version: Literal[1]
    event_type: EventType
    event_id: str = Field(pattern=f"^evt_{ID_PATTERN}$")
    timestamp: str = Field(pattern=f"^{TIMESTAMP_PATTERN}$")
    agent_id: str | None
    agent_name: str | None
    run_id: str | None
    task_context: str | None
    triggered_by: str | None
    provider: str | None
    token_id: str | None
    token_sha256: str | None
    scope_requested: list[str] | None
    scope_granted: list[str] | None
    scope_downscoped: bool | None
    ttl_seconds: int | None
    policy_id: str | None
    source_ip: str | None
    request: RequestInfo | None
    response: ResponseInfo | None
    decision: Decision | None
    chain_id: str | None = Field(pattern=f"^{CHAIN_ID_PATTERN}$")
    seq: int | None = Field(ge=0)
    prev_hash: str | None = Field(pattern=f"^{HEX_HASH_PATTERN}$")
    hash: str | None = Field(pattern=f"^{HEX_HASH_PATTERN}$")
    detail: dict[str, Any] | None = Field(description="event-specific data without a contract field")
