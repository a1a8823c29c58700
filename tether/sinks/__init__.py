"""SIEM shipping: the ledger as outbox, one cursor per sink, and the sinks (see docs/siem.md)."""
