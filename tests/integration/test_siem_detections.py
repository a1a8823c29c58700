"""The shipped detections answer correctly over what the SIEM receivers stored.

A ledger holds a known story (two agents, three runs, token mints in and out of business hours,
downscoping bursts). It is shipped while the HEC and Datadog receivers are down (seconds here,
minutes in production), then they come back; every event reaches both. Then each saved search in
deploy/splunk/savedsearches.conf is evaluated in Python over the events the HEC receiver stored —
its base search terms and time window parsed from the file, its pipeline stages (dedup, the
off-hours `where`, the per-agent `stats … | where`) re-implemented and pinned to the file's text —
and must return exactly the expected events. The Datadog monitor query is evaluated the same way.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import shlex
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.siem_support import Siem, sink_from
from tether.ledger.events import new_event
from tether.ledger.store import Ledger
from tether.sinks.shipper import Shipper
from tether.sinks.state import SinkState

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)


def at(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def last_weekday_at(hour: int, weekday: int) -> datetime:
    """The most recent past datetime (UTC) with the given weekday (0 Monday) and hour."""
    day = NOW.replace(hour=hour, minute=30, second=0)
    while day.weekday() != weekday or day > NOW:
        day -= timedelta(days=1)
    return day


def outside_business_hours(timestamp: str) -> bool:
    """Outside 08:00-18:00 Monday to Friday, UTC (the definition the saved search documents)."""
    when = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.hour < 8 or when.hour >= 18 or when.weekday() >= 5


def story(ledger: Ledger) -> dict[str, list[str]]:
    """Append the story; returns the expected event ids per detection."""
    expected: dict[str, list[str]] = {"agent": [], "downscoped": [], "run": [], "off_hours": [], "alert": []}

    def add(kind: str, when: datetime | timedelta, **fields: Any) -> dict[str, Any]:
        timestamp = at(when) if isinstance(when, timedelta) else when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return ledger.append_sync(new_event(kind, timestamp=timestamp, **fields))

    a = {"agent_id": "agt_alpha", "agent_name": "alpha"}
    b = {"agent_id": "agt_beta", "agent_name": "beta"}
    # Alpha, run 1 (2 hours ago): a mint, calls; run 2 (5 minutes ago): six downscoped calls → alert.
    minted = add(
        "token.minted", timedelta(hours=2), run_id="run_a1", provider="github", token_id="tok_1", **a
    )
    expected["agent"].append(minted["event_id"])
    if outside_business_hours(minted["timestamp"]):  # two hours ago: depends on when the test runs
        expected["off_hours"].append(minted["event_id"])
    expected["run"].append(minted["event_id"])
    for n in range(3):
        call = add("api.response", timedelta(hours=2, minutes=-n), run_id="run_a1", provider="github", **a)
        expected["run"].append(call["event_id"])
    for n in range(6):
        call = add("api.request", timedelta(minutes=5, seconds=-n), run_id="run_a2", provider="github",
                   scope_downscoped=True, **a)  # fmt: skip
        expected["downscoped"].append(call["event_id"])
        expected["alert"].append(call["event_id"])
    # Alpha: a revocation 30 hours ago (outside the 24 h window).
    add("token.revoked", timedelta(hours=30), run_id="run_a0", provider="github", token_id="tok_0", **a)
    # Beta: two downscoped mints (no alert: 2 ≤ 5), one of them at 03:30 on a weekday and one on a
    # Sunday afternoon (both outside business hours), and a mint inside business hours.
    for when in (last_weekday_at(3, 2), last_weekday_at(15, 6)):
        mint = add("token.minted", when, run_id="run_b1", provider="slack", scope_downscoped=True, **b)
        expected["off_hours"].append(mint["event_id"])
        if NOW - when <= timedelta(hours=24):
            expected["downscoped"].append(mint["event_id"])
    inside = add("token.minted", last_weekday_at(10, 1), run_id="run_b1", provider="slack", **b)
    assert inside["event_id"] not in expected["off_hours"]
    return expected


# --- a small reader of savedsearches.conf -------------------------------------------------------


def saved_searches() -> dict[str, dict[str, str]]:
    stanzas: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    key = ""
    for raw in (ROOT / "deploy/splunk/savedsearches.conf").read_text().splitlines():
        line = raw.rstrip()
        if current is not None and key and current[key].endswith("\\"):
            current[key] = current[key][:-1] + "\n" + line.strip()
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current, key = stanzas.setdefault(line.strip("[]"), {}), ""
            continue
        assert current is not None, line
        key, _, value = line.partition("=")
        key = key.strip()
        current[key] = value.strip()
    return stanzas


def window(stanza: dict[str, str]) -> timedelta:
    match = re.fullmatch(r"-(\d+)([mhd])", stanza["dispatch.earliest_time"])
    assert match, stanza["dispatch.earliest_time"]
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[match[2]]: int(match[1])})


def field(event: dict[str, Any], name: str) -> Any:
    value: Any = event
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def base_search(
    stanza: dict[str, str], stored: list[dict[str, Any]], tokens: dict[str, str]
) -> list[dict[str, Any]]:
    """Envelopes matching the search's terms before the first pipe, in its time window, deduplicated."""
    text, *stages = [part.strip() for part in re.split(r"\s\|\s", stanza["search"])]
    for name, value in tokens.items():
        text = text.replace(f"${name}$", value)
    assert "$" not in text, text
    terms = [term.split("=", 1) for term in shlex.split(text)]
    since = NOW - window(stanza)
    found, seen = [], set()
    for envelope in stored:
        event = envelope["event"]
        if datetime.fromtimestamp(envelope["time"], UTC) < since:
            continue
        ok = True
        for name, pattern in terms:
            actual = envelope.get(name) if name in ("index", "sourcetype") else field(event, name)
            actual_text = json.dumps(actual) if isinstance(actual, bool) else str(actual)
            ok = ok and actual is not None and fnmatch.fnmatchcase(actual_text, pattern)
        if ok and stages[0] == "dedup event_id" and event["event_id"] not in seen:
            seen.add(event["event_id"])
            found.append(envelope)
    return found


