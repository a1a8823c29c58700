"""Start-up recovery after a crash.

The ledger is SQLite in WAL mode with `synchronous=FULL`: a transaction is committed once its commit
frame is in the WAL and fsynced. A crash (kill -9, power loss) mid-write leaves at most an unfinished
transaction at the end of the WAL: frames without a commit frame, possibly a torn last frame. SQLite's
own recovery ignores them when the database is next opened, so nothing committed is lost and the chain
continues from the last committed hash (the store checks that head before it appends).

`recover` finds such a torn tail and says so in the log before the ledger is opened. (A torn last line
of a witness file is cut off when the FileWitness opens it.)
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("tether.ledger")

WAL_HEADER = 32
FRAME_HEADER = 24


def wal_torn_bytes(ledger: Path) -> int:
    """Bytes at the end of the ledger's WAL that do not make a whole frame (a torn last write)."""
    wal = ledger.with_name(ledger.name + "-wal")
    try:
        with open(wal, "rb") as handle:
            header = handle.read(WAL_HEADER)
            size = handle.seek(0, 2)
    except FileNotFoundError:
        return 0
    if len(header) < WAL_HEADER:
        return size
    page_size = int.from_bytes(header[8:12], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512:
        return 0  # not a WAL header SQLite would accept either; it resets such a file
    return (size - WAL_HEADER) % (FRAME_HEADER + page_size)


def recover(ledger: Path) -> bool:
    """Log a torn last write in the ledger's WAL; True if there was one."""
    torn = wal_torn_bytes(ledger)
    if torn:
        log.warning(
            "ledger %s: the last write was torn by a crash (%d bytes of an unfinished WAL frame); SQLite"
            " discards that uncommitted transaction, every committed event is kept",
            ledger,
            torn,
        )
    return bool(torn)
