"""`tether timeline`: what an agent did, one line per event.

Rows are plain JSON-ready dicts: `tether timeline --json` prints them as they are (full values),
`format_table` as a fixed-width table (long values shortened, control characters escaped)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypedDict

from .events import EVENT_TYPES
from .store import Ledger

_MAX_WIDTH = {"run": 30, "target": 64, "outcome": 56, "task": 24}
_COLUMNS = ("time", "run", "event_type", "provider", "target", "outcome", "token", "task")


class TimelineRow(TypedDict):
    seq: int
    event_id: str
    time: str
    run: str | None
    event_type: str
    provider: str | None
    target: str | None  # "METHOD host/path" of API calls, granted scopes of tokens, who started a run, policy
    outcome: str | None  # decision, status, duration, downscoping
    token: str | None  # token_id
    task: str | None


def _target(event: dict[str, Any]) -> str | None:
    request = event.get("request")
    if request:
        return f"{request.get('method') or ''} {request.get('host') or ''}{request.get('path') or ''}".strip()
    if event["event_type"].startswith("token.") and event.get("scope_granted"):
        return "scopes " + ",".join(event["scope_granted"])
    if event["event_type"].startswith("run.") and event.get("triggered_by"):
        return f"by {event['triggered_by']}"
    policy_id: str | None = event.get("policy_id")
    return policy_id


def _outcome(event: dict[str, Any]) -> str | None:
    # Downscoping first: long reasons are cut to the column width, this flag must stay visible.
    parts: list[str] = ["downscoped"] if event.get("scope_downscoped") else []
    decision = event.get("decision") or {}
    if decision.get("action"):
        text = str(decision["action"])
        if decision.get("mode") == "report" and decision.get("would"):
            text += f" (report mode, would {decision['would']})"
        if decision.get("reason"):
            text += f": {decision['reason']}"
        parts.append(text)
    response = event.get("response") or {}
    if response.get("status") is not None:
        duration = response.get("duration_ms")
        parts.append(f"{response['status']}" + (f" {duration:.0f}ms" if duration is not None else ""))
    return ", ".join(parts) or None


def event_types(names: Iterable[str]) -> frozenset[str]:
    """Event types named exactly (`token.minted`) or by family (`token`: every `token.*`); ValueError
    for a name that is neither."""
    found: set[str] = set()
    for name in names:
        matching = {kind for kind in EVENT_TYPES if kind == name or kind.startswith(name + ".")}
        if not matching:
            raise ValueError(f"unknown event type {name!r} (known: {', '.join(sorted(EVENT_TYPES))})")
        found |= matching
    return frozenset(found)


def timeline_rows(
    ledger: Ledger,
    agent: str | None = None,
    run: str | None = None,
    since: str | None = None,
    until: str | None = None,
    provider: str | None = None,
    types: Collection[str] | None = None,
) -> list[TimelineRow]:
    """One row per event of `agent`/`run`/`provider` (and of `types`, see `event_types`) from `since`
    to `until` (inclusive ISO 8601 times)."""
    kinds = event_types(types) if types else None
    return [
        TimelineRow(
            seq=event["seq"],
            event_id=event["event_id"],
            time=event["timestamp"],
            run=event.get("run_id"),
            event_type=event["event_type"],
            provider=event.get("provider"),
            target=_target(event),
            outcome=_outcome(event),
            token=event.get("token_id"),
            task=event.get("task_context"),
        )
        for event in ledger.iter_events(
            since=since, until=until, run_id=run, agent=agent, provider=provider, event_types=kinds
        )
    ]


def printable(text: str) -> str:
    # Event fields come from agents: never let them drive the terminal.
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)


def _cell(row: Mapping[str, object], column: str) -> str:
    text = printable(str(row[column] or ""))
    if column == "time":
        return text.replace("T", " ").removesuffix("Z")
    if column == "token" and len(text) > 12:
        return f"{text[:4]}…{text[-6:]}"
    limit = _MAX_WIDTH.get(column)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def format_table(rows: list[TimelineRow]) -> str:
    """A fixed-width table with a header line; '(no events)' when there are none."""
    if not rows:
        return "(no events)"
    cells = [[_cell(row, column) for column in _COLUMNS] for row in rows]
    header = [column.upper().replace("_", " ") for column in _COLUMNS]
    widths = [max(len(line[index]) for line in [header, *cells]) for index in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *cells]
    )
