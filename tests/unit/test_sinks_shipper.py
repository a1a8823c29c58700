"""The shipper core with a scripted sink: batching, order, bisection, retries, cursors, shutdown."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.siem_support import fill_ledger
from tether.ledger.store import Ledger
from tether.ledger.verify import verify_ledger
from tether.sinks.base import Outcome, Sink, parse_retry_after
from tether.sinks.config import FileSink
from tether.sinks.shipper import Shipper, Stopped
from tether.sinks.state import SinkState


class ScriptedSink(Sink):
    """Accepts everything except events whose task_context is in `bad`; `script` forces answers."""

    def __init__(self, name: str = "scripted", bad: frozenset[str] = frozenset(), **options: Any) -> None:
        config = FileSink.model_validate({"name": name, "type": "file", "path": "-", **options})
        super().__init__(config)
        self.bad = bad
        self.script: list[Outcome] = []
        self.requests: list[list[str]] = []
        self.received: list[str] = []

    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        return json.dumps(self.render(event)).encode()

    async def send(self, records: list[bytes]) -> Outcome:
        events = [json.loads(r) for r in records]
        self.requests.append([e["task_context"] for e in events])
        if self.script:
            return self.script.pop(0)
        for index, event in enumerate(events):
            if event["task_context"] in self.bad:
                return Outcome.reject(
                    f"bad event {event['task_context']}", index if self.name == "indexed" else None
                )
        self.received.extend(e["task_context"] for e in events)
        return Outcome.ok()


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(tmp_path / "ledger.db") as ledger:
        yield ledger


def run(ledger: Ledger, sink: Sink, *, until_seq: int | None = None) -> tuple[Shipper, SinkState]:
    async def go() -> tuple[Shipper, SinkState]:
        state = SinkState(ledger.path)
        shipper = Shipper(sink, state, rng=random.Random(1))
        task = asyncio.create_task(shipper.run())
        target = state.last_seq() if until_seq is None else until_seq
        async with asyncio.timeout(20):
            while state.cursor(sink.name) < target:
                await asyncio.sleep(0.01)
        shipper.stop(0)
        await asyncio.wait_for(task, 5)
        return shipper, state

    return asyncio.run(go())


def test_ships_everything_in_order_in_batches_of_the_configured_size(ledger: Ledger) -> None:
    fill_ledger(ledger, 25)
    sink = ScriptedSink(batch_max_events=10, flush_seconds=0.05)
    shipper, state = run(ledger, sink)
    assert sink.received == [f"task-{n}" for n in range(25)]
    assert [len(r) for r in sink.requests] == [10, 10, 5]
    assert state.cursor("scripted") == 24
    assert shipper.stats.delivered == 25


def test_batches_are_cut_by_bytes(ledger: Ledger) -> None:
    fill_ledger(ledger, 20)
    size = len(ScriptedSink().encode(next(iter(ledger.iter_events()))))
    sink = ScriptedSink(batch_max_bytes=max(1024, size * 3 + 10), flush_seconds=0.05)
    run(ledger, sink)
    per_request = max(1024, size * 3 + 10) // size
    assert all(len(r) <= per_request for r in sink.requests)
    assert sink.received == [f"task-{n}" for n in range(20)]


def test_a_rejected_event_is_bisected_out_and_parked_the_rest_flows(ledger: Ledger) -> None:
    fill_ledger(ledger, 16)
    sink = ScriptedSink(bad=frozenset({"task-11"}), batch_max_events=16)
    _, state = run(ledger, sink)
    assert sink.received == [f"task-{n}" for n in range(16) if n != 11]
    letters = state.dead_letters("scripted")
    assert [(d.seq, d.reason) for d in letters] == [(11, "bad event task-11")]
    # Bisection: 16 → 8+8 → the bad half 4+4 → 2+2 → 1+1; far fewer requests than one per event.
    assert len(sink.requests) < 12


def test_an_index_hint_goes_straight_to_the_bad_event(ledger: Ledger) -> None:
    fill_ledger(ledger, 10)
    sink = ScriptedSink(name="indexed", bad=frozenset({"task-4"}), batch_max_events=10)
    _, state = run(ledger, sink)
    assert sink.requests == [
        [f"task-{n}" for n in range(10)],
        [f"task-{n}" for n in range(4)],
        ["task-4"],
        [f"task-{n}" for n in range(5, 10)],
    ]
    assert [d.seq for d in state.dead_letters("indexed")] == [4]


def test_retryable_failures_resend_the_same_batch_and_honour_retry_after(ledger: Ledger) -> None:
    fill_ledger(ledger, 3)
    sink = ScriptedSink(backoff_initial_seconds=0.01, backoff_max_seconds=0.02)
    sink.script = [Outcome.retry("busy"), Outcome.retry("throttled", retry_after=0.3)]
    shipper, state = run(ledger, sink)
    assert sink.requests == [["task-0", "task-1", "task-2"]] * 3
    assert shipper.stats.retries == 2
    assert state.status(["scripted"])[0].last_error is None  # cleared by the delivery


def test_backoff_is_full_jitter_capped_and_at_least_retry_after() -> None:
    sink = ScriptedSink(backoff_initial_seconds=1, backoff_max_seconds=8)
    shipper = Shipper.__new__(Shipper)
    shipper.sink, shipper.rng = sink, random.Random(7)
    delays = [shipper._backoff(attempt, None) for attempt in range(10) for _ in range(20)]
    assert all(0 <= d <= 8 for d in delays)
    assert max(delays[:20]) <= 1  # attempt 0: up to the initial backoff
    assert min(shipper._backoff(0, 30.0) for _ in range(20)) >= 30.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 0 <= (parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") or 0) <= 1


def test_the_cursor_moves_only_after_confirmation_and_a_restart_resumes(ledger: Ledger) -> None:
    fill_ledger(ledger, 10)
    first = ScriptedSink(batch_max_events=5)
    run(ledger, first, until_seq=4)
    fill_ledger(ledger, 2)

    async def unconfirmed() -> int:
        state = SinkState(ledger.path)
        sink = ScriptedSink(batch_max_events=5)
        sink.script = [Outcome.retry("down")] * 1000
        shipper = Shipper(sink, state)
        task = asyncio.create_task(shipper.run())
        await asyncio.sleep(0.3)
        shipper.stop(0)
        with pytest.raises(Stopped):
            await asyncio.wait_for(task, 5)
        return state.cursor("scripted")

    before = SinkState(ledger.path).cursor("scripted")
    assert asyncio.run(unconfirmed()) == before  # nothing confirmed, nothing advanced
    second = ScriptedSink(batch_max_events=5)
    run(ledger, second)
    after = [e["task_context"] for e in ledger.iter_events() if e["seq"] > before]
    assert second.received == after == ["task-0", "task-1"]  # the two appended later, once each


def test_shutdown_flushes_a_partial_batch_at_once(ledger: Ledger) -> None:
    fill_ledger(ledger, 3)

    async def go() -> list[list[str]]:
        state = SinkState(ledger.path)
        sink = ScriptedSink(flush_seconds=300)
        shipper = Shipper(sink, state)
        task = asyncio.create_task(shipper.run())
        await asyncio.sleep(0.2)
        assert sink.requests == []  # waiting for a full batch or 300 s
        shipper.stop(asyncio.get_running_loop().time() + 5)
        await asyncio.wait_for(task, 5)
        return sink.requests

    assert asyncio.run(go()) == [["task-0", "task-1", "task-2"]]


def test_sink_state_leaves_the_chain_and_its_triggers_intact(ledger: Ledger) -> None:
    fill_ledger(ledger, 5)
    run(ledger, ScriptedSink(bad=frozenset({"task-2"})))
    fill_ledger(ledger, 2)  # the ledger writer still appends next to the sink state's connection
    assert verify_ledger(ledger.path).ok
    with sqlite3.connect(ledger.path) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = 2")


def test_replay_resends_dead_letters_and_marks_them(ledger: Ledger) -> None:
    fill_ledger(ledger, 4)
    _, state = run(ledger, ScriptedSink(bad=frozenset({"task-1"})))
    letters = state.dead_letters("scripted")
    assert [d.seq for d in letters] == [1]

    async def replay(bad: frozenset[str]) -> tuple[list[int], list[int]]:
        sink = ScriptedSink(bad=bad)
        return await Shipper(sink, state).replay(state.events_at([1]))

    assert asyncio.run(replay(frozenset({"task-1"}))) == ([], [1])
    assert state.dead_letters("scripted")[0].attempts == 2
    assert asyncio.run(replay(frozenset())) == ([1], [])
    assert state.dead_letters("scripted") == []
    assert len(state.dead_letters("scripted", pending_only=False)) == 1


def test_replay_parks_an_oversized_event_again_instead_of_sending_it(ledger: Ledger) -> None:
    fill_ledger(ledger, 3)
    state = SinkState(ledger.path)
    state.advance("scripted", 2, [(state.events_at([1])[0][0], "event is too big")])
    sink = ScriptedSink()
    sink.max_record_bytes = 10  # every record is larger

    delivered, rejected = asyncio.run(Shipper(sink, state).replay(state.events_at([1])))
    assert (delivered, rejected, sink.requests) == ([], [1], [])  # never sent, so never truncated
    (letter,) = state.dead_letters("scripted")
    assert letter.attempts == 2 and "over the sink's limit of 10" in letter.reason


def test_a_locked_database_never_blocks_the_event_loop(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving the cursor waits for SQLite's write lock (and fsyncs); the proxy shares the loop."""
    monkeypatch.setattr("tether.sinks.state._BUSY_TIMEOUT_S", 3.0)
    fill_ledger(ledger, 3)

    async def go() -> int:
        state, watcher = SinkState(ledger.path), SinkState(ledger.path, readonly=True)
        sink = ScriptedSink(flush_seconds=0.01)
        shipper = Shipper(sink, state)
        with sqlite3.connect(ledger.path, isolation_level=None) as locker:
            locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            task = asyncio.create_task(shipper.run())
            async with asyncio.timeout(2):
                while not sink.received:
                    await asyncio.sleep(0.01)
            ticks = 0
            for _ in range(5):  # the loop keeps running while the shipper waits for the lock
                await asyncio.sleep(0.01)
                ticks += 1
            assert not task.done() and watcher.cursor("scripted") == -1
            locker.execute("COMMIT")
        async with asyncio.timeout(5):
            while watcher.cursor("scripted") < 2:
                await asyncio.sleep(0.01)
        shipper.stop(0)
        await asyncio.wait_for(task, 5)
        watcher.close()
        return ticks

    assert asyncio.run(go()) == 5


