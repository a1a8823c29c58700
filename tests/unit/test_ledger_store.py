"""The SQLite ledger: durable appends, no gaps, append-only, failures that fail loudly and recover."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tether.ledger.chain import GENESIS, chain_hash, entry_bytes, leaf_hash
from tether.ledger.events import Event, new_event
from tether.ledger.store import InvalidEvent, Ledger, LedgerError
from tether.ledger.verify import verify_ledger

REPO = Path(__file__).resolve().parents[2]


def api_event(**fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "agent_name": "pr-review-agent",
        "run_id": "run_1",
        "provider": "github",
        "request": {"method": "GET", "host": "api.github.com", "path": "/repos/acme/api/pulls/7", "bytes": 0},
        "decision": {"action": "allow"},
    }
    return new_event("api.request", **(defaults | fields))


def run_child(tmp_path: Path, code: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_append_returns_the_durable_event(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sub" / "ledger.db"
    with Ledger(path) as ledger:
        assert ledger.head() == (-1, GENESIS)
        event = api_event(response={"status": 200, "bytes": 5123, "duration_ms": 84.1})
        committed = ledger.append_sync(event)
        assert committed["seq"] == 0
        assert committed["chain_id"] == ledger.chain_id and ledger.chain_id.startswith("chn_")
        assert committed["prev_hash"] == GENESIS.hex()
        leaf = leaf_hash(entry_bytes(committed))
        assert committed["hash"] == chain_hash(GENESIS, leaf).hex()
        assert {k: v for k, v in committed.items() if k not in ("chain_id", "seq", "prev_hash", "hash")} == {
            k: v for k, v in event.items() if k not in ("chain_id", "seq", "prev_hash", "hash")
        }
        Event.model_validate(committed)
        assert event["seq"] is None  # the caller's dict is not changed
        assert list(ledger.iter_events()) == [committed]
        assert ledger.head() == (0, bytes.fromhex(committed["hash"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_appends_get_every_seq_once(tmp_path: Path) -> None:
    async def main(ledger: Ledger) -> list[int]:
        async def worker(task: int) -> list[int]:
            return [(await ledger.append(api_event(run_id=f"run_{task}")))["seq"] for _ in range(40)]

        results = await asyncio.gather(*(worker(task) for task in range(50)))
        return [seq for result in results for seq in result]

    with Ledger(tmp_path / "ledger.db") as ledger:
        seqs = asyncio.run(main(ledger))
        assert sorted(seqs) == list(range(2000))
        assert [event["seq"] for event in ledger.iter_events()] == list(range(2000))
        assert ledger.stats().events_written == 2000
    result = verify_ledger(tmp_path / "ledger.db")
    assert result.ok and result.events_checked == 2000


@pytest.mark.timeout(60)
def test_waiting_appends_share_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"

    async def main(ledger: Ledger) -> None:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer's next transaction waits for this lock
        tasks = [asyncio.create_task(ledger.append(api_event())) for _ in range(100)]
        await asyncio.sleep(0)  # every task queues its event
        blocker.execute("ROLLBACK")
        blocker.close()
        await asyncio.gather(*tasks)

    with Ledger(path) as ledger:
        asyncio.run(main(ledger))
        assert ledger.stats().events_written == 100
        assert ledger.stats().commits <= 2  # the one already started, and one for all the others


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET body = 'x' WHERE seq = 0",
        "DELETE FROM events WHERE seq = 1",
        "DELETE FROM events",
        "UPDATE meta SET value = 'chn_other' WHERE key = 'chain_id'",
        "DELETE FROM meta",
    ],
)
def test_triggers_refuse_update_and_delete(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append_sync(api_event())
        ledger.append_sync(api_event())
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(statement)
    conn.close()
    assert verify_ledger(path).ok


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        chain_id = ledger.chain_id
        last = [ledger.append_sync(api_event()) for _ in range(3)][-1]
    with Ledger(path) as ledger:
        assert ledger.chain_id == chain_id
        assert ledger.head() == (2, bytes.fromhex(last["hash"]))
        following = ledger.append_sync(api_event())
    assert (following["seq"], following["prev_hash"]) == (3, last["hash"])
    assert verify_ledger(path).events_checked == 4


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    # A second process on the same file must not fork the chain: each writer re-reads a moved head.
    path = tmp_path / "ledger.db"
    with Ledger(path) as first, Ledger(path) as second:
        seqs = [writer.append_sync(api_event())["seq"] for writer in (first, second, first, first, second)]
    assert seqs == [0, 1, 2, 3, 4]
    assert verify_ledger(path).events_checked == 5


def test_chain_id_is_kept_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path, chain_id="chn_demo") as ledger:
        assert ledger.chain_id == "chn_demo"
    with pytest.raises(LedgerError, match="holds chain chn_demo, not chn_other"):
        Ledger(path, chain_id="chn_other")
    with pytest.raises(ValueError, match="chain_id must match"):
        Ledger(tmp_path / "other.db", chain_id="chn bad\n")


@pytest.mark.timeout(60)  # a failing ledger must answer, never hang
def test_read_only_file_fails_appends_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append_sync(api_event())
        path.chmod(0o400)
        with pytest.raises(LedgerError, match=r"ledger write failed: .*read-only"):
            ledger.append_sync(api_event())

        async def append_async() -> None:
            await ledger.append(api_event())

        with pytest.raises(LedgerError, match="read-only"):
            asyncio.run(append_async())
        path.chmod(0o600)
        assert ledger.append_sync(api_event())["seq"] == 1
        assert ledger.stats().failed_batches == 2
    assert verify_ledger(path).events_checked == 2


@pytest.mark.timeout(60)  # a failing ledger must answer, never hang
def test_deleted_file_fails_appends(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append_sync(api_event())
        path.unlink()
        with pytest.raises(LedgerError, match="is missing"):
            ledger.append_sync(api_event())
        assert not path.exists()  # not silently recreated as a new chain


FULL_DISK_CHILD = """
    import json, os, resource, sys
    from tether.ledger import Ledger, LedgerError, new_event, verify_ledger

    path = sys.argv[1]
    ledger = Ledger(path)
    ledger.append_sync(new_event("run.started", run_id="run_1"))
    # The file size limit stands in for a full disk: writes beyond it fail with EFBIG.
    limit = os.path.getsize(path + "-wal") + 8192
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    error = None
    for _ in range(1000):
        try:
            ledger.append_sync(new_event("api.request", detail={"pad": "x" * 4000}))
        except LedgerError as exc:
            error = str(exc)
            break
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    head_before = ledger.head()[0]
    after = ledger.append_sync(new_event("run.ended", run_id="run_1"))
    ledger.close()
    print(json.dumps({"error": error, "head_before": head_before, "seq_after": after["seq"],
                      "verified": verify_ledger(path).events_checked}))
