"""Run summaries: what each run of an agent did, from its events in the ledger.

A run's events share a `run_id`. Calls are the `api.request` (forwarded) and `api.denied` (answered
by tether) events; tokens are the `token_id`s minted for the run or used by its calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tether.ledger.store import Ledger

CALL_TYPES = frozenset({"api.request", "api.denied"})


@dataclass
class RunSummary:
    run_id: str
    agent_name: str | None = None
    task_context: str | None = None
    triggered_by: str | None = None
    started_at: str = ""  # timestamp of the run's first event
    last_event_at: str = ""
    ended: bool = False  # run.ended recorded
    calls: int = 0
    denials: int = 0  # api.denied: calls tether refused (policy, bad request, mint failure)
    would_deny: int = 0  # report mode: calls enforce mode would have refused
    anomalies: int = 0
    tokens: list[str] = field(default_factory=list)  # token_ids minted or used, in order of first sight
    providers: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        return round((_parse(self.last_event_at) - _parse(self.started_at)).total_seconds(), 3)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_seconds"] = self.duration_seconds
        return data

    def add(self, event: dict[str, Any]) -> None:
        """Count one event of this run (events must come in seq order)."""
        kind = event["event_type"]
        if not self.started_at:
            self.started_at = event["timestamp"]
        self.last_event_at = event["timestamp"]
        self.agent_name = self.agent_name or event.get("agent_name")
        self.task_context = self.task_context or event.get("task_context")
        self.triggered_by = self.triggered_by or event.get("triggered_by")
        token_id = event.get("token_id")
        if token_id and token_id not in self.tokens and kind in ("token.minted", *CALL_TYPES):
            self.tokens.append(token_id)
        provider = event.get("provider")
        if provider and provider not in self.providers and kind in CALL_TYPES:
            self.providers.append(provider)
        if kind in CALL_TYPES:
            self.calls += 1
            host = (event.get("request") or {}).get("host")
            if host and host not in self.hosts:
                self.hosts.append(host)
        if kind == "api.denied":
            self.denials += 1
        elif kind == "api.request" and (event.get("decision") or {}).get("would") == "deny":
            self.would_deny += 1
        elif kind == "anomaly.detected":
            self.anomalies += 1
        elif kind == "run.ended":
            self.ended = True


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def summarize(events: Iterable[dict[str, Any]]) -> list[RunSummary]:
    """One summary per run, in the order the runs first appear."""
    runs: dict[str, RunSummary] = {}
    for event in events:
        run_id = event.get("run_id")
        if not run_id:
            continue
        summary = runs.get(run_id)
        if summary is None:
            summary = runs[run_id] = RunSummary(run_id=run_id)
        summary.add(event)
    return list(runs.values())


def run_summaries(
    ledger: Ledger,
    *,
    agent: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[RunSummary]:
    """Summaries of the runs with events from `since` to `until` (inclusive ISO 8601 times)."""
    return summarize(ledger.iter_events(agent=agent, since=since, until=until))


def run_summary(ledger: Ledger, run_id: str) -> RunSummary | None:
    found = summarize(ledger.iter_events(run_id=run_id))
    return found[0] if found else None


_COLUMNS = (
    "run",
    "agent",
    "started",
    "duration",
    "calls",
    "denied",
    "tokens",
    "anomalies",
    "providers",
    "task",
)


def format_runs(summaries: list[RunSummary]) -> str:
    """A fixed-width table; '(no runs)' when there are none."""
    from tether.ledger.timeline import printable

    if not summaries:
        return "(no runs)"
    lines = [[column.upper() for column in _COLUMNS]]
    for s in summaries:
        task = printable(s.task_context or "")
        lines.append(
            [
                printable(s.run_id),
                printable(s.agent_name or ""),
                s.started_at.replace("T", " ").removesuffix("Z"),
                f"{s.duration_seconds:.1f}s" + ("" if s.ended else "+"),
                str(s.calls),
                str(s.denials) + (f" (+{s.would_deny} report)" if s.would_deny else ""),
                str(len(s.tokens)),
                str(s.anomalies),
                printable(",".join(s.providers)),
                task if len(task) <= 40 else task[:39] + "…",
            ]
        )
    widths = [max(len(line[index]) for line in lines) for index in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
