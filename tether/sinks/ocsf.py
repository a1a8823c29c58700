"""The OCSF rendering of tether events (OCSF 1.1.0), chosen per sink with `format: ocsf`.

- `api.request`, `api.response`, `api.denied` → API Activity (class 6003, category 6). The activity
  follows the HTTP method (GET/HEAD Read 2, POST Create 1, PUT/PATCH Update 3, DELETE Delete 4,
  other 99); status is Success (1) for a response below 400, Failure (2) for a denial or an error
  response, Unknown (0) for a request not yet answered.
- `token.minted`, `token.mint_failed` → Authentication (class 3002, category 3) Logon (1), Success
  or Failure; `token.revoked`, `token.expired` → Logoff (2). The agent is the `user`, the provider
  the `service`, the brokered token the `session`.
- Every other event type (run, policy, anomaly, ledger checkpoints) is sent in the native schema:
  OCSF has no class that fits them without losing meaning.

Each mapped event keeps the complete native event under `unmapped`, so no field is lost and the
native searches (`unmapped.agent_id`, …) still work; `metadata.uid` is the `event_id` (dedup key).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from tether import __version__

OCSF_VERSION = "1.1.0"
_API_ACTIVITY = {"GET": 2, "HEAD": 2, "POST": 1, "PUT": 3, "PATCH": 3, "DELETE": 4}
_ACTIVITY_NAMES = {
    6003: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
    3002: {1: "Logon", 2: "Logoff"},
}
_CLASSES = {
    6003: ("API Activity", 6, "Application Activity"),
    3002: ("Authentication", 3, "Identity & Access Management"),
}
_STATUS = {0: "Unknown", 1: "Success", 2: "Failure"}


def _time_ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _base(event: dict[str, Any], class_uid: int, activity_id: int, status_id: int) -> dict[str, Any]:
    class_name, category_uid, category_name = _CLASSES[class_uid]
    mapped: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": _ACTIVITY_NAMES[class_uid].get(activity_id, "Other"),
        "type_uid": class_uid * 100 + activity_id,
        "time": _time_ms(event["timestamp"]),
        "severity_id": 1,
        "severity": "Informational",
        "status_id": status_id,
        "status": _STATUS[status_id],
        "metadata": {
            "version": OCSF_VERSION,
            "uid": event["event_id"],
            "original_time": event["timestamp"],
            "correlation_uid": event["run_id"],
            "log_name": event["event_type"],
            "product": {"name": "tether", "vendor_name": "tether", "version": __version__},
        },
        "unmapped": event,
    }
    decision = event.get("decision") or {}
    if decision.get("reason"):
        mapped["status_detail"] = decision["reason"]
    if event.get("source_ip"):
        mapped["src_endpoint"] = {"ip": event["source_ip"]}
    return mapped


def _agent(event: dict[str, Any]) -> dict[str, Any]:
    return {"uid": event["agent_id"], "name": event["agent_name"], "type": "System", "type_id": 3}


def _api_activity(event: dict[str, Any]) -> dict[str, Any]:
    request = event.get("request") or {}
    response = event.get("response") or {}
    method = (request.get("method") or "").upper()
    if event["event_type"] == "api.denied":
        status_id = 2
    elif event["event_type"] == "api.response" and isinstance(response.get("status"), int):
        status_id = 1 if response["status"] < 400 else 2
    else:
        status_id = 0
    mapped = _base(event, 6003, _API_ACTIVITY.get(method, 99), status_id)
    mapped["actor"] = {"user": _agent(event), "session": {"uid": event["run_id"]}}
    mapped["api"] = {
        "operation": request.get("route") or f"{method} {request.get('path')}",
        "service": {"name": event["provider"]},
        "request": {"uid": event["event_id"]},
    }
    mapped.setdefault("src_endpoint", {"ip": None})
    if request:
        mapped["http_request"] = {
            "http_method": method or None,
            "url": {"hostname": request.get("host"), "path": request.get("path")},
        }
        mapped["dst_endpoint"] = {"hostname": request.get("host")}
    if response.get("status") is not None:
        mapped["http_response"] = {"code": response["status"], "latency": response.get("duration_ms")}
    return mapped


def _authentication(event: dict[str, Any]) -> dict[str, Any]:
    kind = event["event_type"]
    activity_id = 1 if kind in ("token.minted", "token.mint_failed") else 2
    mapped = _base(event, 3002, activity_id, 2 if kind == "token.mint_failed" else 1)
    mapped["user"] = _agent(event)
    mapped["service"] = {"name": event["provider"]}
    mapped["session"] = {"uid": event["token_id"], "uid_alt": event["token_sha256"]}
    mapped["actor"] = {"session": {"uid": event["run_id"]}}
    return mapped


def to_ocsf(event: dict[str, Any]) -> dict[str, Any]:
    """The OCSF form of `event` (API Activity or Authentication), or the event itself for other types."""
    kind = event["event_type"]
    if kind.startswith("api."):
        return _api_activity(event)
    if kind.startswith("token."):
        return _authentication(event)
    return event


def _native(event: dict[str, Any]) -> dict[str, Any]:
    return event


def renderer(format: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return to_ocsf if format == "ocsf" else _native