@pytest.fixture(scope="module")
def shipped(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Siem, dict[str, list[str]], list[str]]]:
    directory = tmp_path_factory.mktemp("detections")
    siem = Siem(directory)
    with Ledger(directory / "ledger.db") as ledger:
        expected = story(ledger)
    ledger_ids = [e["event_id"] for e in Ledger.open_readonly(directory / "ledger.db").iter_events()]
    siem.hec_server.stop()
    siem.datadog_server.stop()

    async def ship() -> None:
        state = SinkState(directory / "ledger.db")
        shippers = [
            Shipper(sink_from(siem.hec_config()), state),
            Shipper(sink_from(siem.datadog_config()), state),
        ]
        tasks = [asyncio.create_task(s.run()) for s in shippers]
        await asyncio.sleep(2)  # both receivers down: events wait in the ledger
        assert all(state.cursor(s.name) == -1 for s in shippers)
        await asyncio.to_thread(siem.hec_server.start)
        await asyncio.to_thread(siem.datadog_server.start)
        async with asyncio.timeout(60):
            while any(state.cursor(s.name) < state.last_seq() for s in shippers):
                await asyncio.sleep(0.05)
        for shipper, task in zip(shippers, tasks, strict=True):
            shipper.stop(time.monotonic() + 5)
            await task
            await shipper.sink.close()

    asyncio.run(ship())
    yield siem, expected, ledger_ids
    siem.stop()


def test_every_event_reached_both_receivers_after_the_outage(shipped: Any) -> None:
    siem, _, ledger_ids = shipped
    assert list(dict.fromkeys(siem.hec.stored_ids())) == ledger_ids
    assert list(dict.fromkeys(siem.datadog.stored_ids())) == ledger_ids


def ids(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["event"]["event_id"] for e in envelopes]


