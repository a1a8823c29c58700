"""The append-only, hash-chained event ledger.

- `events`: the event schema (DESIGN.md "Event (contract)") and `new_event`;
- `chain`: the hashing auditors re-implement (DESIGN.md "Ledger hashing (contract)");
- `store`: `Ledger`, SQLite in WAL mode with one writer thread and group commit;
- `verify`, `export`, `timeline`: the read side behind `tether verify|export|timeline`.
"""

from .events import EVENT_TYPES, SCHEMA_VERSION, new_event
from .store import Ledger, LedgerError
from .verify import VerifyResult, verify_ledger

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerError",
    "VerifyResult",
    "new_event",
    "verify_ledger",
]
