"""Archive and retention: sealed ledger segments in S3-compatible storage, local pruning only after the
archived copy is confirmed.

A segment is the run of events from one checkpoint event up to the event before the next checkpoint
(the first segment starts at seq 0): its first event's checkpoint signs the hash before it, the next
checkpoint signs its last hash, so every segment verifies on its own. Under `s3://bucket/prefix`:

    <prefix>/<chain_id>/<first seq, 16 digits>-<last seq>.jsonl.gz    the stored events, gzip JSON Lines
    <prefix>/<chain_id>/<first seq>-<last seq>.manifest               a signed note (the ledger's key)

A manifest's text is one JSON line: chain_id, first_seq, last_seq, time_from, time_to, events, object,
sha256 (of the .jsonl.gz object) and prev (the previous manifest's signature, base64; null for the first)
— CloudTrail's digest chain: deleting or editing a segment, a manifest or one in the middle shows. A
missing newest segment is caught by the witness (its checkpoints are beyond the archive and the local
ledger) or by the local ledger starting after the archive's end.

When the bucket has Object Lock, every object is written in COMPLIANCE mode retained for
`retention_days` (or under a legal hold when retention is indefinite). Before local events are pruned,
each segment's manifest signature is checked and the segment read back, its SHA-256 compared and its
events compared with the stored ones (segments contiguous from the first stored event). Pruning
(events older than `local_retention_days`, whole archived segments only) goes around the append-only
trigger deliberately: in one transaction it drops the trigger, deletes, re-creates it and records the
prune in the append-only `prunes` table.

boto3 is synchronous: callers run these functions in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import (
    CHECKPOINT_EVENT,
    IS_CHECKPOINT,
    Checkpoint,
    CheckpointError,
    KeySource,
    from_event,
    local_verifiers,
    origin,
)
from .events import utc_timestamp_at
from .record import BrokenChain, StoredRow, check_row, decode_body
from .settings import ArchiveSettings
from .signing import BadSignature, NoteError, Signer, UnknownKey, Verifier, open_note, split_note
from .store import Ledger, LedgerError

log = logging.getLogger("tether.ledger")

PRUNES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS prunes (through_seq INTEGER NOT NULL, pruned_at TEXT NOT NULL,"
    " manifest TEXT NOT NULL, sha256 TEXT NOT NULL) STRICT",
    "CREATE TRIGGER IF NOT EXISTS prunes_no_update BEFORE UPDATE ON prunes"
    " BEGIN SELECT RAISE(ABORT, 'ledger table prunes is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS prunes_no_delete BEFORE DELETE ON prunes"
    " BEGIN SELECT RAISE(ABORT, 'ledger table prunes is append-only'); END",
)
EVENTS_NO_DELETE = (
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
    " BEGIN SELECT RAISE(ABORT, 'ledger table events is append-only'); END"
)


class ArchiveError(Exception):
    """The archive cannot be written, read or confirmed (nothing is pruned)."""


class ArchiveTampered(Exception):
    """The archive does not verify: `reason` is a verify reason, `seq` the first affected seq."""

    def __init__(self, reason: str, seq: int, detail: str) -> None:
        super().__init__(f"{reason} at seq {seq}: {detail}")
        self.reason, self.seq, self.detail = reason, seq, detail


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code or type(exc).__name__)


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ValueError(f"archive URL must look like s3://bucket/prefix, not {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class Manifest:
    key: str
    note: str
    fields: dict[str, Any]

    @property
    def first_seq(self) -> int:
        return int(self.fields["first_seq"])

    @property
    def last_seq(self) -> int:
        return int(self.fields["last_seq"])

    @property
    def signature(self) -> str:
        """The base64 signature blob the next manifest's `prev` names."""
        return self.note.rstrip("\n").rsplit(" ", 1)[1]


def parse_manifest(key: str, note: str) -> Manifest:
    text, _ = split_note(note)
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise ValueError("manifest text is not a JSON object")
    for name in ("chain_id", "first_seq", "last_seq", "sha256", "object"):
        if name not in fields:
            raise ValueError(f"manifest without {name}")
    return Manifest(key, note, fields)


