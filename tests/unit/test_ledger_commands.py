"""`tether ledger pubkey|checkpoint|rotate-key` and `tether verify` with keys, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.cli import main
from tether.ledger.checkpoint import KeySource
from tether.ledger.events import new_event
from tether.ledger.signing import Signer
from tether.ledger.store import Ledger


def test_key_commands_and_verify_with_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    path = tmp_path / "state" / "ledger.db"
    with Ledger(path) as ledger:
        ledger.append_sync(new_event("api.request", run_id="run_1"))
        chain_id = ledger.chain_id
    ledger_arg = ["--ledger", str(path)]
    assert main(["ledger", *ledger_arg, "pubkey"]) == 2  # no key yet: `tether run` creates it
    KeySource(path.parent / "ledger-signing.key", chain_id, create=True)
    capsys.readouterr()

    assert main(["ledger", *ledger_arg, "pubkey"]) == 0
    old_key = capsys.readouterr().out.strip()
    assert old_key.startswith(f"tether/{chain_id}+")
    assert main(["ledger", *ledger_arg, "checkpoint"]) == 0
    assert "checkpoint at seq 1 covers 1 events" in capsys.readouterr().out
    assert main(["ledger", *ledger_arg, "rotate-key"]) == 0
    assert old_key in capsys.readouterr().out
    assert main(["ledger", *ledger_arg, "checkpoint"]) == 0  # under the new key

    (tmp_path / "old.pub").write_text(old_key + "\n")
    assert main(["verify", *ledger_arg, "--json"]) == 0  # the local key and the retired one
    assert main(["verify", *ledger_arg, "--pubkey", str(tmp_path / "old.pub")]) == 0  # trust carries over
    capsys.readouterr()
    (tmp_path / "stranger.pub").write_text(Signer.generate(f"tether/{chain_id}").verifier.encode() + "\n")
    assert main(["verify", *ledger_arg, "--pubkey", str(tmp_path / "stranger.pub"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "unknown_key"
    (tmp_path / "digests.jsonl").write_text("")
    assert main(["verify", "--digests", str(tmp_path / "digests.jsonl")]) == 2  # auditors bring the key
