"""Signed checkpoints (DESIGN.md "Ledger hashing (contract)").

A checkpoint is a C2SP signed note whose text is the tlog-checkpoint body

    tether/<chain_id>
    <size>
    <base64 of hash_(size-1)>

signed with the ledger's Ed25519 key named `tether/<chain_id>`. It is recorded as a `ledger.checkpoint`
event built by the ledger's writer at its own position, so the checkpoint event at seq `c` always covers
exactly the events before it: its size is `c`. A verifier relies on that: a checkpoint whose size is not
its own seq is an old one replayed. `detail` holds the note and, for readers, what it says:

    {"note": "...", "size": c, "root": "<hex hash_(c-1)>", "key_id": "<hex>", "next_key": "<vkey>"|absent}

`next_key` names the key that signs the checkpoints after a key rotation (see `rotate_key`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .chain import GENESIS
from .events import new_event
from .record import decode_body
from .signing import (
    Signer,
    SigningKeyError,
    Verifier,
    load_or_create_signer,
    parse_verifier,
    write_private_file,
)
from .store import Ledger, LedgerError

log = logging.getLogger("tether.ledger")

CHECKPOINT_EVENT = "ledger.checkpoint"
DEFAULT_KEY_FILE = "ledger-signing.key"  # in the state dir, beside the default ledger.db
# As a literal, so SQLite uses the partial index `events_checkpoints` (store.py).
IS_CHECKPOINT = "event_type = 'ledger.checkpoint'"


def origin(chain_id: str) -> str:
    """The checkpoint origin line and signing key name of a chain."""
    return f"tether/{chain_id}"


def checkpoint_text(chain_id: str, size: int, root: bytes) -> str:
    return f"{origin(chain_id)}\n{size}\n{base64.b64encode(root).decode()}\n"


class CheckpointError(ValueError):
    """A checkpoint event or note that is malformed."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as found in a ledger, a digest export or a witness file (signature not yet checked)."""

    seq: int  # seq of the ledger.checkpoint event that carries it
    timestamp: str
    note: str
    size: int
    root: bytes
    next_key: str | None
    event: dict[str, Any]


def parse_text(text: str, chain_id: str) -> tuple[int, bytes]:
    """(size, root) of a checkpoint text; CheckpointError unless it is a tlog-checkpoint of `chain_id`."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise CheckpointError("checkpoint text must be exactly origin, size and hash lines")
    if lines[0] != origin(chain_id):
        raise CheckpointError(f"checkpoint origin {lines[0][:120]!r} is not {origin(chain_id)!r}")
    if not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise CheckpointError("checkpoint size is not a decimal number")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        root = b""
    if len(root) != 32:
        raise CheckpointError("checkpoint hash is not base64 of 32 bytes")
    return int(lines[1]), root


def from_event(event: dict[str, Any], chain_id: str) -> Checkpoint:
    """The checkpoint a `ledger.checkpoint` event carries; CheckpointError if malformed."""
    detail = event.get("detail")
    if event.get("event_type") != CHECKPOINT_EVENT or not isinstance(detail, dict):
        raise CheckpointError("not a ledger.checkpoint event")
    note, seq, next_key = detail.get("note"), event.get("seq"), detail.get("next_key")
    if not isinstance(note, str) or type(seq) is not int or not isinstance(event.get("timestamp"), str):
        raise CheckpointError("checkpoint event without note, seq or timestamp")
    if event.get("chain_id") != chain_id:
        raise CheckpointError(f"checkpoint of chain {event.get('chain_id')!r}, not {chain_id!r}")
    if next_key is not None and not isinstance(next_key, str):
        raise CheckpointError("next_key must be a verifier key string")
    cut = note.rfind("\n\n")
    size, root = parse_text(note[: cut + 1] if cut >= 0 else note, chain_id)
    return Checkpoint(seq, event["timestamp"], note, size, root, next_key, event)


def checkpoint_event(
    signer: Signer, chain_id: str, size: int, root: bytes, next_key: str | None
) -> dict[str, Any]:
    """A `ledger.checkpoint` event for the head (size, root), signed by `signer`."""
    detail: dict[str, Any] = {
        "note": signer.sign(checkpoint_text(chain_id, size, root)),
        "size": size,
        "root": root.hex(),
        "key_id": signer.key_id.hex(),
    }
    if next_key is not None:
        detail["next_key"] = next_key
    return new_event(CHECKPOINT_EVENT, detail=detail)


def anchor(ledger: Ledger, first_seq: int) -> tuple[int, bytes]:
    """(seq, signed previous hash) of the last well-formed checkpoint at or before `first_seq`."""
    sql = f"SELECT body FROM events WHERE {IS_CHECKPOINT} AND seq <= ? ORDER BY seq DESC LIMIT 20"
    for (body,) in ledger._read(sql, (first_seq,)):
        try:
            cp = from_event(decode_body(body), ledger.chain_id)
        except (ValueError, CheckpointError):
            continue
        return cp.seq, cp.root
    return 0, GENESIS


def closing_checkpoint(ledger: Ledger, last_seq: int) -> int | None:
    found = ledger._read_one(f"SELECT min(seq) FROM events WHERE {IS_CHECKPOINT} AND seq > ?", (last_seq,))
    return None if found is None or found[0] is None else int(found[0])


class KeySource:
    """The ledger's signing key from its file, re-read when the file changes (key rotation while running)."""

    def __init__(self, path: Path, chain_id: str, *, create: bool) -> None:
        self.path = path
        self.name = origin(chain_id)
        self._stamp: tuple[int, int, int] | None = None
        self._signer = load_or_create_signer(path, self.name, create=create)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def current(self) -> Signer:
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            try:
                self._signer = load_or_create_signer(self.path, self.name, create=False)
                self._stamp = stamp
                log.info("ledger signing key reloaded: %s", self._signer.verifier.encode())
            except SigningKeyError as exc:
                log.error(
                    "ledger signing key %s changed but cannot be used, keeping the old one: %s",
                    self.path,
                    exc,
                )
        return self._signer