def test_token_events_for_an_agent_in_24h(shipped: Any) -> None:
    siem, expected, _ = shipped
    stanza = saved_searches()["tether - token events for an agent (24h)"]
    assert ids(base_search(stanza, siem.hec.envelopes, {"agent_id": "agt_alpha"})) == expected["agent"]


def test_downscoping_events(shipped: Any) -> None:
    siem, expected, _ = shipped
    stanza = saved_searches()["tether - downscoping events"]
    assert ids(base_search(stanza, siem.hec.envelopes, {})) == expected["downscoped"]


def test_one_runs_events(shipped: Any) -> None:
    siem, expected, _ = shipped
    stanza = saved_searches()["tether - one run's events"]
    assert ids(base_search(stanza, siem.hec.envelopes, {"run_id": "run_a1"})) == expected["run"]


def test_mints_outside_business_hours(shipped: Any) -> None:
    siem, expected, _ = shipped
    stanza = saved_searches()["tether - mints outside business hours"]
    assert '| where hour<8 OR hour>=18 OR weekday="Sat" OR weekday="Sun"' in stanza["search"].replace(
        "\n", " "
    )
    found = []
    for envelope in base_search(stanza, siem.hec.envelopes, {}):
        when = datetime.fromtimestamp(envelope["time"], UTC)  # the test's search user works in UTC
        hour, weekday = when.hour, when.strftime("%a")
        if hour < 8 or hour >= 18 or weekday in ("Sat", "Sun"):
            found.append(envelope["event"]["event_id"])
    assert sorted(found) == sorted(expected["off_hours"])


def test_alert_more_than_5_downscoping_events_per_agent_in_15_minutes(shipped: Any) -> None:
    siem, expected, _ = shipped
    stanza = saved_searches()["tether - alert: more than 5 downscoping events per agent in 15 minutes"]
    assert "BY agent_id" in stanza["search"] and "where downscoping_events > 5" in stanza["search"]
    assert stanza["enableSched"] == "1" and stanza["dispatch.earliest_time"] == "-15m"
    counts: dict[str, list[str]] = {}
    for envelope in base_search(stanza, siem.hec.envelopes, {}):
        counts.setdefault(envelope["event"]["agent_id"], []).append(envelope["event"]["event_id"])
    alerts = {agent: events for agent, events in counts.items() if len(events) > 5}
    assert alerts == {"agt_alpha": expected["alert"]}


def test_datadog_monitor_query(shipped: Any) -> None:
    siem, expected, _ = shipped
    monitor = json.loads((ROOT / "deploy/datadog/monitor.json").read_text())
    assert monitor["type"] == "log alert" and monitor["priority"] == 3
    match = re.fullmatch(
        r'logs\("(?P<q>[^"]+)"\)\.index\("\*"\)\.rollup\("cardinality", "@event_id"\)'
        r'\.by\("@(?P<by>\w+)"\)\.last\("(?P<last>\d+)m"\) > (?P<threshold>\d+)',
        monitor["query"],
    )
    assert match, monitor["query"]
    terms = [term.split(":", 1) for term in match["q"].split()]
    since = NOW - timedelta(minutes=int(match["last"]))
    groups: dict[str, set[str]] = {}
    for entry in siem.datadog.stored:
        if datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")) < since:
            continue
        values = {"source": entry["ddsource"], "service": entry["service"]}
        if all(
            str(values.get(k) if not k.startswith("@") else json.dumps(entry.get(k[1:]))) == v
            for k, v in terms
        ):
            groups.setdefault(entry[match["by"]], set()).add(entry["event_id"])
    firing = {agent: ids for agent, ids in groups.items() if len(ids) > int(match["threshold"])}
    assert firing == {"agt_alpha": set(expected["alert"])}
    facets = {f["path"] for f in json.loads((ROOT / "deploy/datadog/facets.json").read_text())["facets"]}
    assert {"@agent_id", "@run_id", "@provider", "@scope_downscoped"} <= facets