class S3Archive:
    """One chain's segments under s3://bucket/prefix/<chain_id>/."""

    def __init__(
        self, url: str, chain_id: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        import boto3  # type: ignore[import-untyped]  # only archive users pay for importing it
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

        self.url = url
        self.bucket, prefix = parse_url(url)
        self.chain_id = chain_id
        self.prefix = f"{prefix}/{chain_id}/" if prefix else f"{chain_id}/"
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def _error(self, what: str, exc: Exception) -> ArchiveError:
        # The error code only: boto's messages may carry request details.
        return ArchiveError(f"archive {self.url}: {what} failed ({_code(exc)})")

    def object_lock(self) -> bool:
        try:
            found = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except self._errors as exc:
            if _code(exc) == "ObjectLockConfigurationNotFoundError":
                return False
            raise self._error("reading the Object Lock configuration", exc) from None
        return bool(found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def keys(self) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except self._errors as exc:
            raise self._error("listing", exc) from None
        return sorted(keys)

    def get(self, key: str) -> bytes | None:
        """The object's bytes; None if it does not exist."""
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self._errors as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error(f"reading {key}", exc) from None

    def put(self, key: str, data: bytes, content_type: str, lock: dict[str, Any]) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                **lock,
            )
        except self._errors as exc:
            raise self._error(f"writing {key}", exc) from None

    def manifests(self) -> list[Manifest]:
        found = []
        for key in self.keys():
            if key.endswith(".manifest"):
                data = self.get(key)
                if data is not None:
                    try:
                        found.append(parse_manifest(key, data.decode()))
                    except (ValueError, UnicodeDecodeError, NoteError) as exc:
                        raise ArchiveTampered("modified", 0, f"manifest {key} is malformed: {exc}") from None
        return sorted(found, key=lambda manifest: manifest.first_seq)


def _lock(archive: S3Archive, retention_days: int | None) -> dict[str, Any]:
    if not archive.object_lock():
        return {}
    if retention_days is None:
        return {"ObjectLockLegalHoldStatus": "ON"}
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=retention_days)
    return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}


def _segment_rows(ledger: Ledger, first: int, last: int) -> list[StoredRow]:
    rows = list(ledger.iter_rows(first_seq=first, last_seq=last))
    prev: bytes | None = None
    for expected, row in enumerate(rows, first):
        try:
            prev = check_row(row, chain_id=ledger.chain_id, expected_seq=expected, prev_hash=prev)
        except BrokenChain as broken:
            raise ArchiveError(f"not archiving a broken ledger ({broken}); run `tether verify`") from None
    if len(rows) != last - first + 1:
        raise ArchiveError(f"not archiving seq {first}..{last}: events are missing; run `tether verify`")
    return rows


