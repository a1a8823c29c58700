"""Signed checkpoints end to end: a real sidecar checkpoints to a witness file, the control API's audit
endpoints are behind the admin token, and an auditor holding only a digest export, the witness file and
the public key tells an intact ledger from a truncated one with the real CLI."""

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.integration.harness import GITHUB_SECRET

API = "https://api.github.com"
TOKEN = "adm-" + "7" * 40


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_checkpoints_api_and_auditor_mode(make_tether, tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    witness = tmp_path / "witness.jsonl"
    tether = make_tether(
        ledger={
            "witness_file": str(witness),
            "admin_token_file": str(token_file),
            "checkpoint_every_events": 4,
            "checkpoint_idle_seconds": 0.2,
        }
    )
    with tether.session() as s:
        for _ in range(5):
            assert s.get(f"{API}/zen").status_code == 200
    deadline = time.monotonic() + 120  # a liveness bound only: fsyncs crawl on a loaded machine
    while not witness.is_file() or len(witness.read_text().splitlines()) < 2:
        assert time.monotonic() < deadline, tether.log()
        time.sleep(0.1)

    url = f"{tether.api_url}/v1/verify"
    assert requests.get(url, timeout=10, proxies={}).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10, proxies={})
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    auth = {"Authorization": f"Bearer {TOKEN}"}
    verified = requests.get(url, headers=auth, timeout=30, proxies={}).json()
    assert verified["ok"] and verified["checkpoints_checked"] >= 2 and verified["witness_checked"] >= 2
    exported = requests.get(f"{tether.api_url}/v1/export/digests", headers=auth, timeout=30, proxies={})
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("application/x-ndjson")
    assert json.loads(exported.text.splitlines()[0])["export"]["chain_id"].startswith("chn_")

    assert tether.stop() == 0
    assert TOKEN not in tether.log() and GITHUB_SECRET not in tether.log()
    pubkey = cli("ledger", "--config", str(tether.config_path), "pubkey")
    assert pubkey.returncode == 0, pubkey.stderr
    keyfile = tmp_path / "tether.pub"
    keyfile.write_text(pubkey.stdout)
    ledger = str(tether.ledger_path)
    last = json.loads(witness.read_text().splitlines()[-1])["checkpoint"]
    with sqlite3.connect(ledger) as db:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    assert last["detail"]["size"] == count - 1  # the final checkpoint at shutdown covers everything

    digests = tmp_path / "digests.jsonl"
    export = cli("export", "digests", "--ledger", ledger)
    digests.write_text(export.stdout)
    audit = ["verify", "--digests", str(digests), "--pubkey", str(keyfile), "--witness", str(witness)]
    intact = cli(*audit)
    assert intact.returncode == 0 and "ledger intact" in intact.stdout, intact.stdout + intact.stderr
    assert (
        cli("verify", "--ledger", ledger, "--pubkey", str(keyfile), "--witness", str(witness)).returncode == 0
    )
    assert cli("verify", "--digests", str(digests)).returncode == 2  # an auditor must bring the key

    with sqlite3.connect(ledger) as db:
        db.execute("DROP TRIGGER events_no_delete")
        db.execute("DELETE FROM events WHERE seq >= ?", (count - 3,))
    digests.write_text(cli("export", "digests", "--ledger", ledger).stdout)
    for args in (audit, ["verify", "--ledger", ledger, "--witness", str(witness), "--json"]):
        out = cli(*args)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "truncated" in out.stdout
    as_json = json.loads(cli("verify", "--ledger", ledger, "--witness", str(witness), "--json").stdout)
    assert (as_json["reason"], as_json["first_bad_seq"]) == ("truncated", count - 3)
