"""Per-sink delivery state, kept in the ledger's own SQLite file but outside the hash-chained tables.

`sink_cursors` holds each sink's last confirmed `seq`; `sink_dead_letters` holds events a receiver
rejected for good, with the reason. Both are written over a separate connection (WAL lets it share
the file with the ledger's writer thread; SQLite serialises the two writers with a busy timeout).
The `events` table and its append-only triggers are never touched: the shipper only reads events.

A cursor moves only after the receiver confirmed everything up to it, in the same transaction that
parks the batch's rejected events, so a crash either keeps both or neither (then the batch is resent).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tether.ledger.events import utc_timestamp
from tether.ledger.record import decode_body
from tether.ledger.store import LedgerError, connect

_BUSY_TIMEOUT_S: Final = 30.0
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS sink_cursors (
        sink TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        last_error TEXT,
        last_error_at TEXT
    ) STRICT""",
    """CREATE TABLE IF NOT EXISTS sink_dead_letters (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        parked_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        replayed_at TEXT,
        UNIQUE (sink, seq)
    ) STRICT""",
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    sink: str
    seq: int
    event_id: str
    reason: str
    parked_at: str
    attempts: int
    replayed_at: str | None


@dataclass(frozen=True, slots=True)
class SinkStatus:
    sink: str
    cursor: int  # last delivered seq; -1 before the first delivery
    updated_at: str | None
    last_error: str | None
    last_error_at: str | None
    dead_letters: int  # parked and not replayed