"""


@pytest.mark.timeout(60)  # a failing ledger must answer, never hang
def test_full_disk_fails_appends_then_recovers(tmp_path: Path) -> None:
    child = run_child(tmp_path, FULL_DISK_CHILD, str(tmp_path / "ledger.db"))
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["error"] and report["error"].startswith("ledger write failed:")
    assert report["seq_after"] == report["head_before"] + 1  # no seq lost to the failed batch
    assert report["verified"] == report["seq_after"] + 1


@pytest.mark.timeout(60)
def test_an_event_without_canonical_form_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"

    async def main(ledger: Ledger) -> list[Any]:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # hold the writer so all three land in one batch
        first = asyncio.create_task(ledger.append(api_event()))
        await asyncio.sleep(0)
        events = [api_event(), api_event(detail={"ratio": float("nan")}), api_event()]
        tasks = [asyncio.create_task(ledger.append(event)) for event in events]
        await asyncio.sleep(0)
        blocker.execute("ROLLBACK")
        blocker.close()
        return list(await asyncio.gather(first, *tasks, return_exceptions=True))

    with Ledger(path) as ledger:
        first, before, bad, after = asyncio.run(main(ledger))
        assert isinstance(bad, InvalidEvent) and isinstance(bad, LedgerError) and isinstance(bad, ValueError)
        assert "has no canonical JSON form" in str(bad)
        assert (first["seq"], before["seq"], after["seq"]) == (0, 1, 2)  # the bad one used no seq
    assert verify_ledger(path).events_checked == 3


def test_append_rejects_what_is_not_an_event(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        with pytest.raises(InvalidEvent, match="build events with new_event"):
            ledger.append_sync({"event_type": "api.request"})
        with pytest.raises(InvalidEvent, match="set by the ledger"):
            ledger.append_sync(api_event() | {"seq": 7})
        assert ledger.head()[0] == -1


def test_close_writes_what_is_queued_then_refuses(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")

    async def main() -> list[int]:
        tasks = [asyncio.create_task(ledger.append(api_event())) for _ in range(20)]
        await asyncio.sleep(0)  # queued
        ledger.close()
        return [(await task)["seq"] for task in tasks]

    assert asyncio.run(main()) == list(range(20))
    with pytest.raises(LedgerError, match="is closed"):
        ledger.append_sync(api_event())
    ledger.close()  # idempotent


def test_open_readonly_reads_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at"):
        Ledger.open_readonly(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()

    path = tmp_path / "ledger.db"
    with Ledger(path) as writer:
        writer.append_sync(api_event())
        reader = Ledger.open_readonly(path)
        assert reader.chain_id == writer.chain_id
        writer.append_sync(api_event())  # readers see commits made while they are open
        assert [event["seq"] for event in reader.iter_events()] == [0, 1]
        with pytest.raises(LedgerError, match="opened read-only"):
            reader.append_sync(api_event())


def test_iter_events_filters(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        for agent, run, provider, when in [
            ("a", "run_1", "github", "2025-02-03T10:00:00.000Z"),
            ("a", "run_2", "slack", "2025-02-03T11:00:00.000Z"),
            ("b", "run_3", "github", "2025-02-03T12:00:00.000Z"),
        ]:
            ledger.append_sync(api_event(agent_name=agent, run_id=run, provider=provider, timestamp=when))
            ledger.append_sync(new_event("run.ended", agent_name=agent, run_id=run, timestamp=when))

        def seqs(**filters: Any) -> list[int]:
            return [event["seq"] for event in ledger.iter_events(**filters)]

        assert seqs() == [0, 1, 2, 3, 4, 5]
        assert seqs(agent="a") == [0, 1, 2, 3]
        assert seqs(run_id="run_2") == [2, 3]
        assert seqs(provider="github") == [0, 4]
        assert seqs(event_types={"run.ended"}) == [1, 3, 5]
        assert seqs(since="2025-02-03T11:00:00Z") == [2, 3, 4, 5]
        assert seqs(until="2025-02-03T11:00:00Z") == [0, 1, 2, 3]
        assert seqs(since="2025-02-03T10:30:00+00:00", until="2025-02-03T11:30:00Z", agent="a") == [2, 3]
        with pytest.raises(ValueError, match="ISO 8601"):
            seqs(since="last tuesday")


def test_open_refuses_a_head_that_does_not_chain(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        for _ in range(3):
            ledger.append_sync(api_event())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    body = conn.execute("SELECT body FROM events WHERE seq = 2").fetchone()[0]
    conn.execute("UPDATE events SET body = ? WHERE seq = 2", (body.replace("pulls/7", "pulls/8"),))
    conn.close()
    with pytest.raises(LedgerError, match=r"last event \(seq 2\) does not chain \(modified"):
        Ledger(path)


KILL_CHILD = """
    import asyncio, sys
    from tether.ledger import Ledger, new_event

    async def main() -> None:
        ledger = Ledger(sys.argv[1])

        async def worker(task: int) -> None:
            for _ in range(2000):  # bounded; the parent kills us long before
                event = await ledger.append(new_event("api.request", run_id=f"run_{task}"))
                print(event["seq"], flush=True)

        await asyncio.gather(*(worker(task) for task in range(8)))

    asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_kill_9_while_appending_then_reopen_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    child = run_child(tmp_path, KILL_CHILD, str(path))
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 300:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    acknowledged += [int(line) for line in rest.split()]
    assert child.returncode == -signal.SIGKILL

    result = verify_ledger(path)
    assert result.ok, result
    with Ledger(path) as ledger:
        stored = {event["seq"] for event in ledger.iter_events()}
        assert set(acknowledged) <= stored  # every acknowledged append survived
        assert ledger.append_sync(api_event())["seq"] == max(stored) + 1
    assert verify_ledger(path).ok
