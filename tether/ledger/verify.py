"""Recompute the hash chain from the stored rows and report the first row that breaks it.

Reasons: `gap` (a seq is missing), `bad_json` (a body is not a valid event), `chain_mismatch` (an
event of another chain), `seq_mismatch` (a row holds another seq's event), `modified` (the stored hash
or body is not what the event recomputes to), `broken_link` (prev_hash is not the previous hash),
`column_mismatch` (an indexed column disagrees with the event it was copied from).

Without a range, verification starts at seq 0 from the 32 zero bytes. With a time range it checks
the events in the range and anchors on the stored prev_hash of the first one: that proves the range
is internally intact, not that it belongs to the chain. Deleting the newest events (truncation) or
rewriting a whole suffix consistently cannot be seen from the ledger alone; signed checkpoints held
outside the ledger (a later issue) make both — and range verification — trustworthy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .chain import GENESIS
from .record import BrokenChain, check_row
from .store import Ledger


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    detail: str | None = None
    chain_id: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None  # hex hash of the last verified event

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (for `tether verify --json` and the control API)."""
        return asdict(self)


def verify_ledger(path: Path | str, *, since: str | None = None, until: str | None = None) -> VerifyResult:
    """Verify the ledger at `path` (all of it, or the events from `since` to `until`, inclusive).

    Raises LedgerError if it cannot be read, ValueError for a malformed time.
    """
    ledger = Ledger.open_readonly(path)
    chain_id = ledger.chain_id
    ranged = since is not None or until is not None
    if ranged:
        bounds = ledger.seq_range(since=since, until=until)
        if bounds is None:
            return VerifyResult(ok=True, events_checked=0, chain_id=chain_id)
        first_seq, last_seq = bounds
    else:
        first_seq, last_seq = 0, None
    expected_seq = first_seq
    prev_hash: bytes | None = None if ranged else GENESIS
    checked = 0
    try:
        for row in ledger.iter_rows(first_seq=first_seq, last_seq=last_seq):
            prev_hash = check_row(row, chain_id=chain_id, expected_seq=expected_seq, prev_hash=prev_hash)
            expected_seq += 1
            checked += 1
    except BrokenChain as broken:
        return VerifyResult(
            ok=False,
            events_checked=checked,
            first_bad_seq=broken.seq,
            reason=broken.reason,
            detail=broken.detail,
            chain_id=chain_id,
        )
    return VerifyResult(
        ok=True,
        events_checked=checked,
        chain_id=chain_id,
        first_seq=first_seq if checked else None,
        last_seq=expected_seq - 1 if checked else None,
        last_hash=prev_hash.hex() if checked and prev_hash is not None else None,
    )
