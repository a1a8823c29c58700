"""`tether verify`: check the ledger (stored events) or an auditor's digest export against the signed
checkpoints, the trusted keys and optionally a witness. See `audit` for the walk and the reasons.

Stored events: every row is checked byte for byte (its body is the canonical form of its event, its hash
recomputes, it links to the previous one, its index columns agree), so a change is found at its seq.
Digest lines: only the leaves are known, so a change is found at the first checkpoint after it; the
result names the seq and time range between the last good checkpoint and that one.

A time range (`since`/`until`) is verified from the last checkpoint at or before its first event (its
signed hash anchors the range) to the first checkpoint after its last event (which proves nothing in
the range changed). Without one before it, the walk starts at seq 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .archive import ArchiveTampered, S3Archive, archived_rows, pruned_through
from .audit import Item, Tampered, VerifyResult, Walk
from .chain import GENESIS
from .checkpoint import (
    DEFAULT_KEY_FILE,
    IS_CHECKPOINT,
    Checkpoint,
    CheckpointError,
    anchor,
    closing_checkpoint,
    from_event,
    local_verifiers,
    origin,
)
from .events import normalize_time
from .record import BrokenChain, StoredRow, check_row, decode_body
from .signing import SigningKeyError, Verifier
from .store import Ledger, LedgerError

Progress = Callable[[int], None]


class DigestFileError(ValueError):
    """A digest export that cannot be verified as given (not a malformed chain: a malformed file)."""


def _stored_item(row: StoredRow, chain_id: str, malformed_checkpoint: str | None) -> Item:
    try:
        event: dict[str, Any] | None = decode_body(row.body)
    except ValueError:
        event = None
    claimed = event.get("seq") if event is not None else None
    timestamp = event.get("timestamp") if event is not None else None

    def check(expected: int, prev: bytes) -> bytes:
        try:
            hash_ = check_row(row, chain_id=chain_id, expected_seq=expected, prev_hash=prev)
        except BrokenChain as broken:
            raise Tampered(
                "modified", broken.seq, f"{broken.reason}: {broken.detail}", row.timestamp, row.timestamp
            ) from None
        if malformed_checkpoint is not None:
            raise Tampered("bad_signature", expected, malformed_checkpoint, row.timestamp, row.timestamp)
        return hash_

    return Item(
        claimed if type(claimed) is int else row.seq,
        timestamp if isinstance(timestamp, str) else row.timestamp,
        check=check,
    )


def _checkpoint_rows(ledger: Ledger, first: int, last: int | None) -> tuple[list[Checkpoint], dict[int, str]]:
    found: list[Checkpoint] = []
    malformed: dict[int, str] = {}
    sql = f"SELECT seq, body FROM events WHERE {IS_CHECKPOINT} AND seq >= ?"
    params: list[Any] = [first]
    if last is not None:
        sql, params = sql + " AND seq <= ?", [*params, last]
    for seq, body in ledger._read(sql + " ORDER BY seq", params):
        try:
            found.append(from_event(decode_body(body), ledger.chain_id))
        except (ValueError, CheckpointError) as exc:
            malformed[seq] = f"malformed checkpoint at seq {seq}: {exc}"
    return found, malformed


def _keys_beside(ledger: Ledger) -> list[Verifier]:
    path = ledger.path.parent / DEFAULT_KEY_FILE
    try:
        return local_verifiers(path, ledger.chain_id) if path.is_file() else []
    except SigningKeyError:
        return []  # unusable: checkpoints then show as signed by an unknown key


def verify_ledger(
    path: Path | str,
    *,
    since: str | None = None,
    until: str | None = None,
    keys: Iterable[Verifier] | None = None,
    witness: Iterable[Checkpoint] = (),
    progress: Progress | None = None,
    archive: S3Archive | None = None,
) -> VerifyResult:
    """Verify the ledger at `path` (all of it, or the events from `since` to `until`, inclusive). With
    `archive`, the archived segments first and then the local events, as one chain.

    `keys` are the trusted verifier keys; None: the signing key beside the ledger (the default layout,
    `<state_dir>/ledger-signing.key`) and the keys it replaced. Raises LedgerError if the ledger cannot be
    read, ValueError for a malformed time, ArchiveError when the archive cannot be read.
    """
    ledger = Ledger.open_readonly(path)
    chain_id = ledger.chain_id
    keys = list(keys) if keys is not None else _keys_beside(ledger)
    pruned = pruned_through(ledger.path)
    start, start_hash, end = 0, GENESIS, None
    if archive is not None and (since is not None or until is not None):
        raise ValueError("--archive verifies the whole chain: drop --from/--to")
    if since is not None or until is not None:
        bounds = ledger.seq_range(since=since, until=until)
        if bounds is None:  # no event in the range: still, a witness must not hold checkpoints beyond the end
            walk = Walk(chain_id, keys, [], witness)
            try:
                walk.truncated(ledger.head()[0] + 1, None)
            except Tampered as problem:
                return walk.failure(chain_id, problem)
            return VerifyResult(ok=True, events_checked=0, chain_id=chain_id)
        start, start_hash = anchor(ledger, bounds[0])
        end = closing_checkpoint(ledger, bounds[1])
    elif pruned is not None and archive is None:
        # Pruning keeps the checkpoint it ends before. Anchor at the first event still stored, not at the
        # `prunes` record: a forged record must not make the walk skip stored (tampered) events.
        (first_stored,) = ledger._read_one("SELECT min(seq) FROM events") or (None,)
        start, start_hash = anchor(ledger, first_stored if first_stored is not None else pruned + 1)
    walk = Walk(chain_id, keys, [], witness, progress=progress)

    def local(first: int) -> Iterator[Item]:
        checkpoints, malformed = _checkpoint_rows(ledger, first, end)
        walk.checkpoints.update((cp.seq, cp) for cp in checkpoints)
        for row in ledger.iter_rows(first_seq=first, last_seq=end):
            yield _stored_item(row, chain_id, malformed.get(row.seq))

    def archived_then_local(source: S3Archive) -> Iterator[Item]:
        following = 0
        try:
            for row, checkpoint in archived_rows(source, keys, chain_id):
                if checkpoint is not None:
                    walk.checkpoints[checkpoint.seq] = checkpoint
                following = row.seq + 1
                yield _stored_item(row, chain_id, None)
        except ArchiveTampered as problem:
            raise Tampered(problem.reason, problem.seq, f"archive: {problem.detail}") from None
        yield from local(following)

    items = local(start) if archive is None else archived_then_local(archive)
    try:
        next_seq, last_hash, last_ts = walk.run(items, start, start_hash)
        walk.truncated(ledger.head()[0] + 1, last_ts)
    except Tampered as problem:
        return walk.failure(chain_id, problem)
    return walk.result(chain_id, start, next_seq, last_hash)


# --- auditor mode: digest lines ------------------------------------------------------------------------

_DIGEST = re.compile(r'\{"seq": (\d+), "timestamp": "([^"\\]*)", "leaf": "([0-9a-f]{64})"\}\n?')


def _digest_item(line: str, number: int, label: str) -> Item:
    match = _DIGEST.fullmatch(line)
    if match is not None:
        return Item(int(match[1]), match[2], bytes.fromhex(match[3]))
    try:  # the same line formatted another way (an auditor's own tools)
        record = json.loads(line)
        seq, timestamp, leaf = record["seq"], record["timestamp"], bytes.fromhex(record["leaf"])
        if type(seq) is not int or not isinstance(timestamp, str) or len(leaf) != 32:
            raise ValueError("seq, timestamp or leaf has the wrong type")
    except (ValueError, KeyError, TypeError) as exc:
        raise DigestFileError(f"{label}:{number}: not a digest line ({exc})") from None
    return Item(seq, timestamp, leaf)


def _digest_items(path: Path) -> Iterator[Item]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip() and not line.startswith(('{"checkpoint"', '{"export"')):
                yield _digest_item(line, number, str(path))


def read_digest_header(path: Path) -> tuple[dict[str, Any], list[Checkpoint]]:
    """The export header and the checkpoint lines of a digest export (first pass)."""
    header: dict[str, Any] | None = None
    lines: list[tuple[int, str]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.startswith('{"export"'):
                    try:
                        header = json.loads(line)["export"]
                    except (ValueError, KeyError) as exc:
                        raise DigestFileError(f"{path}:{number}: bad export header ({exc})") from None
                elif line.startswith('{"checkpoint"'):
                    lines.append((number, line))
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestFileError(f"cannot read digest file {path}: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("chain_id"), str):
        raise DigestFileError(f"{path}: no export header; write the file with `tether export digests`")
    checkpoints = []
    for number, line in lines:
        try:
            checkpoints.append(from_event(json.loads(line)["checkpoint"], header["chain_id"]))
        except (ValueError, KeyError, TypeError, CheckpointError) as exc:
            raise DigestFileError(f"{path}:{number}: not a checkpoint line ({exc})") from None
    return header, checkpoints


def _claimed_size(path: Path, header: dict[str, Any], walk: Walk, next_seq: int) -> int:
    """The ledger size a digest export claims; witness checkpoints recorded at or beyond it are missing
    from the ledger (`truncated`). An export to the end claims its own end. A range export (`to`) claims
    the ledger's size in its header, unless the witness holds a checkpoint beyond the export whose time
    is inside the range: the range would have included it, so the export was cut short."""
    until = header.get("to")
    if until is None:
        return next_seq
    size = header.get("ledger_size")
    try:
        until = normalize_time(str(until))
        if type(size) is not int:
            raise ValueError(f"ledger_size {size!r} is not a number")
    except ValueError as exc:
        raise DigestFileError(f"{path}: bad export header ({exc})") from None
    cut_short = any(cp.seq >= next_seq and cp.timestamp <= until for cp in walk.witnessed_events.values())
    return next_seq if cut_short else size


def verify_digests(
    path: Path,
    *,
    keys: Iterable[Verifier],
    witness: Iterable[Checkpoint] = (),
    progress: Progress | None = None,
) -> VerifyResult:
    """Verify a digest export (`tether export digests`) without any raw event.

    Raises DigestFileError for a file that is not a digest export."""
    header, checkpoints = read_digest_header(path)
    chain_id: str = header["chain_id"]
    keys = list(keys)
    if not any(key.name == origin(chain_id) for key in keys):
        # Else a forged header naming another chain would make every checkpoint and witness line moot.
        raise DigestFileError(f"{path}: the export is of chain {chain_id}, but no trusted key is for it")
    witness = [cp for cp in witness if cp.event.get("chain_id") == chain_id]  # may hold other ledgers'
    items = _digest_items(path)
    first = next(items, None)
    if first is None:  # nothing exported: still, a witness must not hold checkpoints beyond the claimed end
        walk = Walk(chain_id, keys, checkpoints, witness)
        claimed = header.get("first_seq")
        start = claimed if type(claimed) is int and claimed >= 0 else 0
        try:
            walk.truncated(max(_claimed_size(path, header, walk, start), start), None)
        except Tampered as problem:
            return walk.failure(chain_id, problem)
        return VerifyResult(ok=True, events_checked=0, chain_id=chain_id)
    start, start_hash = header.get("first_seq", first.seq), GENESIS
    if type(start) is not int or start < 0:
        raise DigestFileError(f"{path}: bad first_seq in the export header")
    if start > 0:
        anchor = next((cp for cp in checkpoints if cp.seq == start), None)
        if anchor is None:
            raise DigestFileError(
                f"{path}: the digests start at seq {start} without the checkpoint recorded there;"
                " export them with `tether export digests`, which starts at a checkpoint"
            )
        start_hash = anchor.root
    walk = Walk(chain_id, keys, checkpoints, witness, progress=progress)

    def all_items() -> Iterator[Item]:
        yield first
        yield from items

    try:
        next_seq, last_hash, last_ts = walk.run(all_items(), start, start_hash)
        walk.truncated(max(_claimed_size(path, header, walk, next_seq), next_seq), last_ts)
    except Tampered as problem:
        return walk.failure(chain_id, problem)
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestFileError(f"cannot read digest file {path}: {exc}") from None
    return walk.result(chain_id, start, next_seq, last_hash)


__all__ = ["DigestFileError", "LedgerError", "VerifyResult", "verify_digests", "verify_ledger"]
