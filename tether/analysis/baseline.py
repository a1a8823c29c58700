"""Behavioural baselines per agent and the anomaly rules that compare a run with them.

A baseline is learned from an agent's runs in the ledger: the routes it called (provider + route
template, or host + method for hosts without a catalog), hosts, scopes asked for, calls per run and
the UTC hours it was active. Only runs with at least one call count.

`Detector.observe` takes events one by one, in ledger order, and returns the anomalies they show.
The baseline for a run is every run of the same agent that started before it: runs still going on
count with what they did so far. Rules:

- `new_route`, `new_host`, `volume_spike`, `off_hours` (against learned hours) compare with the
  baseline and wait for its learning period (`learning_runs`);
- `off_hours` (against configured `business_hours`), `downscope_burst` and `agent_supplied_credential`
  need no history and apply from the first run.

Each anomaly is reported at most once per run and subject. Times are the events' own timestamps,
so replaying a ledger gives the same answers as watching it live.

Memory stays bounded whatever hosts an agent makes up (denied calls count too): an agent's first
`MAX_TRACKED_KEYS` distinct hosts, routes and scopes are tracked by name, later ones are counted
under `(other)`. Such a host or route is still flagged `new_host` / `new_route` in every run it
appears in: tether cannot tell whether an untracked name was seen before, and a security tool errs
on the side of saying so.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tether.analysis.settings import AnomalyKind, AnomalySettings

CALL_TYPES = frozenset({"api.request", "api.denied"})
# Event types a baseline learns from or the rules look at.
RELEVANT_TYPES = frozenset({*CALL_TYPES, "token.minted", "run.ended"})
MAX_OPEN_RUNS = 256  # runs tracked one by one per agent; older ones are folded into the baseline
MAX_TRACKED_KEYS = 1000  # distinct hosts, routes and scopes tracked by name per agent
OTHER = "(other)"


def parse_time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def route_key(event: dict[str, Any]) -> str | None:
    """`github GET /repos/{owner}/{repo}` for catalogued calls, `status.example.com GET` otherwise."""
    request = event.get("request") or {}
    if request.get("route") and event.get("provider"):
        return f"{event['provider']} {request['route']}"
    if request.get("host") and request.get("method"):
        return f"{request['host']} {request['method']}"
    return None


def is_downscoping(event: dict[str, Any]) -> bool:
    """A token cut below the agent's ask, or a call that needed more than its token's grant."""
    return bool(event.get("scope_downscoped")) and event["event_type"] in ("token.minted", *CALL_TYPES)


@dataclass
class RunActivity:
    run_id: str
    started_at: str
    calls: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    scopes: Counter[str] = field(default_factory=Counter)
    hours: Counter[int] = field(default_factory=Counter)

    def add(self, event: dict[str, Any], tracked: RunActivity | None = None) -> None:
        """Count `event`; names beyond what `tracked` (the agent's totals; else this one) may hold
        count as OTHER."""
        tracked = tracked or self
        kind = event["event_type"]
        if kind == "token.minted":
            provider = event.get("provider") or "?"
            for scope in event.get("scope_requested") or ():
                self.scopes[_capped(tracked.scopes, f"{provider}:{scope}")] += 1
        if kind not in CALL_TYPES:
            return
        self.calls += 1
        key = route_key(event)
        if key:
            self.routes[_capped(tracked.routes, key)] += 1
        host = (event.get("request") or {}).get("host")
        if host:
            self.hosts[_capped(tracked.hosts, host)] += 1
        self.hours[parse_time(event["timestamp"]).hour] += 1


def _capped(counter: Counter[str], key: str) -> str:
    return key if key in counter or len(counter) < MAX_TRACKED_KEYS else OTHER


@dataclass
class Baseline:
    """What an agent did in the runs learned so far."""

    agent: str
    runs: int = 0
    first_run: str | None = None
    last_run: str | None = None
    routes: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    scopes: Counter[str] = field(default_factory=Counter)
    hours: Counter[int] = field(default_factory=Counter)
    calls_per_run: list[int] = field(default_factory=list)
    max_calls: int = 0

    def learn(self, run: RunActivity) -> None:
        if run.calls == 0:
            return
        self.runs += 1
        self.first_run = self.first_run or run.run_id
        self.last_run = run.run_id
        self.routes.update(run.routes)
        self.hosts.update(run.hosts)
        self.scopes.update(run.scopes)
        self.hours.update(run.hours)
        self.calls_per_run.append(run.calls)
        self.max_calls = max(self.max_calls, run.calls)

    def to_json(self) -> dict[str, Any]:
        calls = sorted(self.calls_per_run)
        return {
            "agent": self.agent,
            "runs": self.runs,
            "first_run": self.first_run,
            "last_run": self.last_run,
            "routes": dict(self.routes.most_common()),
            "hosts": dict(self.hosts.most_common()),
            "scopes": dict(self.scopes.most_common()),
            "hours_utc": {f"{hour:02d}": count for hour, count in sorted(self.hours.items())},
            "calls_per_run": {
                "min": calls[0] if calls else None,
                "median": calls[len(calls) // 2] if calls else None,
                "max": calls[-1] if calls else None,
                "mean": round(sum(calls) / len(calls), 1) if calls else None,
            },
        }


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    subject: str
    reason: str  # "<kind>: <why>", for decision.reason
    evidence: dict[str, Any]  # the event that showed it
    figures: dict[str, Any] = field(default_factory=dict)  # numbers behind it, for detail


@dataclass
class _Run:
    activity: RunActivity
    order: int  # start order within the agent
    flagged: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Agent:
    baseline: Baseline  # the runs folded in (ended, or the oldest beyond MAX_OPEN_RUNS)
    runs: dict[str, _Run] = field(default_factory=dict)  # open runs, in start order
    started: int = 0
    open_with_calls: int = 0  # open runs with at least one call
    # Everything learned, folded and open runs alike, so "seen before run R" is a subtraction, not a
    # walk over every open run (header-named runs stay open until shutdown).
    seen: RunActivity = field(default_factory=lambda: RunActivity("*", ""))
    downscopes: deque[datetime] = field(default_factory=deque)

    def add(self, run: _Run, event: dict[str, Any]) -> None:
        had_calls = run.activity.calls > 0
        self.seen.add(event)
        run.activity.add(event, tracked=self.seen)  # the run folds the names `seen` folded
        if not had_calls and run.activity.calls:
            self.open_with_calls += 1

    def fold(self, run_id: str) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            self.baseline.learn(run.activity)
            self.open_with_calls -= run.activity.calls > 0

    def later(self, run: _Run) -> list[RunActivity]:
        """Open runs that started after `run` (usually none: the newest run is the one calling)."""
        found = []
        for other in reversed(self.runs.values()):
            if other is run:
                break
            found.append(other.activity)
        return found

    def prior_runs(self, run: _Run, later: list[RunActivity]) -> int:
        own = 1 if run.activity.calls else 0
        return self.baseline.runs + self.open_with_calls - own - sum(1 for a in later if a.calls)

    def seen_before(self, run: _Run, later: list[RunActivity], what: str, key: Any) -> bool:
        """Whether a run that started before `run` has `key` in its `what` (routes, hosts, hours)."""
        count: int = getattr(self.seen, what)[key] - getattr(run.activity, what)[key]
        later_count: int = sum(getattr(a, what)[key] for a in later)
        return count - later_count > 0

    def most_calls_before(self, run: _Run) -> int:
        prior = (other.activity.calls for other in self.runs.values() if other.order < run.order)
        return max(self.baseline.max_calls, *prior, 0)


class Detector:
    """Learns baselines from events and flags the anomalies of new ones (see the module docstring)."""

    def __init__(self, settings: AnomalySettings) -> None:
        self.settings = settings
        self._agents: dict[str, _Agent] = {}
        self.last_seq = -1

    def learn(self, events: Iterable[dict[str, Any]]) -> None:
        """Take in past events without flagging (to start from what the ledger already holds)."""
        for event in events:
            tracked = self._track(event)
            if tracked is not None:
                state, run = tracked
                if is_downscoping(event):
                    self._downscopes(state, parse_time(event["timestamp"]))
                state.add(run, event)

    def baseline(self, agent: str) -> Baseline:
        """Everything learned for `agent` so far, open runs included (does not change the detector)."""
        state = self._agents.get(agent)
        if state is None:
            return Baseline(agent)
        learned = state.baseline
        total = Baseline(
            agent,
            runs=learned.runs,
            first_run=learned.first_run,
            last_run=learned.last_run,
            routes=Counter(learned.routes),
            hosts=Counter(learned.hosts),
            scopes=Counter(learned.scopes),
            hours=Counter(learned.hours),
            calls_per_run=list(learned.calls_per_run),
            max_calls=learned.max_calls,
        )
        for run in state.runs.values():
            total.learn(run.activity)
        return total

    def observe(self, event: dict[str, Any]) -> list[Anomaly]:
        """Anomalies `event` shows (each at most once per run and subject); then learn from it."""
        tracked = self._track(event)
        if tracked is None:
            return []
        state, run = tracked
        found = [
            anomaly for anomaly in self._check(state, run, event) if anomaly.kind not in self.settings.ignore
        ]
        fresh = []
        for anomaly in found:
            if (anomaly.kind, anomaly.subject) not in run.flagged:
                run.flagged.add((anomaly.kind, anomaly.subject))
                fresh.append(anomaly)
        return fresh

    # --- state ----------------------------------------------------------------------------------

    def _track(self, event: dict[str, Any]) -> tuple[_Agent, _Run] | None:
        seq = event.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return None  # seen already (live events that were also in the startup read)
            self.last_seq = seq
        agent, run_id = event.get("agent_name"), event.get("run_id")
        if not agent or not run_id or event["event_type"] not in RELEVANT_TYPES:
            return None
        state = self._agents.get(agent)
        if state is None:
            state = self._agents[agent] = _Agent(Baseline(agent))
        if event["event_type"] == "run.ended":
            state.fold(run_id)
            return None
        run = state.runs.get(run_id)
        if run is None:
            if len(state.runs) >= MAX_OPEN_RUNS:
                state.fold(next(iter(state.runs)))
            state.started += 1
            run = state.runs[run_id] = _Run(RunActivity(run_id, event["timestamp"]), state.started)
        return state, run

    # --- rules ----------------------------------------------------------------------------------

    def _check(self, state: _Agent, run: _Run, event: dict[str, Any]) -> list[Anomaly]:
        """Compare `event` with the runs before `run`, then add it to `run`."""
        settings = self.settings
        found: list[Anomaly] = []
        evidence = event
        when = parse_time(event["timestamp"])
        if is_downscoping(event):
            window = self._downscopes(state, when)
            if len(window) > settings.downscope_burst:
                minutes = settings.downscope_window_seconds / 60
                found.append(
                    Anomaly(
                        "downscope_burst",
                        event.get("provider") or "-",
                        f"downscope_burst: {len(window)} downscoping events within {minutes:g} minutes "
                        f"(more than {settings.downscope_burst})",
                        evidence,
                        {
                            "count": len(window),
                            "limit": settings.downscope_burst,
                            "window_seconds": minutes * 60,
                        },
                    )
                )
        is_call = event["event_type"] in CALL_TYPES
        if is_call and (event.get("detail") or {}).get("agent_credential") == "replaced":
            host = (event.get("request") or {}).get("host") or "-"
            found.append(
                Anomaly(
                    "agent_supplied_credential",
                    host,
                    f"agent_supplied_credential: the agent sent its own credential to {host} "
                    "(tether removed it and injected the brokered token)",
                    evidence,
                )
            )
        if is_call and settings.business_hours is not None and not settings.business_hours.contains(when):
            hours = settings.business_hours
            found.append(
                Anomaly(
                    "off_hours",
                    "business_hours",
                    f"off_hours: call at {when:%a %H:%M} UTC, outside business hours "
                    f"({','.join(hours.days)} {hours.start}-{hours.end} {hours.timezone})",
                    evidence,
                )
            )
        if is_call:
            found.extend(self._compare(state, run, event, when))
        state.add(run, event)
        return found

    def _downscopes(self, state: _Agent, when: datetime) -> deque[datetime]:
        """The agent's downscoping events within the window up to `when`, this one included."""
        window = state.downscopes
        window.append(when)
        while window and window[0] <= when - timedelta(seconds=self.settings.downscope_window_seconds):
            window.popleft()
        return window

    def _compare(self, state: _Agent, run: _Run, event: dict[str, Any], when: datetime) -> list[Anomaly]:
        settings = self.settings
        later = state.later(run)
        learned = state.prior_runs(run, later)
        if learned < settings.learning_runs:
            return []
        found: list[Anomaly] = []
        figures: dict[str, Any] = {"baseline_runs": learned}
        host = (event.get("request") or {}).get("host")
        key = route_key(event)
        if host and not state.seen_before(run, later, "hosts", host):
            reason = f"new_host: {host} was not called in {learned} prior runs"
            found.append(Anomaly("new_host", host, reason, event, figures))
        elif key and not state.seen_before(run, later, "routes", key):
            reason = f"new_route: {key} was not called in {learned} prior runs"
            found.append(Anomaly("new_route", key, reason, event, figures))
        calls = run.activity.calls + 1
        if calls > settings.volume_min_calls:  # the limit is never below it: skip the work until then
            most = state.most_calls_before(run)
            limit = max(settings.volume_min_calls, math.ceil(most * settings.volume_factor))
            if calls > limit:
                reason = (
                    f"volume_spike: {calls} calls in this run; at most {most} in {learned} prior runs "
                    f"(limit {limit})"
                )
                numbers = {**figures, "calls": calls, "prior_max": most, "limit": limit}
                found.append(Anomaly("volume_spike", "calls", reason, event, numbers))
        tolerance = settings.hours_tolerance
        near = {(when.hour + delta) % 24 for delta in range(-tolerance, tolerance + 1)}
        if not any(state.seen_before(run, later, "hours", hour) for hour in near):
            usual = [hour for hour in range(24) if state.seen_before(run, later, "hours", hour)]
            reason = (
                f"off_hours: call at {when:%H:%M} UTC; the agent was active at hours "
                f"{','.join(f'{hour:02d}' for hour in usual)} UTC in {learned} prior runs"
            )
            numbers = {**figures, "hour_utc": when.hour, "usual_hours_utc": usual}
            found.append(Anomaly("off_hours", "learned_hours", reason, event, numbers))
        return found


def anomaly_fields(anomaly: Anomaly) -> dict[str, Any]:
    """The fields of the `anomaly.detected` event for `anomaly` (attribution copied from the evidence)."""
    evidence = anomaly.evidence
    fields = {
        name: evidence.get(name)
        for name in (
            "agent_id",
            "agent_name",
            "run_id",
            "task_context",
            "triggered_by",
            "provider",
            "token_id",
            "policy_id",
            "source_ip",
            "request",
        )
    }
    fields["decision"] = {"action": "flag", "reason": anomaly.reason, "rule": f"anomalies.{anomaly.kind}"}
    fields["detail"] = {
        "anomaly": anomaly.kind,
        "subject": anomaly.subject,
        "evidence_event_id": evidence.get("event_id"),
        "evidence_seq": evidence.get("seq"),
        **anomaly.figures,
    }
    return fields
