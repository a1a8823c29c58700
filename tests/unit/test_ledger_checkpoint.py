"""Checkpoints: the contract format, the schedule, key rotation and the witnesses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tether.ledger.checkpoint import (
    Checkpointer,
    CheckpointSchedule,
    KeySource,
    checkpoint_text,
    from_event,
    local_verifiers,
    rotate_key,
)
from tether.ledger.events import new_event
from tether.ledger.signing import open_note
from tether.ledger.store import Ledger
from tether.ledger.verify import verify_ledger
from tether.ledger.witness import FileWitness, UrlWitness, read_witness_file, repair_torn_tail


def request() -> dict[str, Any]:
    return new_event("api.request", run_id="run_1")


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def test_checkpoint_is_the_contract_note_over_the_head(ledger: Ledger, tmp_path: Path) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    heads = [ledger.append_sync(request()) for _ in range(3)]
    event = Checkpointer(ledger, keys).checkpoint_sync()
    assert (event["event_type"], event["seq"]) == ("ledger.checkpoint", 3)
    note = event["detail"]["note"]
    root = base64.b64encode(bytes.fromhex(heads[-1]["hash"])).decode()
    assert note.startswith(f"tether/{ledger.chain_id}\n3\n{root}\n\n\u2014 tether/{ledger.chain_id} ")
    assert (
        checkpoint_text(ledger.chain_id, 3, bytes.fromhex(heads[-1]["hash"])) == note.split("\n\n")[0] + "\n"
    )
    _, signer = open_note(note, [keys.current().verifier])
    assert signer.key_id.hex() == event["detail"]["key_id"]
    assert (
        signer.key_id
        == hashlib.sha256(f"tether/{ledger.chain_id}\n".encode() + b"\x01" + signer.public).digest()[:4]
    )
    checkpoint = from_event(event, ledger.chain_id)
    assert (checkpoint.size, checkpoint.root.hex()) == (3, heads[-1]["hash"])


def test_empty_ledger_checkpoint_covers_nothing(ledger: Ledger, tmp_path: Path) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    event = Checkpointer(ledger, keys).checkpoint_sync()
    assert event["detail"]["size"] == 0 and event["detail"]["root"] == "00" * 32
    assert verify_ledger(ledger.path, keys=[keys.current().verifier]).checkpoints_checked == 1


def test_schedule_by_count_when_idle_and_on_close(ledger: Ledger, tmp_path: Path) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    witness = FileWitness(tmp_path / "witness.jsonl")
    schedule = CheckpointSchedule(every_events=10, every_seconds=3600, idle_seconds=0.3)

    def checkpoint_sizes() -> list[int]:
        return [e["detail"]["size"] for e in ledger.iter_events(event_types=["ledger.checkpoint"])]

    async def until_checkpoints(count: int) -> None:
        while len(checkpoint_sizes()) < count:
            await asyncio.sleep(0.02)

    async def main() -> None:
        by_count = Checkpointer(ledger, keys, replace(schedule, idle_seconds=3600), [witness])
        task = asyncio.create_task(by_count.run())
        for _ in range(10):
            await ledger.append(request())
        await asyncio.wait_for(until_checkpoints(1), 120)
        task.cancel()
        for _ in range(5):
            await ledger.append(request())
        when_idle = Checkpointer(ledger, keys, replace(schedule, every_events=1000), [witness])
        task = asyncio.create_task(when_idle.run())
        await asyncio.wait_for(until_checkpoints(2), 120)
        task.cancel()
        await when_idle.aclose()  # the last one

    asyncio.run(main())
    assert checkpoint_sizes() == [10, 16, 17]
    witnessed = read_witness_file(tmp_path / "witness.jsonl", ledger.chain_id)
    assert [cp.size for cp in witnessed] == [10, 16, 17]
    result = verify_ledger(ledger.path, keys=[keys.current().verifier], witness=witnessed)
    assert result.ok and (result.checkpoints_checked, result.witness_checked) == (3, 3)


def test_heartbeat_checkpoints_when_nothing_happens(ledger: Ledger, tmp_path: Path) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    schedule = CheckpointSchedule(every_events=1000, every_seconds=0.2, idle_seconds=3600)

    def sizes() -> list[int]:
        return [e["detail"]["size"] for e in ledger.iter_events(event_types=["ledger.checkpoint"])]

    async def main() -> None:
        task = asyncio.create_task(Checkpointer(ledger, keys, schedule).run())
        while len(sizes()) < 3:
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 120))
    assert sizes()[:3] == [0, 1, 2]  # no events: each checkpoint covers the one before


def test_key_rotation_carries_trust(ledger: Ledger, tmp_path: Path) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    old_key = keys.current().verifier
    checkpointer = Checkpointer(ledger, keys)
    ledger.append_sync(request())
    checkpointer.checkpoint_sync()
    old, new = rotate_key(ledger, keys)
    assert old == old_key.encode() and keys.current().verifier.encode() == new
    assert (tmp_path / f"key.{old_key.key_id.hex()}.retired").is_file()
    ledger.append_sync(request())
    checkpointer.checkpoint_sync()  # signed by the new key
    result = verify_ledger(ledger.path, keys=[old_key])
    assert result.ok and result.checkpoints_checked == 4, result
    assert result.keys == sorted([old, new])
    # A verifier that trusts only the new key cannot check the old key's checkpoints ...
    assert verify_ledger(ledger.path, keys=[keys.current().verifier]).reason == "unknown_key"
    # ... the host's own verification trusts the current key and the ones it replaced.
    local = local_verifiers(tmp_path / "key", ledger.chain_id)
    assert [key.encode() for key in local] == [new, old]
    assert verify_ledger(ledger.path, keys=local).ok


def test_key_source_reloads_a_replaced_key_file(ledger: Ledger, tmp_path: Path) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    other = KeySource(tmp_path / "key2", ledger.chain_id, create=True)
    (tmp_path / "key2").replace(tmp_path / "key")
    assert keys.current().verifier == other.current().verifier


def test_torn_witness_line_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "witness.jsonl"
    path.write_text('{"checkpoint": {}}\n{"checkpo')
    assert repair_torn_tail(path) == len('{"checkpo')
    assert path.read_text() == '{"checkpoint": {}}\n'
    assert repair_torn_tail(path) == 0
    path.write_text("torn")
    FileWitness(path)
    assert path.read_text() == ""


def test_url_witness_retries_until_delivered(
    ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = KeySource(tmp_path / "key", ledger.chain_id, create=True)
    received: list[dict[str, Any]] = []
    attempts = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            return web.Response(status=503)
        received.append(await request.json())
        return web.Response(status=204)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/witness", receive)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        witness = UrlWitness(f"http://user:s3cr3t@127.0.0.1:{port}/witness?token=s3cr3t")
        checkpointer = Checkpointer(ledger, keys, witnesses=[witness])
        await checkpointer.checkpoint()
        await checkpointer.checkpoint()
        await witness.aclose(grace_seconds=10)
        await runner.cleanup()

    asyncio.run(main())
    assert attempts == 4
    assert "retrying" in caplog.text and "s3cr3t" not in caplog.text  # no credential in the log
    assert [line["checkpoint"]["seq"] for line in received] == [0, 1]
    assert json.dumps(received[0]["checkpoint"]["detail"]["note"]).startswith('"tether/chn_')