def archive_segments(
    ledger: Ledger, archive: S3Archive, signer: Signer, *, retention_days: int | None = None
) -> list[Manifest]:
    """Upload every sealed segment not yet archived, each read back and checked. Returns the new manifests."""
    manifests = archive.manifests()
    last = manifests[-1] if manifests else None
    first = last.last_seq + 1 if last is not None else 0
    ends = [
        seq - 1
        for (seq,) in ledger._read(
            f"SELECT seq FROM events WHERE {IS_CHECKPOINT} AND seq > ? ORDER BY seq", (first,)
        )
    ]
    lock = _lock(archive, retention_days) if ends else {}
    written: list[Manifest] = []
    for end in ends:
        rows = _segment_rows(ledger, first, end)
        data = gzip.compress("".join(row.body + "\n" for row in rows).encode(), mtime=0)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{archive.prefix}{first:016d}-{end:016d}"
        fields = {
            "chain_id": ledger.chain_id,
            "first_seq": first,
            "last_seq": end,
            "time_from": rows[0].timestamp,
            "time_to": rows[-1].timestamp,
            "events": len(rows),
            "object": f"{name}.jsonl.gz",
            "sha256": digest,
            "prev": last.signature if last is not None else None,
        }
        note = signer.sign(json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n")
        archive.put(f"{name}.jsonl.gz", data, "application/gzip", lock)
        archive.put(f"{name}.manifest", note.encode(), "text/plain; charset=utf-8", lock)
        back, back_note = archive.get(f"{name}.jsonl.gz"), archive.get(f"{name}.manifest")
        if back is None or hashlib.sha256(back).hexdigest() != digest or back_note != note.encode():
            raise ArchiveError(f"archive {archive.url}: segment {first}..{end} did not read back intact")
        last = Manifest(f"{name}.manifest", note, fields)
        written.append(last)
        log.info("archived ledger seq %d..%d to %s (%s)", first, end, archive.url, fields["object"])
        first = end + 1
    return written


class Archiver:
    """The sidecar's background archiving: every `interval_seconds`, sealed segments go out (in a thread:
    boto3 blocks) and, with `local_retention_days`, old archived events are pruned. Failures are logged
    and retried at the next round; nothing is pruned that was not confirmed."""

    def __init__(
        self,
        ledger: Ledger,
        archive: S3Archive,
        keys: KeySource,
        settings: ArchiveSettings,
        sinks: Sequence[str] = (),
    ) -> None:
        self.ledger, self.archive, self.keys, self.settings = ledger, archive, keys, settings
        self.sinks = tuple(sinks)  # SIEM sinks that read from the ledger: prune nothing they lack

    def run_once(self) -> None:
        archive_segments(
            self.ledger, self.archive, self.keys.current(), retention_days=self.settings.retention_days
        )
        if self.settings.local_retention_days is not None:
            prune(
                self.ledger,
                self.archive,
                keys=local_verifiers(self.keys.path, self.ledger.chain_id),
                older_than_days=self.settings.local_retention_days,
                sinks=self.sinks,
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_seconds)
            try:
                await asyncio.to_thread(self.run_once)
            except (ArchiveError, ArchiveTampered, sqlite3.Error, LedgerError, ValueError) as exc:
                # ValueError: a malformed manifest or an unusable key file; the round is retried, the task
                # must not die silently.
                log.error(
                    "ledger archive round failed (retrying in %gs): %s", self.settings.interval_seconds, exc
                )


def pruned_through(path: Path) -> int | None:
    """The last seq pruned from the local ledger (recorded in `prunes`), None if never pruned."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        try:
            (through,) = conn.execute("SELECT max(through_seq) FROM prunes").fetchone()
        except sqlite3.OperationalError:  # no prunes table: never pruned
            return None
    return None if through is None else int(through)


def shipped_through(path: Path, sinks: Sequence[str]) -> int | None:
    """The last seq every one of `sinks` has delivered (their cursors in `sink_cursors`), and below any
    dead letter they still have to replay (`tether sinks replay` reads it from the local ledger); -1
    when one has delivered nothing yet; None when there are no sinks (no limit)."""
    if not sinks:
        return None
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        try:
            rows = dict(conn.execute("SELECT sink, seq FROM sink_cursors").fetchall())
        except sqlite3.OperationalError:  # no cursor table yet: nothing shipped
            return -1
        try:
            marks = ",".join("?" * len(sinks))
            (parked,) = conn.execute(
                f"SELECT min(seq) FROM sink_dead_letters WHERE replayed_at IS NULL AND sink IN ({marks})",
                tuple(sinks),
            ).fetchone()
        except sqlite3.OperationalError:  # no dead-letter table: nothing parked
            parked = None
    shipped = min(int(rows.get(sink, -1)) for sink in sinks)
    return shipped if parked is None else min(shipped, int(parked) - 1)


def _confirm(ledger: Ledger, archive: S3Archive, manifest: Manifest, keys: Sequence[Verifier]) -> None:
    """Raise ArchiveError unless `manifest` is signed by this ledger's key and its segment, read back,
    holds exactly the stored events it names: anyone who can write to the bucket could plant one."""
    name = manifest.fields["object"]
    try:
        open_note(manifest.note, keys)
    except (UnknownKey, BadSignature, NoteError) as exc:
        raise ArchiveError(
            f"manifest {manifest.key} is not signed by the ledger's key ({exc}): not pruning"
        ) from None
    data = archive.get(name)
    if data is None or hashlib.sha256(data).hexdigest() != manifest.fields["sha256"]:
        raise ArchiveError(f"archived segment {name} is missing or changed: not pruning")
    try:
        archived = gzip.decompress(data).decode().splitlines()
    except (OSError, EOFError, UnicodeDecodeError):
        archived = []
    first, last = manifest.first_seq, manifest.last_seq
    local = [row.body for row in ledger.iter_rows(first_seq=first, last_seq=last)]
    if len(local) != last - first + 1 or archived != local:
        raise ArchiveError(
            f"archived segment {name} does not hold the stored events {first}..{last}: not pruning"
        )


def prune(
    ledger: Ledger,
    archive: S3Archive,
    *,
    keys: Sequence[Verifier],
    older_than_days: float,
    sinks: Sequence[str] = (),
) -> int | None:
    """Delete local events of archived segments whose last event is older than `older_than_days` and that
    every SIEM sink in `sinks` has delivered, once each segment from the first stored event on is confirmed
    (manifest signed by one of `keys`, segments contiguous, read back and equal to the stored events).
    Returns the last pruned seq (None: nothing)."""
    cutoff = utc_timestamp_at(time.time() - older_than_days * 86400)
    done = pruned_through(ledger.path)
    shipped = shipped_through(ledger.path, sinks)
    following = done + 1 if done is not None else 0  # the first event still stored
    target: Manifest | None = None
    for manifest in archive.manifests():
        if manifest.last_seq < following:
            continue  # pruned already
        if shipped is not None and manifest.last_seq > shipped:
            break  # a sink still has to read these events from the ledger
        if manifest.fields.get("time_to", "") >= cutoff:
            break  # not old enough (nor is any later one)
        if manifest.first_seq != following:
            raise ArchiveError(f"the archive has no segment starting at seq {following}: not pruning")
        _confirm(ledger, archive, manifest, keys)
        target, following = manifest, manifest.last_seq + 1
    if target is None:
        return None
    with closing(sqlite3.connect(ledger.path, isolation_level=None, timeout=30)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in PRUNES_SCHEMA:
                conn.execute(statement)
            conn.execute("DROP TRIGGER events_no_delete")  # the one deliberate way around it
            conn.execute("DELETE FROM events WHERE seq <= ?", (target.last_seq,))
            conn.execute(EVENTS_NO_DELETE)
            conn.execute(
                "INSERT INTO prunes VALUES (?, ?, ?, ?)",
                (
                    target.last_seq,
                    datetime.datetime.now(datetime.UTC).isoformat(),
                    target.key,
                    target.fields["sha256"],
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    log.warning(
        "pruned local ledger events through seq %d (archived and confirmed in %s)",
        target.last_seq,
        archive.url,
    )
    return target.last_seq


def archived_rows(
    archive: S3Archive, keys: list[Verifier], chain_id: str
) -> Iterator[tuple[StoredRow, Checkpoint | None]]:
    """Every archived event in order, as stored rows (with the checkpoint each carries), after checking
    each manifest's signature and link and each segment's SHA-256. Raises ArchiveTampered."""
    expected, prev_sig = 0, None
    keys = [key for key in keys if key.name == origin(chain_id)]  # not another ledger's key
    for manifest in archive.manifests():
        try:
            open_note(manifest.note, keys)
        except UnknownKey as exc:
            raise ArchiveTampered(
                "unknown_key", manifest.first_seq, f"manifest {manifest.key}: {exc}"
            ) from None
        except (BadSignature, NoteError) as exc:
            raise ArchiveTampered(
                "bad_signature", manifest.first_seq, f"manifest {manifest.key}: {exc}"
            ) from None
        first, last = manifest.first_seq, manifest.last_seq
        if manifest.fields.get("chain_id") != chain_id:
            raise ArchiveTampered("modified", first, f"manifest {manifest.key} is for another chain")
        if first > expected:
            raise ArchiveTampered(
                "missing", expected, f"archived segments for seq {expected}..{first - 1} are missing"
            )
        if first < expected or manifest.fields.get("prev") != prev_sig:
            raise ArchiveTampered(
                "modified", first, f"manifest {manifest.key} does not follow the one before it"
            )
        data = archive.get(manifest.fields["object"])
        if data is None:
            raise ArchiveTampered(
                "missing",
                first,
                f"archived segment {manifest.fields['object']} (seq {first}..{last}) is missing",
            )
        if hashlib.sha256(data).hexdigest() != manifest.fields["sha256"]:
            raise ArchiveTampered(
                "modified",
                first,
                f"archived segment {manifest.fields['object']} (seq {first}..{last}) was changed",
            )
        try:
            lines = gzip.decompress(data).decode().splitlines()
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise ArchiveTampered(
                "modified", first, f"archived segment {manifest.fields['object']} is unreadable: {exc}"
            ) from None
        for line in lines:
            try:
                event = decode_body(line)
                row = StoredRow(
                    event["seq"],
                    event["event_id"],
                    event["timestamp"],
                    event["event_type"],
                    event.get("agent_name"),
                    event.get("run_id"),
                    event.get("provider"),
                    event.get("token_id"),
                    line,
                )
            except (ValueError, KeyError) as exc:
                raise ArchiveTampered(
                    "modified", first, f"archived segment {manifest.fields['object']}: bad event ({exc})"
                ) from None
            checkpoint = None
            if row.event_type == CHECKPOINT_EVENT:
                try:
                    checkpoint = from_event(event, chain_id)
                except CheckpointError:
                    checkpoint = None
            yield row, checkpoint
        expected, prev_sig = last + 1, manifest.signature


def archive_end(archive: S3Archive) -> int:
    """The seq after the last archived one (0 for an empty archive)."""
    manifests = archive.manifests()
    return manifests[-1].last_seq + 1 if manifests else 0