def local_verifiers(path: Path, chain_id: str) -> list[Verifier]:
    """The verifier keys of the key file at `path` and of the keys it replaced (`rotate_key` keeps them
    beside it as `<name>.<key id>.retired`): what `tether verify` trusts on the host that signs."""
    found = [load_or_create_signer(path, origin(chain_id), create=False).verifier]
    for retired in sorted(path.parent.glob(f"{path.name}.*.retired")):
        found.append(load_or_create_signer(retired, origin(chain_id), create=False).verifier)
    return found


class Witness(Protocol):
    """Somewhere outside the ledger that keeps a copy of every checkpoint."""

    def submit(self, event: dict[str, Any]) -> None:
        """Hand over a checkpoint event; must not block (delivery happens in the background)."""

    async def aclose(self) -> None:
        """Deliver what is pending (bounded time), then stop."""


@dataclass(frozen=True)
class CheckpointSchedule:
    every_events: int = 1000
    every_seconds: float = 60.0
    idle_seconds: float = 5.0


class Checkpointer:
    """Writes signed checkpoints: after `every_events` new events, every `every_seconds` (also when nothing
    happens: each checkpoint then covers the previous one, so a witness sees the ledger alive and whole),
    `idle_seconds` after traffic stops, and a last one on close. Each goes to every witness."""

    POLL_SECONDS = 0.05

    def __init__(
        self,
        ledger: Ledger,
        keys: KeySource,
        schedule: CheckpointSchedule = CheckpointSchedule(),
        witnesses: Sequence[Witness] = (),
    ) -> None:
        self.ledger = ledger
        self.keys = keys
        self.schedule = schedule
        self.witnesses = list(witnesses)
        self.covered = -1  # size covered by the last checkpoint written here (-1: none yet)

    def _build(self, next_key: str | None) -> Any:
        signer = self.keys.current()
        chain_id = self.ledger.chain_id

        def build(size: int, root: bytes) -> dict[str, Any]:
            return checkpoint_event(signer, chain_id, size, root, next_key)

        return build

    def _written(self, event: dict[str, Any]) -> dict[str, Any]:
        self.covered = event["seq"]
        for witness in self.witnesses:
            witness.submit(event)
        return event

    async def checkpoint(self, next_key: str | None = None) -> dict[str, Any]:
        """Write a checkpoint over everything committed so far; returns its event."""
        return self._written(await self.ledger.append_at_head(self._build(next_key)))

    def checkpoint_sync(self, next_key: str | None = None) -> dict[str, Any]:
        return self._written(self.ledger.append_at_head_sync(self._build(next_key)))

    def _due(self, size: int, since_checkpoint: float, quiet: float) -> bool:
        fresh = size - self.covered - 1  # events since the last checkpoint, not counting its own event
        schedule = self.schedule
        return (
            fresh >= schedule.every_events
            or since_checkpoint >= schedule.every_seconds
            or (fresh > 0 and quiet >= schedule.idle_seconds)
        )

    async def run(self) -> None:
        """Checkpoint on schedule until cancelled. A failed checkpoint is logged and retried."""
        last_checkpoint = last_change = time.monotonic()
        last_size = self.ledger.size
        while True:
            await asyncio.sleep(self.POLL_SECONDS)
            now, size = time.monotonic(), self.ledger.size
            if size != last_size:
                last_size, last_change = size, now
            if not self._due(size, now - last_checkpoint, now - last_change):
                continue
            try:
                await self.checkpoint()
            except LedgerError as exc:
                log.error("could not write a ledger checkpoint: %s", exc)
            last_checkpoint = time.monotonic()
            last_size = self.ledger.size

    async def aclose(self) -> None:
        """The final checkpoint, then flush the witnesses."""
        try:
            await self.checkpoint()
        except LedgerError as exc:
            log.error("could not write the final ledger checkpoint: %s", exc)
        for witness in self.witnesses:
            await witness.aclose()


def rotate_key(ledger: Ledger, keys: KeySource, witnesses: Sequence[Witness] = ()) -> tuple[str, str]:
    """Replace the signing key: two checkpoints under the old key name the new key (the second covers the
    first, so the announcement itself is signed), then the new key replaces the key file (the old one is
    kept beside it as `<file>.<old key id>.retired`). Returns (old, new) verifier keys."""
    old = keys.current()
    new = Signer.generate(old.name)
    next_key = new.verifier.encode()
    parse_verifier(next_key)  # our own output must be readable by verifiers
    checkpointer = Checkpointer(ledger, keys, witnesses=witnesses)
    checkpointer.checkpoint_sync(next_key)
    checkpointer.checkpoint_sync(next_key)
    write_private_file(
        keys.path.with_name(f"{keys.path.name}.{old.key_id.hex()}.retired"), old.encode() + "\n"
    )
    write_private_file(keys.path, new.encode() + "\n")
    keys.current()
    return old.verifier.encode(), next_key
