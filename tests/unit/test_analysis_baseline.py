"""Baselines and anomaly rules, fed with recorded-looking events in ledger order."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.analysis_events import at, call, event, minted
from tether.analysis.baseline import Anomaly, Detector, anomaly_fields
from tether.analysis.settings import AnomalySettings, BusinessHours

PULL = "GET /repos/{owner}/{repo}/pulls/{pull_number}"


def steady_run(run: str, minute: int, calls: int = 3, hour: int = 10, **fields: Any) -> list[dict[str, Any]]:
    events = [event("run.started", run, at(minute, hour=hour)), minted(run, at(minute, 1, hour=hour))]
    events += [call(run, at(minute, 2 + index, hour=hour), **fields) for index in range(calls)]
    events.append(event("run.ended", run, at(minute, 30, hour=hour)))
    return events


def feed(detector: Detector, events: list[dict[str, Any]]) -> list[Anomaly]:
    return [anomaly for item in events for anomaly in detector.observe(item)]


def kinds(anomalies: list[Anomaly]) -> list[tuple[str, str]]:
    return [(a.kind, a.subject) for a in anomalies]


def learned(runs: int = 3, **settings: Any) -> Detector:
    settings.setdefault("volume_min_calls", 5)
    detector = Detector(AnomalySettings(learning_runs=runs, **settings))
    for index in range(runs):
        assert feed(detector, steady_run(f"run_{index}", index)) == []
    return detector


def test_a_steady_agent_is_never_flagged() -> None:
    detector = learned()
    assert feed(detector, steady_run("run_next", 10)) == []
    baseline = detector.baseline("pr-bot").to_json()
    assert baseline["runs"] == 4
    assert baseline["routes"] == {f"github {PULL}": 12}
    assert baseline["hosts"] == {"api.github.com": 12}
    assert baseline["scopes"] == {"github:repo:read": 4}
    assert baseline["hours_utc"] == {"10": 12}
    assert baseline["calls_per_run"] == {"min": 3, "median": 3, "max": 3, "mean": 3.0}


def test_nothing_is_compared_during_the_learning_period() -> None:
    detector = Detector(AnomalySettings(learning_runs=3))
    first = steady_run("run_0", 0)
    second = steady_run(
        "run_1", 1, method="DELETE", route="DELETE /repos/{owner}/{repo}", host="other.example"
    )
    assert feed(detector, first + second) == []


def test_new_route_and_new_host_once_per_run_and_subject() -> None:
    detector = learned(volume_min_calls=20)
    run = steady_run("run_x", 10)
    extra = [
        call(
            "run_x",
            at(10, 10),
            method="POST",
            route="POST /repos/{owner}/{repo}/issues",
            path="/repos/a/b/issues",
        ),
        call(
            "run_x",
            at(10, 11),
            method="POST",
            route="POST /repos/{owner}/{repo}/issues",
            path="/repos/a/b/issues",
        ),
        call("run_x", at(10, 12), host="evil.example", route=None, provider=None, path="/x"),
        call("run_x", at(10, 13), host="evil.example", route=None, provider=None, path="/y"),
    ]
    found = feed(detector, run[:-1] + extra)
    assert kinds(found) == [
        ("new_route", "github POST /repos/{owner}/{repo}/issues"),
        ("new_host", "evil.example"),
    ]
    assert found[0].evidence["seq"] is None and found[0].evidence["request"]["method"] == "POST"
    # The next run has learned both: nothing new.
    assert (
        feed(detector, [run[-1], *steady_run("run_y", 11), *(e | {"run_id": "run_y"} for e in extra)]) == []
    )


def test_volume_spike_with_its_figures() -> None:
    detector = learned()  # 3 calls per run; limit max(5, 3 * 2) = 6
    found = feed(detector, steady_run("run_big", 10, calls=10))
    assert kinds(found) == [("volume_spike", "calls")]
    assert found[0].figures == {"baseline_runs": 3, "calls": 7, "prior_max": 3, "limit": 6}
    assert "7 calls in this run; at most 3 in 3 prior runs (limit 6)" in found[0].reason


def test_off_hours_against_learned_hours_with_tolerance() -> None:
    detector = learned(hours_tolerance=1)
    assert feed(detector, steady_run("run_11", 10, hour=11)) == []  # 11 is next to 10
    found = feed(detector, steady_run("run_night", 12, hour=3))
    assert kinds(found) == [("off_hours", "learned_hours")]
    assert found[0].figures["usual_hours_utc"] == [10, 11]


def test_off_hours_against_business_hours_from_the_first_run() -> None:
    hours = BusinessHours(
        timezone="UTC", days=["mon", "tue", "wed", "thu", "fri"], start="12:00", end="18:00"
    )
    detector = Detector(AnomalySettings(business_hours=hours))
    found = feed(detector, steady_run("run_0", 0))  # 2026-03-02 is a Monday, 10:00 UTC
    assert kinds(found) == [("off_hours", "business_hours")]
    assert "outside business hours (mon,tue,wed,thu,fri 12:00-18:00 UTC)" in found[0].reason
    assert feed(detector, steady_run("run_1", 0, hour=13)) == []
    with pytest.raises(ValidationError, match="equal"):
        BusinessHours(start="09:00", end="09:00")
    with pytest.raises(ValidationError):
        BusinessHours(timezone="Mars/Olympus", start="09:00", end="17:00")


def test_downscope_burst_more_than_five_in_fifteen_minutes() -> None:
    detector = Detector(AnomalySettings())
    downscoped = [
        minted("run_d", at(minute), token=f"tok_{minute}", scope_downscoped=True)
        for minute in range(0, 25, 5)
    ]
    assert feed(detector, downscoped) == []  # 5 in 20 minutes: never more than 5 in any 15
    burst = [call("run_d", at(30, second), kind="api.denied", scope_downscoped=True) for second in range(7)]
    found = feed(detector, burst)
    assert kinds(found) == [("downscope_burst", "github")]
    assert found[0].figures["count"] == 6
    # api.response repeats its request's fields and is not counted again
    assert not feed(
        Detector(AnomalySettings(downscope_burst=1)),
        [call("r", at(0), kind="api.response", scope_downscoped=True)] * 3,
    )


def test_agent_supplied_credential_and_ignore() -> None:
    replaced = call("run_c", at(0), detail={"agent_credential": "replaced"})
    placeholder = call("run_c", at(1), detail={"agent_credential": "placeholder"})
    assert kinds(feed(Detector(AnomalySettings()), [placeholder, replaced, replaced])) == [
        ("agent_supplied_credential", "api.github.com")
    ]
    quiet = Detector(AnomalySettings(ignore=["agent_supplied_credential"]))
    assert feed(quiet, [replaced]) == []


def test_anomaly_event_fields_copy_attribution() -> None:
    detector = learned()
    evidence = call("run_x", at(10), method="DELETE", route="DELETE /repos/{owner}/{repo}", path="/repos/a/b")
    evidence["seq"], evidence["event_id"] = 99, "evt_x"
    (anomaly,) = detector.observe(evidence)
    fields = anomaly_fields(anomaly)
    assert fields["run_id"] == "run_x" and fields["task_context"] == "task of run_x"
    assert fields["decision"] == {
        "action": "flag",
        "reason": anomaly.reason,
        "rule": "anomalies.new_route",
    }
    assert fields["detail"]["evidence_event_id"] == "evt_x" and fields["detail"]["evidence_seq"] == 99
    # an event already seen (by seq) is not looked at again
    assert detector.observe(evidence) == []


def test_learning_from_history_equals_watching_it() -> None:
    history = [item for index in range(3) for item in steady_run(f"run_{index}", index)]
    for seq, item in enumerate(history):
        item["seq"] = seq
    replayed = Detector(AnomalySettings(learning_runs=3, volume_min_calls=5))
    replayed.learn(history)
    watched = learned()
    assert replayed.baseline("pr-bot") == watched.baseline("pr-bot")
    assert replayed.baseline("pr-bot").runs == 3
    new = call(
        "run_x", at(20), method="POST", route="POST /repos/{owner}/{repo}/issues", path="/repos/a/b/issues"
    )
    new["seq"] = len(history)
    assert kinds(replayed.observe(new)) == [("new_route", "github POST /repos/{owner}/{repo}/issues")]
    assert replayed.baseline("nobody").runs == 0


def test_only_runs_that_started_earlier_are_prior() -> None:
    detector = learned(volume_min_calls=20)
    issues = {"method": "POST", "route": "POST /repos/{owner}/{repo}/issues", "path": "/repos/a/b/issues"}
    assert feed(detector, [call("run_a", at(20))]) == []
    assert kinds(feed(detector, [call("run_b", at(21), **issues)])) == [
        ("new_route", f"github {issues['route']}")
    ]
    # run_b started after run_a: what run_b did is not part of run_a's baseline
    assert kinds(feed(detector, [call("run_a", at(22), **issues)])) == [
        ("new_route", f"github {issues['route']}")
    ]
    # but it is for a run that starts later, while both are still open
    assert feed(detector, [call("run_c", at(23), **issues)]) == []


def test_open_runs_beyond_the_cap_are_folded_without_changing_answers() -> None:
    from tether.analysis.baseline import MAX_OPEN_RUNS

    detector = Detector(AnomalySettings(learning_runs=3, volume_min_calls=20))
    for index in range(MAX_OPEN_RUNS + 10):  # header-named runs: never ended
        assert feed(detector, [call(f"run_{index}", at(index % 60, hour=10 + index // 60 % 2))]) == []
    baseline = detector.baseline("pr-bot")
    assert baseline.runs == MAX_OPEN_RUNS + 10 and baseline.max_calls == 1
    assert kinds(
        feed(detector, [call("run_new", at(59), host="new.example", route=None, provider=None)])
    ) == [("new_host", "new.example")]


def test_made_up_hosts_are_folded_and_still_flagged() -> None:
    from tether.analysis.baseline import MAX_TRACKED_KEYS, OTHER

    detector = learned(volume_min_calls=10_000)
    spray = [
        call("run_x", at(10, 0), host=f"h{index}.evil.example", route=None, provider=None, kind="api.denied")
        for index in range(MAX_TRACKED_KEYS + 50)
    ]
    flagged = feed(detector, spray)
    assert len(flagged) == len(spray)  # every one is new to the agent, tracked or not
    baseline = detector.baseline("pr-bot")
    assert len(baseline.hosts) == len(baseline.routes) == MAX_TRACKED_KEYS + 1
    assert baseline.hosts[OTHER] == baseline.routes[OTHER] > 50
    # An untracked host is still flagged in the next run; a tracked one is known.
    again = feed(
        detector,
        [*steady_run("run_y", 11)[:-1], spray[0] | {"run_id": "run_y"}, spray[-1] | {"run_id": "run_y"}],
    )
    assert kinds(again) == [("new_host", "h1049.evil.example")]