class SinkState:
    """Cursors and dead letters of every sink, plus the reads the shipper needs from `events`."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if not path.is_file():
            raise LedgerError(f"no ledger at {path}")
        self.readonly = readonly
        self._conn = connect(path, "ro" if readonly else "rw", busy_timeout=_BUSY_TIMEOUT_S)
        self._has_tables = True
        try:
            if readonly:
                found = self._conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'sink_cursors'"
                ).fetchone()
                self._has_tables = bool(found[0])
            else:
                self._conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    self._conn.execute(statement)
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.close()
            raise LedgerError(f"cannot set up sink state in {path}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise LedgerError(f"sink state of {self.path} was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot update sink state in {self.path}: {exc}") from exc

    # --- events (read only) ----------------------------------------------------------------------

    def last_seq(self) -> int:
        (found,) = self._conn.execute("SELECT max(seq) FROM events").fetchone()
        return -1 if found is None else int(found)

    def events_after(self, seq: int, limit: int) -> list[tuple[dict[str, Any], str]]:
        """Up to `limit` stored events with seq > `seq`, in order, each with its stored JSON text."""
        rows = self._conn.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(self._decode(seq, body), body) for seq, body in rows]

    def events_at(self, seqs: Sequence[int]) -> list[tuple[dict[str, Any], str]]:
        """The stored events with these seqs, each with its stored JSON text."""
        events = []
        for seq in seqs:
            found = self._conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
            if found is None:
                raise LedgerError(f"ledger {self.path} has no event seq {seq}")
            events.append((self._decode(seq, found[0]), found[0]))
        return events

    def _decode(self, seq: int, body: str) -> dict[str, Any]:
        try:
            return decode_body(body)
        except ValueError:
            raise LedgerError(f"stored event seq {seq} is not valid JSON; run `tether verify`") from None

    # --- cursors ---------------------------------------------------------------------------------

    def cursor(self, sink: str) -> int:
        if not self._has_tables:
            return -1
        found = self._conn.execute("SELECT seq FROM sink_cursors WHERE sink = ?", (sink,)).fetchone()
        return -1 if found is None else int(found[0])

    def advance(self, sink: str, seq: int, parked: Sequence[tuple[dict[str, Any], str]] = ()) -> None:
        """Record delivery up to `seq` and park `parked` (event, reason) in one transaction."""
        now = utc_timestamp()
        with self._transaction() as conn:
            self._park(conn, sink, parked, now)
            conn.execute(
                "INSERT INTO sink_cursors (sink, seq, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq),"
                " updated_at = excluded.updated_at, last_error = NULL, last_error_at = NULL",
                (sink, seq, now),
            )

    def park(self, sink: str, parked: Sequence[tuple[dict[str, Any], str]]) -> None:
        """Park (event, reason) pairs again (a replay the receiver refused); the cursor stays."""
        with self._transaction() as conn:
            self._park(conn, sink, parked, utc_timestamp())

    @staticmethod
    def _park(
        conn: sqlite3.Connection, sink: str, parked: Sequence[tuple[dict[str, Any], str]], now: str
    ) -> None:
        for event, reason in parked:
            conn.execute(
                "INSERT INTO sink_dead_letters (sink, seq, event_id, reason, parked_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (sink, seq) DO UPDATE SET"
                " reason = excluded.reason, attempts = attempts + 1, replayed_at = NULL",
                (sink, event["seq"], event["event_id"], reason, now),
            )

    def record_error(self, sink: str, message: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO sink_cursors (sink, seq, updated_at, last_error, last_error_at)"
                " VALUES (?, -1, ?, ?, ?) ON CONFLICT (sink) DO UPDATE SET"
                " last_error = excluded.last_error, last_error_at = excluded.last_error_at",
                (sink, utc_timestamp(), message, utc_timestamp()),
            )

    # --- dead letters ----------------------------------------------------------------------------

    def dead_letters(self, sink: str | None = None, *, pending_only: bool = True) -> list[DeadLetter]:
        if not self._has_tables:
            return []
        sql = (
            "SELECT id, sink, seq, event_id, reason, parked_at, attempts, replayed_at FROM sink_dead_letters"
        )
        clauses, params = [], []
        if sink is not None:
            clauses.append("sink = ?")
            params.append(sink)
        if pending_only:
            clauses.append("replayed_at IS NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(f"{sql}{where} ORDER BY sink, seq", params).fetchall()
        return [DeadLetter(*row) for row in rows]

    def mark_replayed(self, sink: str, seqs: Sequence[int]) -> None:
        now = utc_timestamp()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE sink_dead_letters SET replayed_at = ? WHERE sink = ? AND seq = ?",
                [(now, sink, seq) for seq in seqs],
            )

    def status(self, sinks: Sequence[str]) -> list[SinkStatus]:
        """Status of `sinks` (configured ones) and of any other sink the database knows."""
        known: dict[str, SinkStatus] = {}
        if self._has_tables:
            for sink, seq, updated, error, error_at in self._conn.execute(
                "SELECT sink, seq, updated_at, last_error, last_error_at FROM sink_cursors"
            ):
                known[sink] = SinkStatus(sink, int(seq), updated, error, error_at, 0)
            for sink, count in self._conn.execute(
                "SELECT sink, count(*) FROM sink_dead_letters WHERE replayed_at IS NULL GROUP BY sink"
            ):
                base = known.get(sink) or SinkStatus(sink, -1, None, None, None, 0)
                known[sink] = SinkStatus(
                    base.sink, base.cursor, base.updated_at, base.last_error, base.last_error_at, int(count)
                )
        names = list(dict.fromkeys([*sinks, *sorted(known)]))
        return [known.get(name) or SinkStatus(name, -1, None, None, None, 0) for name in names]


def open_state(path: Path, *, readonly: bool = False) -> SinkState:
    """`SinkState` on the ledger at `path` (LedgerError if there is none)."""
    with closing(connect(path, "ro", busy_timeout=_BUSY_TIMEOUT_S)) as conn:
        try:
            conn.execute("SELECT 1 FROM events LIMIT 1")
        except sqlite3.Error as exc:
            raise LedgerError(f"{path} is not a tether ledger: {exc}") from None
    return SinkState(path, readonly=readonly)
