"""Builders for recorded-looking events, shared by the analysis unit tests."""

from __future__ import annotations

from typing import Any

from tether.ledger.events import new_event

T0 = "2026-03-02T10:00:00.000Z"


def at(minute: int, second: float = 0.0, hour: int = 10, day: int = 2) -> str:
    whole = int(second)
    return f"2026-03-{day:02d}T{hour:02d}:{minute:02d}:{whole:02d}.{int((second - whole) * 1000):03d}Z"


def event(kind: str, run: str, timestamp: str, agent: str = "pr-bot", **fields: Any) -> dict[str, Any]:
    fields.setdefault("task_context", f"task of {run}")
    fields.setdefault("triggered_by", "alice@example.com")
    return new_event(
        kind, agent_name=agent, agent_id=f"agt_{agent}", run_id=run, timestamp=timestamp, **fields
    )


def call(
    run: str,
    timestamp: str,
    method: str = "GET",
    path: str = "/repos/acme/api/pulls/7",
    route: str | None = "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    host: str = "api.github.com",
    kind: str = "api.request",
    token: str | None = "tok_1",
    provider: str | None = "github",
    **fields: Any,
) -> dict[str, Any]:
    fields.setdefault(
        "decision", {"action": "deny" if kind == "api.denied" else "allow", "reason": None, "rule": None}
    )
    return event(
        kind,
        run,
        timestamp,
        provider=provider,
        token_id=token if kind == "api.request" else None,
        request={"method": method, "host": host, "path": path, "route": route, "bytes": 0},
        **fields,
    )


def minted(run: str, timestamp: str, token: str = "tok_1", **fields: Any) -> dict[str, Any]:
    fields.setdefault("scope_requested", ["repo:read"])
    fields.setdefault("scope_granted", ["repo:read"])
    fields.setdefault("scope_downscoped", False)
    return event(
        "token.minted",
        run,
        timestamp,
        provider="github",
        token_id=token,
        ttl_seconds=900,
        policy_id="pol_t",
        **{"detail": {"credential": "static:github-bot", "minted": False}, **fields},
    )
