"""The append-only, hash-chained SQLite ledger.

One writer thread owns all writes, so `seq` is assigned in one place and has no gaps. It drains a
queue of pending appends, writes every waiting event in one transaction and commits it (WAL,
`synchronous=FULL`: the commit is fsynced), then resolves the callers' futures — concurrent appends
share one fsync (group commit). `append` returns only once its event is durable.

A failed transaction rolls back; every event of that batch gets LedgerError, no `seq` is used and
the head is not advanced. The writer then reopens its connection and re-reads the head from the
database on the next batch, so an append after the cause is fixed succeeds with the next `seq`.
Before each batch the writer checks that the ledger file still exists, is the file it opened and
is not read-only (by its mode bits: an operator who makes the ledger read-only wants writes to stop,
even when the process runs as root, for which the kernel would still allow them).

Recovery: SQLite commits are atomic, so a torn row is not expected even after `kill -9` or a power
loss. On open the last row is nevertheless checked against its predecessor; if it does not chain,
the ledger refuses to extend it and says so (LedgerError): run `tether verify` to see why.

Triggers refuse UPDATE and DELETE on `events` and `meta`. They stop accidents, not an attacker with
write access to the file: the hash chain (and the signed checkpoints of a later issue) detect those.

Readers use their own connections (WAL lets them read while the writer commits). A read-only
connection to a WAL database may create the `-wal`/`-shm` side files next to it; it never creates
the database itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Collection, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

from .chain import GENESIS, canonical_json, chain_hash, leaf_hash
from .events import CHAIN_ID_PATTERN, check_appendable, new_id, normalize_time, utc_timestamp
from .record import INDEX_COLUMNS, BrokenChain, StoredRow, check_row, decode_body, encode_body

_MAX_BATCH: Final = 1000
_BUSY_TIMEOUT_S: Final = 5.0
_ROW_COLUMNS: Final = ("seq", *INDEX_COLUMNS, "body")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        timestamp TEXT NOT NULL,
        event_type TEXT NOT NULL,
        agent_name TEXT,
        run_id TEXT,
        provider TEXT,
        token_id TEXT,
        body TEXT NOT NULL
    ) STRICT""",
    "CREATE INDEX IF NOT EXISTS events_timestamp ON events (timestamp)",
    "CREATE INDEX IF NOT EXISTS events_run_id ON events (run_id)",
    "CREATE INDEX IF NOT EXISTS events_agent_name ON events (agent_name)",
    # Verification, export and archiving look checkpoints up by seq (a partial index: a few rows).
    "CREATE INDEX IF NOT EXISTS events_checkpoints ON events (seq) WHERE event_type = 'ledger.checkpoint'",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON {table}"
        f" BEGIN SELECT RAISE(ABORT, 'ledger table {table} is append-only'); END"
        for table in ("events", "meta")
        for action in ("UPDATE", "DELETE")
    ),
)
_PLACEHOLDERS: Final = ", ".join("?" * len(_ROW_COLUMNS))
_INSERT: Final = f"INSERT INTO events ({', '.join(_ROW_COLUMNS)}) VALUES ({_PLACEHOLDERS})"
_SELECT_ROWS: Final = f"SELECT {', '.join(_ROW_COLUMNS)} FROM events"


class LedgerError(Exception):
    """The ledger cannot do what was asked (write failed, file missing, chain broken at its head)."""


class InvalidEvent(LedgerError, ValueError):
    """The event cannot be recorded as given (not built by new_event, or no canonical JSON form).

    A LedgerError, so fail-closed callers that catch LedgerError also refuse the call it describes."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    events_written: int
    commits: int
    failed_batches: int


# Builds an event from the chain's head at the event's own position: (size so far, hash at size - 1).
HeadBuilder = Callable[[int, bytes], dict[str, Any]]


@dataclass(slots=True)
class _Pending:
    event: dict[str, Any]
    build: HeadBuilder | None = None
    async_future: asyncio.Future[dict[str, Any]] | None = None
    sync_future: concurrent.futures.Future[dict[str, Any]] | None = None
    outcome: dict[str, Any] | Exception | None = None


_STOP: Final = object()
_CHAIN_ID_RE: Final = re.compile(CHAIN_ID_PATTERN)


def connect(path: Path, mode: str, *, busy_timeout: float = _BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in URI `mode` (ro, rw or rwc); LedgerError when SQLite cannot open the file."""
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode={mode}",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        # No SQL functions with side effects from a schema we did not write (a swapped-in file).
        conn.execute("PRAGMA trusted_schema = OFF")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
    return conn


