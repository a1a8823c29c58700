"""`tether export events|digests`: JSON Lines on a text stream.

Both exports cover a contiguous seq range (every event from the first at or after `since` to the
last at or before `until`), so an auditor can recompute every hash of the range.

- events: each stored event as stored (canonical JSON including chain_id, seq, prev_hash and hash);
- digests: `{"seq": n, "timestamp": "...", "leaf": "<hex>"}` per event (DESIGN.md): enough, with the
  signed checkpoints around the range, to recompute the chain without seeing any event. The file starts
  with one header line `{"export": {"chain_id", "from", "to", "first_seq", "last_seq", "ledger_size"}}`,
  then the checkpoints of the exported span as `{"checkpoint": <ledger.checkpoint event>}` lines, then
  the digest lines. The span is widened to the checkpoints that bracket the range: it starts at the
  last checkpoint at or before the range (or seq 0) and ends at the first checkpoint after it (or the
  end of the ledger), so `tether verify --digests` can check every hash against a signed one.
  The `seq` of a digest line is the seq the event claims (part of its leaf), so a moved event shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from .chain import entry_bytes, leaf_hash
from .checkpoint import IS_CHECKPOINT, CheckpointError, anchor, closing_checkpoint, from_event
from .record import StoredRow, decode_body
from .store import Ledger


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


def _digest_of(row: StoredRow) -> str:
    """The digest line of a stored row. A row that is not a readable event (tampered) still gets one, over
    its raw bytes, so the export goes on and verification shows where the chain breaks."""
    try:
        event = decode_body(row.body)
        leaf = leaf_hash(entry_bytes(event))
        timestamp, seq = event["timestamp"], event["seq"]
        if type(seq) is int and isinstance(timestamp, str):
            return digest_line(seq, timestamp, leaf)
    except (ValueError, KeyError):
        pass
    return digest_line(row.seq, row.timestamp, leaf_hash(row.body.encode()))


def export_digests(
    source: Ledger | Path | str, out: TextIO, *, since: str | None = None, until: str | None = None
) -> int:
    """Write the header, the checkpoints and one digest line per event of the span bracketing `since` to
    `until` (see the module docstring) of `source` to `out`; returns the number of digest lines."""
    ledger = source if isinstance(source, Ledger) else Ledger.open_readonly(source)
    size = ledger.head()[0] + 1
    bounds = ledger.seq_range(since=since, until=until)  # after pruning, the first stored seq is > 0
    first, last = size, size - 1  # nothing to export
    if bounds is not None:
        first = anchor(ledger, bounds[0])[0]
        closing = closing_checkpoint(ledger, bounds[1])
        last = closing if closing is not None else size - 1
    header = {
        "chain_id": ledger.chain_id,
        "from": since,
        "to": until,
        "first_seq": first,
        "last_seq": last,
        "ledger_size": size,
    }
    out.write(json.dumps({"export": header}) + "\n")
    if first > last:
        return 0
    checkpoints = ledger._read(
        f"SELECT body FROM events WHERE {IS_CHECKPOINT} AND seq BETWEEN ? AND ? ORDER BY seq", (first, last)
    )
    for (body,) in checkpoints:
        try:
            from_event(decode_body(body), ledger.chain_id)
        except (ValueError, CheckpointError):
            continue  # not a checkpoint after all (tampered): its digest line shows what is stored there
        out.write(f'{{"checkpoint":{body}}}\n')
    count = 0
    for row in ledger.iter_rows(first_seq=first, last_seq=last):
        out.write(_digest_of(row) + "\n")
        count += 1
    return count
