"""`tether export events|digests`: JSON Lines on a text stream.

Both exports cover a contiguous seq range (every event from the first at or after `since` to the
last at or before `until`), so an auditor can recompute every hash of the range.

- events: each stored event as stored (canonical JSON including chain_id, seq, prev_hash and hash);
- digests: `{"seq": n, "timestamp": "...", "leaf": "<hex>"}` per event (DESIGN.md): enough, with the
  signed checkpoints around the range, to recompute the chain without seeing any event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from .chain import entry_bytes, leaf_hash
from .record import StoredRow, decode_body
from .store import Ledger, LedgerError


def _rows(source: Ledger | Path | str, since: str | None, until: str | None) -> Iterator[StoredRow]:
    ledger = source if isinstance(source, Ledger) else Ledger.open_readonly(source)
    bounds = ledger.seq_range(since=since, until=until)
    if bounds is not None:
        yield from ledger.iter_rows(first_seq=bounds[0], last_seq=bounds[1])


def export_events(
    source: Ledger | Path | str, out: TextIO, *, since: str | None = None, until: str | None = None
) -> int:
    """Write the events from `since` to `until` (inclusive ISO 8601 times) of the ledger (or ledger
    file) `source` to `out`; returns the count. `out` must accept any Unicode (UTF-8)."""
    count = 0
    for row in _rows(source, since, until):
        out.write(row.body + "\n")
        count += 1
    return count


def digest_line(seq: int, timestamp: str, leaf: bytes) -> str:
    return json.dumps({"seq": seq, "timestamp": timestamp, "leaf": leaf.hex()})


def export_digests(
    source: Ledger | Path | str, out: TextIO, *, since: str | None = None, until: str | None = None
) -> int:
    """Write one digest line per event from `since` to `until` of `source` to `out`; returns the count."""
    count = 0
    for row in _rows(source, since, until):
        try:
            event = decode_body(row.body)
            leaf = leaf_hash(entry_bytes(event))
            timestamp = event["timestamp"]
        except (ValueError, KeyError) as exc:
            raise LedgerError(
                f"stored event seq {row.seq} is unreadable ({exc}); run `tether verify`"
            ) from None
        out.write(digest_line(row.seq, timestamp, leaf) + "\n")
        count += 1
    return count