def _create_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _check(event: dict[str, Any]) -> None:
    try:
        check_appendable(event)
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from None


def _unsealed(event: dict[str, Any]) -> dict[str, Any]:
    """The writer's own copy of `event`, without the hash fields it is about to compute."""
    copy = dict(event)
    del copy["prev_hash"], copy["hash"]
    return copy


def _row(values: tuple[Any, ...]) -> StoredRow:
    return StoredRow(*values)


def _read_chain_id(conn: sqlite3.Connection, path: Path) -> str:
    found = conn.execute("SELECT value FROM meta WHERE key = 'chain_id'").fetchone()
    if found is None:
        raise LedgerError(f"{path} is not a tether ledger (no chain_id)")
    return str(found[0])


def _verified_head(conn: sqlite3.Connection, chain_id: str, path: Path) -> tuple[int, bytes]:
    """(seq, hash) of the last row after checking that it chains onto the row before it."""
    found = conn.execute(f"{_SELECT_ROWS} ORDER BY seq DESC LIMIT 1").fetchone()
    if found is None:
        return -1, GENESIS
    last = _row(found)
    prev_hash = GENESIS
    if last.seq > 0:
        previous = conn.execute(f"{_SELECT_ROWS} WHERE seq = ?", (last.seq - 1,)).fetchone()
        try:
            prev_hash = bytes.fromhex(decode_body(_row(previous).body)["hash"]) if previous else b""
        except (ValueError, KeyError, TypeError):
            prev_hash = b""  # the row before is damaged: the head cannot chain onto it
    try:
        return last.seq, check_row(last, chain_id=chain_id, expected_seq=last.seq, prev_hash=prev_hash)
    except BrokenChain as broken:
        raise LedgerError(
            f"ledger {path}: the last event (seq {last.seq}) does not chain"
            f" ({broken.reason}: {broken.detail}): a torn write or a modified ledger;"
            " refusing to extend it; run `tether verify` for details"
        ) from None


