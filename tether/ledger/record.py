"""The stored form of an event and the check of one stored row against the chain.

A row's `body` is the event's entry (its JCS bytes without prev_hash and hash) with `"prev_hash"` and
`"hash"` appended as the last two members: valid JSON, cheap to build, and exactly reproducible, so
verification can demand the body byte for byte and not only its meaning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .chain import MAX_SAFE_INT, chain_hash, entry_bytes, leaf_hash
from .events import HEX_HASH_PATTERN

# Columns copied out of the body so timeline queries can use indexes; verification checks they agree.
INDEX_COLUMNS: tuple[str, ...] = (
    "event_id",
    "timestamp",
    "event_type",
    "agent_name",
    "run_id",
    "provider",
    "token_id",
)
_HEX_HASH = re.compile(HEX_HASH_PATTERN)


@dataclass(frozen=True, slots=True)
class StoredRow:
    seq: int
    event_id: str
    timestamp: str
    event_type: str
    agent_name: str | None
    run_id: str | None
    provider: str | None
    token_id: str | None
    body: str


class BrokenChain(Exception):
    """The row at `seq` breaks the chain; `reason` is one of the verify reasons."""

    def __init__(self, seq: int, reason: str, detail: str) -> None:
        super().__init__(f"seq {seq}: {reason}: {detail}")
        self.seq = seq
        self.reason = reason
        self.detail = detail


def encode_body(entry: bytes, prev_hash: bytes, hash_: bytes) -> str:
    return f'{entry.decode()[:-1]},"prev_hash":"{prev_hash.hex()}","hash":"{hash_.hex()}"}}'


def _parse_int(text: str) -> int | float:
    # JCS prints integral floats such as 1e17 as integers; beyond 2**53 they can only have been floats.
    value = int(text)
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else float(text)


def decode_body(body: str) -> dict[str, Any]:
    """The event stored in `body`; ValueError if it is not a JSON object."""
    event = json.loads(body, parse_int=_parse_int)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    return event


def check_row(row: StoredRow, *, chain_id: str, expected_seq: int, prev_hash: bytes | None) -> bytes:
    """Check one row: its place, its body, its own hash and (unless `prev_hash` is None, as for the
    first row of a range) its link to the previous row's hash. Returns the row's hash; raises
    BrokenChain naming the first problem found."""
    seq = row.seq
    if seq != expected_seq:
        raise BrokenChain(expected_seq, "gap", f"seq {expected_seq} is missing (next stored seq is {seq})")
    try:
        event = decode_body(row.body)
    except ValueError as exc:
        raise BrokenChain(seq, "bad_json", f"body is not a JSON object: {exc}") from None
    stored_prev, stored_hash = event.get("prev_hash"), event.get("hash")
    if not (
        isinstance(stored_prev, str)
        and isinstance(stored_hash, str)
        and _HEX_HASH.fullmatch(stored_prev)
        and _HEX_HASH.fullmatch(stored_hash)
        and type(event.get("seq")) is int
    ):
        raise BrokenChain(seq, "bad_json", "seq, prev_hash or hash is missing or malformed")
    if event.get("chain_id") != chain_id:
        detail = f"event belongs to chain {event.get('chain_id')!r}, the ledger is {chain_id!r}"
        raise BrokenChain(seq, "chain_mismatch", detail)
    if event["seq"] != seq:
        raise BrokenChain(seq, "seq_mismatch", f"row {seq} holds the event of seq {event['seq']}")
    try:
        entry = entry_bytes(event)
    except ValueError as exc:
        raise BrokenChain(seq, "bad_json", f"event has no canonical form: {exc}") from None
    prev = bytes.fromhex(stored_prev)
    computed = chain_hash(prev, leaf_hash(entry))
    if computed.hex() != stored_hash:
        raise BrokenChain(seq, "modified", "stored hash differs from the hash recomputed from the event")
    if row.body != encode_body(entry, prev, computed):
        raise BrokenChain(seq, "modified", "stored body is not the canonical form of its event")
    if prev_hash is not None and prev != prev_hash:
        raise BrokenChain(seq, "broken_link", "prev_hash is not the hash of the previous event")
    for column in INDEX_COLUMNS:
        if getattr(row, column) != event.get(column):
            raise BrokenChain(seq, "column_mismatch", f"column {column} disagrees with the stored event")
    return computed
