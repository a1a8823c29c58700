"""Crash safety with checkpoints on: kill -9 a real writer process mid-write, restart, verify."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.unit.test_ledger_store import api_event, run_child
from tether.ledger.checkpoint import Checkpointer, KeySource
from tether.ledger.repair import recover, wal_torn_bytes
from tether.ledger.store import Ledger
from tether.ledger.verify import verify_ledger
from tether.ledger.witness import FileWitness, read_witness_file

WRITER = """
    import asyncio, sys
    from pathlib import Path
    from tether.ledger.checkpoint import Checkpointer, CheckpointSchedule, KeySource
    from tether.ledger.events import new_event
    from tether.ledger.store import Ledger
    from tether.ledger.witness import FileWitness

    async def main(root: Path) -> None:
        ledger = Ledger(root / "ledger.db")
        keys = KeySource(root / "ledger-signing.key", ledger.chain_id, create=True)
        schedule = CheckpointSchedule(every_events=25, every_seconds=0.5, idle_seconds=0.1)
        task = asyncio.create_task(
            Checkpointer(ledger, keys, schedule, [FileWitness(root / "witness.jsonl")]).run()
        )

        async def writer(n: int) -> None:
            while True:
                event = await ledger.append(new_event("api.request", run_id=f"run_{n}"))
                print(event["seq"], flush=True)

        await asyncio.gather(task, *(writer(n) for n in range(8)))

    asyncio.run(main(Path(sys.argv[1])))
"""


def test_kill_9_with_checkpoints_then_restart_and_verify(tmp_path: Path) -> None:
    child = run_child(tmp_path, WRITER, str(tmp_path))
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 400:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    acknowledged += [int(line) for line in rest.split()]
    assert child.returncode == -signal.SIGKILL

    # A torn write at the very end: half a WAL frame, and half a witness line.
    wal = tmp_path / "ledger.db-wal"
    if wal.is_file():
        with open(wal, "ab") as handle:
            handle.write(b"\x00" * 1000)
    with open(tmp_path / "witness.jsonl", "a") as handle:
        handle.write('{"checkpoint": {"event_ty')

    # Restart as `tether run` does: recover, open, checkpoint on.
    assert recover(tmp_path / "ledger.db") == wal.is_file()
    with Ledger(tmp_path / "ledger.db") as ledger:
        stored = {event["seq"] for event in ledger.iter_events()}
        assert set(acknowledged) <= stored  # every acknowledged append survived
        keys = KeySource(tmp_path / "ledger-signing.key", ledger.chain_id, create=False)
        checkpointer = Checkpointer(ledger, keys, witnesses=[FileWitness(tmp_path / "witness.jsonl")])
        assert ledger.append_sync(api_event())["seq"] == max(stored) + 1  # the chain continues
        checkpointer.checkpoint_sync()
        key = keys.current().verifier
    assert wal_torn_bytes(tmp_path / "ledger.db") == 0
    witness = read_witness_file(tmp_path / "witness.jsonl", ledger.chain_id)
    result = verify_ledger(tmp_path / "ledger.db", keys=[key], witness=witness)
    assert result.ok, result
    assert result.checkpoints_checked >= 2 and result.witness_checked >= 2 and result.unsigned_tail == 1


def test_no_wal_or_a_whole_wal_is_not_torn(tmp_path: Path) -> None:
    assert wal_torn_bytes(tmp_path / "ledger.db") == 0
    assert recover(tmp_path / "ledger.db") is False