class Ledger:
    """An append-only hash-chained ledger in one SQLite file. See the module docstring."""

    path: Path
    chain_id: str
    _writer: threading.Thread | None  # None: opened read-only

    def __init__(self, path: Path | str, *, chain_id: str | None = None) -> None:
        """Open or create the ledger at `path` (directories created, file mode 0600) and start the writer.

        `chain_id` ("chn_…") names the chain of a new ledger; for an existing one it must match.
        """
        self.path = Path(path)
        if chain_id is not None and not _CHAIN_ID_RE.fullmatch(chain_id):
            raise ValueError(f"chain_id must match {CHAIN_ID_PATTERN}, not {chain_id!r}")
        try:
            _create_private_file(self.path)
        except OSError as exc:
            raise LedgerError(f"cannot create ledger {self.path}: {exc.strerror}") from exc
        with closing(connect(self.path, "rw")) as conn:
            try:
                (journal_mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                if journal_mode != "wal":
                    raise LedgerError(f"ledger {self.path}: SQLite refused WAL mode ({journal_mode})")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('chain_id', ?), ('created_at', ?)",
                    (chain_id or new_id("chn_"), utc_timestamp()),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot set up ledger {self.path}: {exc}") from exc
            self.chain_id = _read_chain_id(conn, self.path)
            if chain_id is not None and chain_id != self.chain_id:
                raise LedgerError(f"ledger {self.path} holds chain {self.chain_id}, not {chain_id}")
            self._head = _verified_head(conn, self.chain_id, self.path)
        self._init_writer_state()
        self._writer = threading.Thread(target=self._run_writer, name="tether-ledger-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open_readonly(cls, path: Path | str) -> Self:
        """Open an existing ledger for reading only (verify, export, timeline); creates no database."""
        ledger = cls.__new__(cls)
        ledger.path = Path(path)
        if not ledger.path.is_file():
            raise LedgerError(f"no ledger at {ledger.path}")
        with closing(connect(ledger.path, "ro")) as conn:
            try:
                ledger.chain_id = _read_chain_id(conn, ledger.path)
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot read ledger {ledger.path}: {exc}") from exc
        ledger._init_writer_state()
        return ledger

    # --- writing ---------------------------------------------------------------------------------

    def _init_writer_state(self) -> None:
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._writer = None
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._events_written = self._commits = self._failed_batches = 0

    async def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append `event` (from `new_event`); returns the committed event once it is durable.

        Raises LedgerError if it could not be written (InvalidEvent if the event itself is at fault).
        Cancelling the caller does not withdraw an append that was already queued.
        """
        _check(event)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._submit(_Pending(_unsealed(event), async_future=future))
        return await future

    def append_sync(self, event: dict[str, Any]) -> dict[str, Any]:
        """`append` for callers without an event loop (CLI, tests); blocks until durable."""
        _check(event)
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._submit(_Pending(_unsealed(event), sync_future=future))
        return future.result()

    async def append_at_head(self, build: HeadBuilder) -> dict[str, Any]:
        """Append the event `build(size, head_hash)` returns, called in the writer at the very position the
        event takes: nothing can come between the head it sees and the event (signed checkpoints)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._submit(_Pending({}, build=build, async_future=future))
        return await future

    def append_at_head_sync(self, build: HeadBuilder) -> dict[str, Any]:
        """`append_at_head` for callers without an event loop."""
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._submit(_Pending({}, build=build, sync_future=future))
        return future.result()

    @property
    def size(self) -> int:
        """Events committed so far, as this writer knows (another writer on the file may have added more)."""
        return self._head[0] + 1

    def _submit(self, pending: _Pending) -> None:
        if self._writer is None:
            raise LedgerError(f"ledger {self.path} was opened read-only")
        with self._lock:  # so nothing is queued behind the stop marker
            if self._closed:
                raise LedgerError(f"ledger {self.path} is closed")
            self._queue.put(pending)

    def stats(self) -> WriterStats:
        return WriterStats(self._events_written, self._commits, self._failed_batches)

    def close(self) -> None:
        """Write what is queued, then stop the writer. Idempotent."""
        if self._writer is None:
            return
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._writer.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run_writer(self) -> None:
        try:
            stop = False
            while not stop:
                batch: list[_Pending] = []
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    assert isinstance(item, _Pending)
                    batch.append(item)
                    if len(batch) >= _MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._write_batch(batch)
                    _settle(batch)
        finally:
            self._drop_connection()

    def _writer_connection(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise LedgerError(f"ledger file {self.path} is missing") from None
        if not st.st_mode & 0o222:
            raise LedgerError(f"ledger file {self.path} is read-only (mode {stat.filemode(st.st_mode)})")
        file_id = (st.st_dev, st.st_ino)
        if self._conn is not None and file_id != self._file_id:
            raise LedgerError(f"ledger file {self.path} was replaced or moved while open")
        if self._conn is None:
            conn = connect(self.path, "rw")
            try:
                conn.execute("PRAGMA synchronous = FULL")
                found = _read_chain_id(conn, self.path)
            except BaseException:
                conn.close()
                raise
            if found != self.chain_id:
                conn.close()
                raise LedgerError(f"ledger file {self.path} now holds chain {found}, not {self.chain_id}")
            self._conn, self._file_id = conn, file_id
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Write `batch` in one transaction; sets every item's outcome. Never raises."""
        try:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                head = self._current_head(conn)
                rows, written, head = self._seal(batch, head)
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            self._failed_batches += 1
            self._drop_connection()
            code = getattr(exc, "sqlite_errorname", None)  # e.g. SQLITE_FULL, SQLITE_READONLY
            message = f"ledger write failed: {exc}" + (f" ({code})" if code else "")
            for pending in batch:
                if not isinstance(pending.outcome, Exception):
                    pending.outcome = LedgerError(message)
            return
        self._head = head
        self._commits += 1
        self._events_written += len(written)
        for pending, stored in written:
            pending.outcome = stored

    def _current_head(self, conn: sqlite3.Connection) -> tuple[int, bytes]:
        """The cached head, re-read (and checked) if the database moved on without us."""
        (last_seq,) = conn.execute("SELECT max(seq) FROM events").fetchone()
        if (-1 if last_seq is None else last_seq) == self._head[0]:
            return self._head
        return _verified_head(conn, self.chain_id, self.path)

    def _seal(
        self, batch: list[_Pending], head: tuple[int, bytes]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[_Pending, dict[str, Any]]], tuple[int, bytes]]:
        """Assign seq and hashes. An event without a canonical form fails alone and uses no seq."""
        seq, prev = head
        rows: list[tuple[Any, ...]] = []
        written: list[tuple[_Pending, dict[str, Any]]] = []
        for pending in batch:
            if pending.build is not None:
                try:
                    built = pending.build(seq + 1, prev)
                    _check(built)
                except Exception as exc:  # the builder's fault: this event fails alone
                    pending.outcome = exc if isinstance(exc, LedgerError) else LedgerError(str(exc))
                    continue
                pending.event = _unsealed(built)
            event = pending.event
            event["chain_id"], event["seq"] = self.chain_id, seq + 1
            try:
                entry = canonical_json(event)  # entry_bytes(): the event has no prev_hash/hash yet
            except ValueError as exc:
                pending.outcome = InvalidEvent(f"event {event['event_id']} has no canonical JSON form: {exc}")
                continue
            seq += 1
            hash_ = chain_hash(prev, leaf_hash(entry))
            event["prev_hash"], event["hash"] = prev.hex(), hash_.hex()
            rows.append((seq, *(event[column] for column in INDEX_COLUMNS), encode_body(entry, prev, hash_)))
            written.append((pending, event))
            prev = hash_
        return rows, written, (seq, prev)

    # --- reading ---------------------------------------------------------------------------------

    def _read(self, sql: str, params: Collection[Any] = ()) -> Generator[tuple[Any, ...]]:
        with closing(connect(self.path, "ro")) as conn:
            try:
                conn.execute("BEGIN")  # one snapshot for the whole iteration
                yield from conn.execute(sql, tuple(params))
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc

    def _read_one(self, sql: str, params: Collection[Any] = ()) -> tuple[Any, ...] | None:
        with closing(self._read(sql, params)) as rows:
            return next(rows, None)

    def iter_events(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        run_id: str | None = None,
        agent: str | None = None,
        provider: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stored events in seq order; `since`/`until` are inclusive ISO 8601 times (ValueError if bad)."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("timestamp >= ?", since and normalize_time(since)),
            ("timestamp <= ?", until and normalize_time(until)),
            ("run_id = ?", run_id),
            ("agent_name = ?", agent),
            ("provider = ?", provider),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if event_types is not None:
            clauses.append(f"event_type IN ({', '.join('?' * len(event_types))})")
            params.extend(event_types)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        for seq, body in self._read(f"SELECT seq, body FROM events{where} ORDER BY seq", params):
            try:
                yield decode_body(body)
            except ValueError:
                raise LedgerError(f"stored event seq {seq} is not valid JSON; run `tether verify`") from None

    def iter_rows(self, *, first_seq: int = 0, last_seq: int | None = None) -> Iterator[StoredRow]:
        """Raw stored rows with first_seq <= seq (<= last_seq), in seq order (for verification)."""
        sql, params = f"{_SELECT_ROWS} WHERE seq >= ?", [first_seq]
        if last_seq is not None:
            sql, params = f"{sql} AND seq <= ?", [first_seq, last_seq]
        for values in self._read(f"{sql} ORDER BY seq", params):
            yield _row(values)

    def seq_range(self, *, since: str | None = None, until: str | None = None) -> tuple[int, int] | None:
        """(first, last) seq of the events from `since` to `until` (inclusive ISO 8601 times), None if
        there are none. Every event between the two is in the range, whatever its own timestamp."""
        first = "SELECT min(seq) FROM events" + (" WHERE timestamp >= ?" if since else "")
        last = "SELECT max(seq) FROM events" + (" WHERE timestamp <= ?" if until else "")
        params = [normalize_time(value) for value in (since, until) if value]
        found = self._read_one(f"SELECT ({first}), ({last})", params)
        if found is None or found[0] is None or found[1] is None or found[0] > found[1]:
            return None
        return int(found[0]), int(found[1])

    def head(self) -> tuple[int, bytes]:
        """(seq, hash) of the last stored event; (-1, GENESIS) for an empty ledger."""
        found = self._read_one("SELECT seq, body FROM events ORDER BY seq DESC LIMIT 1")
        if found is None:
            return -1, GENESIS
        try:
            return int(found[0]), bytes.fromhex(decode_body(found[1])["hash"])
        except (ValueError, KeyError, TypeError):
            raise LedgerError(f"stored event seq {found[0]} is unreadable; run `tether verify`") from None


def _settle(batch: list[_Pending]) -> None:
    """Hand outcomes to their waiters: sync futures directly, asyncio futures with one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for pending in batch:
        if pending.sync_future is not None:
            if isinstance(pending.outcome, Exception):
                pending.sync_future.set_exception(pending.outcome)
            else:
                assert pending.outcome is not None
                pending.sync_future.set_result(pending.outcome)
        elif pending.async_future is not None:
            by_loop.setdefault(pending.async_future.get_loop(), []).append(pending)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these any more
            loop.call_soon_threadsafe(_settle_async, items)


def _settle_async(items: list[_Pending]) -> None:
    for pending in items:
        future = pending.async_future
        if future is None or future.done():  # cancelled by its caller
            continue
        if isinstance(pending.outcome, Exception):
            future.set_exception(pending.outcome)
        else:
            assert pending.outcome is not None
            future.set_result(pending.outcome)
