"""The tamper matrix: each attack on a signed, witnessed ledger is found, with the right reason, both by
`verify_ledger` (stored events) and by auditor mode (a digest export, the witness file and the public key).

The attacker opens the SQLite file directly and drops the append-only triggers. Layout of the ledger:
events 0-9, checkpoint at 10 (size 10), 11-20, checkpoint at 21,
22-31, checkpoint at 32, 33-36, checkpoint at 37; every checkpoint also went to the witness file.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_ledger_verify import body_of, sealed_body, tamper
from tether.ledger.archive import PRUNES_SCHEMA
from tether.ledger.audit import VerifyResult
from tether.ledger.checkpoint import Checkpointer, KeySource, checkpoint_text, from_event
from tether.ledger.events import new_event
from tether.ledger.export import export_digests
from tether.ledger.record import decode_body
from tether.ledger.signing import Signer, Verifier
from tether.ledger.store import Ledger
from tether.ledger.verify import DigestFileError, verify_digests, verify_ledger
from tether.ledger.witness import FileWitness, read_witness_file

CHECKPOINTS = (10, 21, 32, 37)


class Signed:
    chain_id: str
    key: Verifier

    def __init__(self, root: Path, template: Signed | None = None) -> None:
        self.path = root / "ledger.db"
        self.witness_path = root / "witness.jsonl"
        self.root = root
        if template is not None:  # a copy of an existing one (cheaper than writing it again)
            for name in ("ledger.db", "witness.jsonl"):
                shutil.copyfile(template.root / name, root / name)
            self.chain_id, self.key = template.chain_id, template.key
            return
        with Ledger(self.path) as ledger:
            self.chain_id = ledger.chain_id
            keys = KeySource(root / "ledger-signing.key", ledger.chain_id, create=True)
            checkpointer = Checkpointer(ledger, keys, witnesses=[FileWitness(self.witness_path)])
            for seq in range(38):
                if seq in CHECKPOINTS:
                    checkpointer.checkpoint_sync()
                else:
                    ledger.append_sync(
                        new_event(
                            "api.request",
                            agent_name="pr-review-agent",
                            run_id="run_1",
                            request={"method": "GET", "host": "api.github.com", "path": f"/pulls/{seq}"},
                        )
                    )
                time.sleep(0.002)  # distinct millisecond timestamps, so time ranges select exact seqs
            self.key = keys.current().verifier

    def timestamp(self, seq: int) -> str:
        return str(decode_body(body_of(self.path, seq))["timestamp"])

    def verify(self, *, witness: bool = True) -> VerifyResult:
        found = read_witness_file(self.witness_path, self.chain_id) if witness else []
        return verify_ledger(self.path, keys=[self.key], witness=found)

    def audit(
        self, *, witness: bool = True, since: str | None = None, until: str | None = None
    ) -> VerifyResult:
        """Auditor mode: a digest export, the witness file and the public key — no raw event."""
        out = io.StringIO()
        export_digests(self.path, out, since=since, until=until)
        digests = self.root / "digests.jsonl"
        digests.write_text(out.getvalue())
        found = read_witness_file(self.witness_path, self.chain_id) if witness else []
        return verify_digests(digests, keys=[self.key], witness=found)

    def rewrite(self, first: int, change: Callable[[dict[str, Any]], None]) -> None:
        """Change stored events and recompute every hash from `first` on: a consistent forgery."""
        events = [decode_body(body_of(self.path, seq)) for seq in range(self.size())]
        prev = events[first - 1]["hash"] if first else "00" * 32
        statements = []
        for event in events[first:]:
            change(event)
            body = sealed_body(event, prev)
            prev = json.loads(body)["hash"]
            statements.append(
                (
                    "UPDATE events SET body = ?, agent_name = ? WHERE seq = ?",
                    (body, event["agent_name"], event["seq"]),
                )
            )
        tamper(self.path, *statements)

    def size(self) -> int:
        with sqlite3.connect(self.path) as conn:
            (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(count)


@pytest.fixture
def ledger(tmp_path: Path) -> Signed:
    return Signed(tmp_path)


def both(ledger: Signed, *, witness: bool = True) -> tuple[VerifyResult, VerifyResult]:
    return ledger.verify(witness=witness), ledger.audit(witness=witness)


def test_intact_ledger_verifies_both_ways(ledger: Signed) -> None:
    full, audit = both(ledger)
    for result in (full, audit):
        assert result.ok, result
        assert (result.events_checked, result.checkpoints_checked, result.witness_checked) == (38, 4, 4)
        assert (result.signed_through, result.unsigned_tail) == (36, 1)
        assert result.keys == [ledger.key.encode()]
    beside = verify_ledger(ledger.path)  # no keys given: the signing key beside the ledger
    assert beside.ok and beside.checkpoints_checked == 4
    stranger = Signer.generate(f"tether/{ledger.chain_id}").verifier
    assert verify_ledger(ledger.path, keys=[stranger]).reason == "unknown_key"


def test_one_byte_changed(ledger: Signed) -> None:
    body = body_of(ledger.path, 15)
    tamper(
        ledger.path, ("UPDATE events SET body = ? WHERE seq = 15", (body.replace("/pulls/15", "/pulls/95"),))
    )
    full, audit = both(ledger)
    assert (full.reason, full.first_bad_seq) == ("modified", 15)
    assert full.time_from == full.time_to == ledger.timestamp(15)
    # Digests carry leaves only: the change shows at the next checkpoint, located between the two.
    assert (audit.reason, audit.first_bad_seq) == ("modified", 10)
    assert audit.time_from is not None and audit.time_to is not None
    assert audit.time_from <= ledger.timestamp(15) <= audit.time_to


def test_consistent_rewrite_is_caught_by_the_signed_checkpoint(ledger: Signed) -> None:
    def rename(event: dict[str, Any]) -> None:
        if event["seq"] == 15:
            event["agent_name"] = "someone-else"

    ledger.rewrite(15, rename)
    for result in both(ledger, witness=False):
        assert (result.reason, result.first_bad_seq) == ("modified", 10), result
        assert result.detail is not None and "checkpoint at seq 21" in result.detail


def test_event_deleted(ledger: Signed) -> None:
    tamper(ledger.path, ("DELETE FROM events WHERE seq = 15", ()))
    for result in both(ledger):
        assert (result.reason, result.first_bad_seq) == ("missing", 15), result
        assert (result.time_from, result.time_to) == (ledger.timestamp(14), ledger.timestamp(16))


def test_event_inserted(ledger: Signed) -> None:
    forged = decode_body(body_of(ledger.path, 14)) | {"seq": 15, "event_id": "evt_" + "F" * 26}
    prev = decode_body(body_of(ledger.path, 14))["hash"]
    shift = [(f"UPDATE events SET seq = {seq + 1} WHERE seq = {seq}", ()) for seq in range(37, 14, -1)]
    tamper(
        ledger.path,
        *shift,
        (
            "INSERT INTO events (seq, event_id, timestamp, event_type, agent_name, run_id, provider,"
            " token_id, body) VALUES (15, ?, ?, 'api.request', 'pr-review-agent', 'run_1', NULL, NULL, ?)",
            (forged["event_id"], forged["timestamp"], sealed_body(forged, prev)),
        ),
    )
    for result in both(ledger):
        assert (result.reason, result.first_bad_seq) == ("inserted", 15), result


def test_two_events_swapped(ledger: Signed) -> None:
    body15, body16 = body_of(ledger.path, 15), body_of(ledger.path, 16)
    tamper(
        ledger.path,
        ("UPDATE events SET body = ? WHERE seq = 15", (body16,)),
        ("UPDATE events SET body = ? WHERE seq = 16", (body15,)),
    )
    for result in both(ledger):
        assert (result.reason, result.first_bad_seq) == ("reordered", 15), result


def test_tail_dropped_is_caught_with_a_witness(ledger: Signed) -> None:
    tamper(ledger.path, ("DELETE FROM events WHERE seq >= 30", ()))
    for result in both(ledger, witness=False):
        assert result.ok  # the ledger alone cannot tell: its own last checkpoint (21) still matches
    for result in both(ledger):
        assert (result.reason, result.first_bad_seq) == ("truncated", 30), result
        assert result.time_from == ledger.timestamp(29)
        assert result.time_to is not None and result.time_to > ledger.timestamp(29)


def test_tail_dropped_behind_a_range_header_is_caught_with_a_witness(ledger: Signed) -> None:
    """The host writes the digest export: one claiming a range up to a late time and a large ledger must not
    hide a dropped tail from the witness."""
    tamper(ledger.path, ("DELETE FROM events WHERE seq >= 30", ()))
    out = io.StringIO()
    export_digests(ledger.path, out, until="2099-01-01T00:00:00Z")
    header, *rest = out.getvalue().splitlines(keepends=True)
    claimed = json.loads(header)
    claimed["export"]["ledger_size"] = 1_000_000
    digests = ledger.root / "digests.jsonl"
    digests.write_text(json.dumps(claimed) + "\n" + "".join(rest))
    witness = read_witness_file(ledger.witness_path, ledger.chain_id)
    result = verify_digests(digests, keys=[ledger.key], witness=witness)
    assert (result.reason, result.first_bad_seq) == ("truncated", 30), result


def test_every_event_dropped_is_caught_with_a_witness(ledger: Signed) -> None:
    tamper(ledger.path, ("DELETE FROM events", ()))
    for result in both(ledger):
        assert (result.ok, result.reason, result.first_bad_seq) == (False, "truncated", 0), result
    # A range with no event left in it, too.
    result = verify_ledger(
        ledger.path,
        keys=[ledger.key],
        witness=read_witness_file(ledger.witness_path, ledger.chain_id),
        since="2000-01-01T00:00:00Z",
    )
    assert (result.ok, result.reason) == (False, "truncated"), result


def test_witness_catches_a_rewritten_ledger(ledger: Signed) -> None:
    # The attacker rewrites from 15 on and removes the checkpoints that would no longer match.
    tamper(ledger.path, ("DELETE FROM events WHERE seq >= 21", ()))
    ledger.rewrite(15, lambda event: event.update(agent_name="someone-else"))
    assert all(result.ok for result in both(ledger, witness=False))
    for result in both(ledger):
        assert result.reason in ("modified", "truncated"), result
        assert not result.ok


def test_checkpoint_forged_with_another_key(ledger: Signed) -> None:
    forger = Signer.generate(f"tether/{ledger.chain_id}")

    def forge(event: dict[str, Any]) -> None:
        if event["seq"] == 15:
            event["agent_name"] = "someone-else"
        if event["event_type"] == "ledger.checkpoint" and event["seq"] >= 21:
            # Re-sign what the rewritten chain now says, with the attacker's key.
            checkpoint = from_event(event, ledger.chain_id)
            event["detail"]["note"] = forger.sign(
                checkpoint_text(ledger.chain_id, checkpoint.size, checkpoint.root)
            )

    ledger.rewrite(15, forge)
    for result in both(ledger, witness=False):
        assert (result.reason, result.first_bad_seq) == ("unknown_key", 21), result


def test_checkpoint_forged_with_another_ledgers_trusted_key(ledger: Signed) -> None:
    """An auditor trusts the keys of several ledgers; a forger holding one of them (`tether/chn_other`)
    cannot sign checkpoints for this ledger: a key only vouches for its own origin."""
    other = Signer.generate("tether/chn_other")
    prev = {"hash": decode_body(body_of(ledger.path, 14))["hash"]}

    def forge(event: dict[str, Any]) -> None:
        if event["seq"] == 15:
            event["agent_name"] = "someone-else"
        if event["event_type"] == "ledger.checkpoint":
            root = bytes.fromhex(prev["hash"])
            event["detail"]["note"] = other.sign(checkpoint_text(ledger.chain_id, event["seq"], root))
            event["detail"]["root"] = root.hex()
        prev["hash"] = json.loads(sealed_body(event, prev["hash"]))["hash"]

    ledger.rewrite(15, forge)
    keys = [ledger.key, other.verifier]
    full = verify_ledger(ledger.path, keys=keys)
    out = io.StringIO()
    export_digests(ledger.path, out)
    digests = ledger.root / "digests.jsonl"
    digests.write_text(out.getvalue())
    audit = verify_digests(digests, keys=keys)
    for result in (full, audit):
        assert (result.reason, result.first_bad_seq) == ("unknown_key", 21), result


def test_auditor_mode_with_a_witness_shared_by_two_ledgers(ledger: Signed, tmp_path: Path) -> None:
    other_root = tmp_path / "other"
    other_root.mkdir()
    other = Signed(other_root)  # the same layout: checkpoints of the same sizes, other hashes
    with open(ledger.witness_path, "a", encoding="utf-8") as shared:
        shared.write(other.witness_path.read_text(encoding="utf-8"))
    out = io.StringIO()
    export_digests(ledger.path, out)
    digests = tmp_path / "digests.jsonl"
    digests.write_text(out.getvalue())
    # As `tether verify --digests`: the auditor does not know the chain id; the export's header says it.
    witness = read_witness_file(ledger.witness_path, None)
    result = verify_digests(digests, keys=[ledger.key], witness=witness)
    assert result.ok and result.witness_checked == len(CHECKPOINTS), result
    with pytest.raises(DigestFileError, match="no trusted key is for it"):
        verify_digests(digests, keys=[other.key])  # the auditor holds only another ledger's key


def test_old_checkpoint_replayed(ledger: Signed) -> None:
    old = decode_body(body_of(ledger.path, 21))["detail"]

    def replay(event: dict[str, Any]) -> None:
        if event["seq"] == 32:
            event["detail"] = old

    ledger.rewrite(32, replay)
    for result in both(ledger, witness=False):
        assert (result.reason, result.first_bad_seq) == ("replayed", 32), result


def test_bad_signature(ledger: Signed) -> None:
    def corrupt(event: dict[str, Any]) -> None:
        if event["seq"] == 21:
            note = event["detail"]["note"]
            event["detail"]["note"] = note[:-6] + ("A" if note[-6] != "A" else "B") + note[-5:]

    ledger.rewrite(21, corrupt)
    for result in both(ledger, witness=False):
        assert (result.reason, result.first_bad_seq) == ("bad_signature", 21), result


def test_forged_prune_record_does_not_hide_stored_events(ledger: Signed) -> None:
    """A `prunes` row claiming seq 0-20 were pruned (they are still stored, one changed) must not make
    verification start at the checkpoint after them."""
    body = body_of(ledger.path, 3)
    tamper(ledger.path, ("UPDATE events SET body = ? WHERE seq = 3", (body.replace("/pulls/3", "/pulls/9"),)))
    with sqlite3.connect(ledger.path) as conn:
        for statement in PRUNES_SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO prunes VALUES (20, '2025-01-01T00:00:00Z', 'forged.manifest', '00')")
    result = ledger.verify()
    assert (result.ok, result.reason, result.first_bad_seq) == (False, "modified", 3), result


def test_range_is_anchored_on_the_checkpoints_around_it(ledger: Signed) -> None:
    since, until = ledger.timestamp(23), ledger.timestamp(27)
    full = verify_ledger(ledger.path, since=since, until=until, keys=[ledger.key])
    audit = ledger.audit(since=since, until=until)
    for result in (full, audit):
        assert result.ok, result
        assert (result.first_seq, result.last_seq, result.checkpoints_checked) == (21, 32, 2)
    # A change outside the range does not fail it; one inside does, in both modes.
    body = body_of(ledger.path, 5)
    tamper(ledger.path, ("UPDATE events SET body = ? WHERE seq = 5", (body.replace("/pulls/5", "/pulls/6"),)))
    assert verify_ledger(ledger.path, since=since, until=until, keys=[ledger.key]).ok
    body = body_of(ledger.path, 25)
    tamper(
        ledger.path, ("UPDATE events SET body = ? WHERE seq = 25", (body.replace("/pulls/25", "/pulls/26"),))
    )
    assert verify_ledger(ledger.path, since=since, until=until, keys=[ledger.key]).reason == "modified"
    assert ledger.audit(since=since, until=until).reason == "modified"


ATTACKS = ("flip", "delete", "swap", "duplicate", "rewrite", "truncate")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return Signed(tmp_path_factory.mktemp("template"))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(attack=st.sampled_from(ATTACKS), data=st.data())
def test_random_corruptions_never_verify(template: Signed, attack: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = Signed(Path(directory), template)
        seq = data.draw(st.integers(0, 36), label="seq")  # 37, the last checkpoint, is not yet signed
        content_changed = True
        if attack == "flip":
            body = body_of(ledger.path, seq)
            position = data.draw(st.integers(0, len(body) - 1), label="position")
            # The stored prev_hash and hash repeat what the chain computes; a digest covers the event only.
            content_changed = position < body.index(',"prev_hash":')
            char = data.draw(
                st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: c != body[position])
            )
            tamper(
                ledger.path,
                (
                    "UPDATE events SET body = ? WHERE seq = ?",
                    (body[:position] + char + body[position + 1 :], seq),
                ),
            )
        elif attack == "delete":
            tamper(ledger.path, ("DELETE FROM events WHERE seq = ?", (seq,)))
        elif attack == "swap":
            other = data.draw(st.integers(0, 37).filter(lambda s: s != seq), label="other")
            first, second = body_of(ledger.path, seq), body_of(ledger.path, other)
            tamper(
                ledger.path,
                ("UPDATE events SET body = ? WHERE seq = ?", (second, seq)),
                ("UPDATE events SET body = ? WHERE seq = ?", (first, other)),
            )
        elif attack == "duplicate":
            tamper(
                ledger.path,
                (
                    "INSERT INTO events SELECT 38, 'evt_copy', timestamp, event_type, agent_name, run_id,"
                    " provider, token_id, body FROM events WHERE seq = ?",
                    (seq,),
                ),
            )
        elif attack == "rewrite":
            value = data.draw(st.text(min_size=1, max_size=8), label="value")
            ledger.rewrite(
                seq, lambda event: event.update(task_context=value) if event["seq"] == seq else None
            )
        else:
            tamper(ledger.path, ("DELETE FROM events WHERE seq >= ?", (seq + 1,)))
        full, audit = both(ledger)
        assert not full.ok, (attack, seq, full)
        assert not audit.ok or not content_changed, (attack, seq, audit)
