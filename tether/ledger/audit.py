"""The chain walk shared by `tether verify` (stored events) and auditor mode (digest lines only).

A walk is fed, in stored order, one item per event: the seq the event claims, its timestamp and its
leaf (or, for stored events, its hash already checked against the previous one). It recomputes every
hash_n and checks every signed checkpoint on the way:

- the checkpoint event at seq c must cover exactly the c events before it (size == c; otherwise an old
  checkpoint was `replayed`) and its hash must be the recomputed hash_(c-1) (otherwise `modified`:
  somewhere since the last good checkpoint);
- its note must carry a valid signature by a trusted key (`bad_signature`, `unknown_key`); a checkpoint
  naming a `next_key` makes that key trusted once a later checkpoint by a trusted key covers it;
- witness checkpoints are compared the same way; one beyond the end of the ledger means `truncated`.

Seqs out of order are classified: a seq that never comes (`missing`), one that comes later
(`reordered`), one already seen (`inserted`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .chain import chain_hash, entry_bytes, leaf_hash
from .checkpoint import Checkpoint, origin
from .signing import BadSignature, NoteError, UnknownKey, Verifier, open_note, parse_verifier

REASONS = (
    "modified",
    "missing",
    "inserted",
    "reordered",
    "truncated",
    "replayed",
    "bad_signature",
    "unknown_key",
)
_LOOKAHEAD = 64


@dataclass(slots=True)
class Item:
    seq: int  # the seq the event claims
    timestamp: str
    leaf: bytes | None = None
    # For stored events: checks the event against the previous hash and returns its own (raises Tampered).
    check: Callable[[int, bytes], bytes] | None = None


class Tampered(Exception):
    def __init__(
        self,
        reason: str,
        seq: int | None,
        detail: str,
        time_from: str | None = None,
        time_to: str | None = None,
    ) -> None:
        super().__init__(f"{reason} at seq {seq}: {detail}")
        self.reason, self.seq, self.detail = reason, seq, detail
        self.time_from, self.time_to = time_from, time_to


@dataclass
class VerifyResult:
    ok: bool
    events_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None  # None when intact, else one of REASONS
    detail: str | None = None
    chain_id: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None  # hex hash of the last verified event
    time_from: str | None = None  # the time range the problem affects
    time_to: str | None = None
    checkpoints_checked: int = 0
    witness_checked: int = 0
    signed_through: int | None = None  # seq of the last event covered by a verified checkpoint
    unsigned_tail: int = 0  # events after it (not yet covered by any checkpoint)
    keys: list[str] = field(default_factory=list)  # verifier keys that signed the verified checkpoints

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Walk:
    def __init__(
        self,
        chain_id: str,
        trusted: Iterable[Verifier],
        checkpoints: Iterable[Checkpoint],
        witness: Iterable[Checkpoint] = (),
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.trusted = {v.encode(): v for v in trusted}
        self.checkpoints = {cp.seq: cp for cp in checkpoints}
        self.witness: dict[int, list[Checkpoint]] = {}
        self.witnessed_events: dict[int, Checkpoint] = {}  # by the seq of the checkpoint event itself
        for cp in witness:
            self.witness.setdefault(cp.size, []).append(cp)
            self.witnessed_events[cp.seq] = cp
        self.progress = progress
        self.pending_keys: list[tuple[int, str]] = []
        self.used_keys: set[str] = set()
        self.checked = self.checkpoints_checked = self.witness_checked = 0
        self.signed_through: int | None = None
        self.good_from: tuple[int, str | None] = (0, None)  # first seq not yet covered by a good checkpoint

    # --- signatures and checkpoints ------------------------------------------------------------------

    def _signed(self, cp: Checkpoint, where: str) -> Verifier:
        # A key vouches only for its own origin: an auditor may trust several ledgers' keys.
        own = [key for key in self.trusted.values() if key.name == origin(self.chain_id)]
        try:
            _, signer = open_note(cp.note, own)
        except UnknownKey as exc:
            raise Tampered("unknown_key", cp.seq, f"{where}: {exc}", cp.timestamp, cp.timestamp) from None
        except BadSignature as exc:
            raise Tampered("bad_signature", cp.seq, f"{where}: {exc}", cp.timestamp, cp.timestamp) from None
        except NoteError as exc:
            raise Tampered("bad_signature", cp.seq, f"{where}: {exc}", cp.timestamp, cp.timestamp) from None
        self.used_keys.add(signer.encode())
        return signer

    def _mismatch(self, cp: Checkpoint, where: str, prev_ts: str | None) -> Tampered:
        start, start_ts = self.good_from
        return Tampered(
            "modified",
            start,
            f"{where} (size {cp.size}) does not match the ledger: an event in seq {start}..{cp.size - 1} was"
            " changed, or the chain was rewritten",
            start_ts,
            prev_ts,
        )

    def _check_checkpoint(
        self, cp: Checkpoint, seq: int, prev: bytes, leaf: bytes | None, prev_ts: str | None
    ) -> None:
        where = f"checkpoint at seq {seq}"
        if leaf is not None and leaf_hash(entry_bytes(cp.event)) != leaf:
            raise Tampered(
                "modified",
                seq,
                f"{where}: the checkpoint record differs from the chain's event",
                cp.timestamp,
                cp.timestamp,
            )
        if cp.size != seq:
            raise Tampered(
                "replayed",
                seq,
                f"{where} carries a checkpoint of size {cp.size}: an old (or foreign) checkpoint put here",
                cp.timestamp,
                cp.timestamp,
            )
        self._signed(cp, where)
        if cp.root != prev:
            raise self._mismatch(cp, where, prev_ts)
        self.checkpoints_checked += 1
        self._covered(seq, cp.timestamp)
        if cp.next_key is not None:
            self.pending_keys.append((seq, cp.next_key))

    def _covered(self, size: int, timestamp: str | None) -> None:
        """Everything before `size` matches a verified checkpoint; promote keys it vouches for."""
        self.signed_through = size - 1 if size else None
        self.good_from = (size, timestamp)
        still: list[tuple[int, str]] = []
        for seq, key in self.pending_keys:
            if seq < size:
                try:
                    self.trusted.setdefault(key, parse_verifier(key))
                except ValueError as exc:
                    raise Tampered(
                        "bad_signature", seq, f"checkpoint at seq {seq} names an unusable next key: {exc}"
                    ) from None
            else:
                still.append((seq, key))
        self.pending_keys = still

    def _check_witness(self, size: int, prev: bytes, prev_ts: str | None) -> None:
        for cp in self.witness.pop(size, ()):
            where = f"witness checkpoint (recorded at seq {cp.seq})"
            self._signed(cp, where)
            if cp.root != prev:
                raise self._mismatch(cp, where, prev_ts)
            self.witness_checked += 1

    # --- the walk -----------------------------------------------------------------------------------------

    def run(self, items: Iterator[Item], start: int, start_hash: bytes) -> tuple[int, bytes, str | None]:
        """Walk `items` from seq `start` whose previous hash is `start_hash`. Returns (next seq, last hash,
        last timestamp); raises Tampered at the first problem."""
        expected, prev = start, start_hash
        prev_ts: str | None = None
        ahead: collections.deque[Item] = collections.deque()
        first = True
        while True:
            found = ahead.popleft() if ahead else next(items, None)
            if found is None:
                break
            item = found
            if first:
                self.good_from, first = (start, item.timestamp), False
            if item.seq != expected:
                while len(ahead) < _LOOKAHEAD:
                    more = next(items, None)
                    if more is None:
                        break
                    ahead.append(more)
                raise self._out_of_order(expected, item, [later.seq for later in ahead], prev_ts)
            if expected in self.witness:
                self._check_witness(expected, prev, prev_ts)
            if item.check is not None:
                hash_ = item.check(expected, prev)  # first: a changed stored event is `modified` as such
            else:
                assert item.leaf is not None
                hash_ = chain_hash(prev, item.leaf)
            cp = self.checkpoints.get(expected)
            if cp is not None:
                self._check_checkpoint(cp, expected, prev, item.leaf, prev_ts)
            if expected in self.witnessed_events:
                self._check_witnessed_event(self.witnessed_events[expected], hash_)
            prev = hash_
            prev_ts = item.timestamp
            expected += 1
            self.checked += 1
            if self.progress is not None and not self.checked & 0xFFFF:
                self.progress(self.checked)
        if expected in self.witness:
            self._check_witness(expected, prev, prev_ts)
        return expected, prev, prev_ts

    @staticmethod
    def _out_of_order(expected: int, item: Item, later: list[int], prev_ts: str | None) -> Tampered:
        got = item.seq
        if got > expected and expected in later:
            return Tampered(
                "reordered", expected, f"seq {expected} is stored after seq {got}", prev_ts, item.timestamp
            )
        if got > expected:
            missing = f"seq {expected}" if got == expected + 1 else f"seqs {expected}..{got - 1}"
            return Tampered(
                "missing", expected, f"{missing} missing (next is {got})", prev_ts, item.timestamp
            )
        return Tampered(
            "inserted",
            got,
            f"an event claiming seq {got} is stored where seq {expected} belongs: an extra event",
            item.timestamp,
            item.timestamp,
        )

    def _check_witnessed_event(self, cp: Checkpoint, hash_: bytes) -> None:
        """The witness holds the checkpoint event itself: the chain must hold the same event there."""
        if cp.event.get("hash") != hash_.hex():
            raise Tampered(
                "modified",
                cp.seq,
                f"the checkpoint event at seq {cp.seq} differs from the witness's copy",
                cp.timestamp,
                cp.timestamp,
            )

    def truncated(self, ledger_size: int, last_ts: str | None) -> None:
        """Raise `truncated` for a witness checkpoint recorded at or beyond the ledger's end."""
        beyond = [cp for seq, cp in self.witnessed_events.items() if seq >= ledger_size]
        if not beyond:
            return
        cp = max(beyond, key=lambda c: c.seq)
        self._signed(cp, "witness checkpoint")
        raise Tampered(
            "truncated",
            ledger_size,
            f"a witness holds the checkpoint recorded at seq {cp.seq} but the ledger ends at seq"
            f" {ledger_size - 1}: {cp.seq + 1 - ledger_size} or more events were removed from its end",
            last_ts,
            cp.timestamp,
        )

    def result(self, chain_id: str, first_seq: int, next_seq: int, last_hash: bytes) -> VerifyResult:
        checked = self.checked
        return VerifyResult(
            ok=True,
            events_checked=checked,
            chain_id=chain_id,
            first_seq=first_seq if checked else None,
            last_seq=next_seq - 1 if checked else None,
            last_hash=last_hash.hex() if checked else None,
            checkpoints_checked=self.checkpoints_checked,
            witness_checked=self.witness_checked,
            signed_through=self.signed_through,
            unsigned_tail=next_seq
            - (self.signed_through + 1 if self.signed_through is not None else first_seq),
            keys=sorted(self.used_keys),
        )

    def failure(self, chain_id: str, problem: Tampered) -> VerifyResult:
        return VerifyResult(
            ok=False,
            events_checked=self.checked,
            first_bad_seq=problem.seq,
            reason=problem.reason,
            detail=problem.detail,
            chain_id=chain_id,
            time_from=problem.time_from,
            time_to=problem.time_to,
            checkpoints_checked=self.checkpoints_checked,
            witness_checked=self.witness_checked,
            signed_through=self.signed_through,
            keys=sorted(self.used_keys),
        )