def test_pruning_keeps_the_events_of_pending_dead_letters(ledger: Ledger) -> None:
    """`tether sinks replay` reads a dead letter's event from the local ledger: it must not be pruned."""
    from tether.ledger.archive import shipped_through

    fill_ledger(ledger, 10)
    state = SinkState(ledger.path)
    state.advance("scripted", 9, [(state.events_at([3])[0][0], "refused")])
    state.advance("other", 9)
    assert shipped_through(ledger.path, ["scripted", "other"]) == 2
    assert shipped_through(ledger.path, ["other"]) == 9
    state.mark_replayed("scripted", [3])
    assert shipped_through(ledger.path, ["scripted", "other"]) == 9


def test_a_replay_cut_short_by_its_deadline_reports_what_it_sent(ledger: Ledger) -> None:
    fill_ledger(ledger, 3)
    state = SinkState(ledger.path)
    events = state.events_at([0, 1])
    state.advance("scripted", 2, [(event, "refused") for event, _ in events])
    sink = ScriptedSink(backoff_initial_seconds=0.01, backoff_max_seconds=0.02)
    sink.script = [Outcome.ok(), *[Outcome.retry("down")] * 1000]

    async def go() -> Stopped:
        shipper = Shipper(sink, state)
        shipper.stop(time.monotonic() + 0.3)
        with pytest.raises(Stopped) as info:
            await shipper.replay(events)
        return info.value

    stopped = asyncio.run(go())
    assert (stopped.delivered, stopped.rejected) == ((0,), ())
    assert [d.seq for d in state.dead_letters("scripted")] == [1]
