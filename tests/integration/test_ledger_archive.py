"""Archive and retention against a real S3-compatible server (moto in server mode, Object Lock on)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
import yaml
from moto.server import ThreadedMotoServer  # type: ignore[import-untyped]

from tether.ledger.archive import ArchiveError, Archiver, S3Archive, archive_segments, prune, pruned_through
from tether.ledger.checkpoint import Checkpointer, KeySource
from tether.ledger.events import new_event
from tether.ledger.settings import ArchiveSettings
from tether.ledger.signing import Signer
from tether.ledger.store import Ledger
from tether.ledger.verify import verify_ledger
from tether.sandbox.sidecar import free_port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


def make_bucket(endpoint: str, name: str, *, lock: bool) -> Any:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return client


def signed_ledger(root: Path, segments: int) -> tuple[Ledger, KeySource]:
    ledger = Ledger(root / "ledger.db")
    keys = KeySource(root / "ledger-signing.key", ledger.chain_id, create=True)
    checkpointer = Checkpointer(ledger, keys)
    for _ in range(segments):
        for index in range(5):
            ledger.append_sync(new_event("api.request", run_id="run_1", request={"path": f"/p/{index}"}))
        checkpointer.checkpoint_sync()
    return ledger, keys


def test_archive_with_object_lock_prune_and_verify_as_one_chain(
    s3_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    client = make_bucket(s3_endpoint, "locked", lock=True)
    ledger, keys = signed_ledger(tmp_path, 3)  # checkpoints at seq 5, 11, 17
    archive = S3Archive("s3://locked/tether", ledger.chain_id, endpoint_url=s3_endpoint)
    written = archive_segments(ledger, archive, keys.current(), retention_days=30)
    assert [(m.first_seq, m.last_seq) for m in written] == [(0, 4), (5, 10), (11, 16)]
    assert archive_segments(ledger, archive, keys.current()) == []  # nothing new sealed
    head = client.head_object(Bucket="locked", Key=written[0].fields["object"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=29
    )
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):  # compliance mode holds
        client.delete_object(Bucket="locked", Key=written[0].fields["object"], VersionId=head["VersionId"])
    body = client.get_object(Bucket="locked", Key=written[1].fields["object"])["Body"].read()
    assert [line[:1] for line in gzip.decompress(body).decode().splitlines()] == ["{"] * 6

    key = keys.current().verifier
    # A SIEM sink reads from the ledger: nothing it has not delivered is pruned.
    assert prune(ledger, archive, keys=[key], older_than_days=0, sinks=["splunk"]) is None
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("CREATE TABLE sink_cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
        conn.execute("INSERT INTO sink_cursors VALUES ('splunk', 7)")
    assert prune(ledger, archive, keys=[key], older_than_days=0, sinks=["splunk"]) == 4
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE sink_cursors SET seq = 17")
    assert prune(ledger, archive, keys=[key], older_than_days=0) == 16
    assert pruned_through(ledger.path) == 16
    with sqlite3.connect(ledger.path) as conn:
        assert conn.execute("SELECT min(seq) FROM events").fetchone() == (17,)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE seq = 17")  # the trigger is back
    local = verify_ledger(ledger.path, keys=[key])
    assert local.ok and local.first_seq == 17, local
    whole = verify_ledger(ledger.path, keys=[key], archive=archive)
    assert whole.ok and (whole.first_seq, whole.events_checked, whole.checkpoints_checked) == (0, 18, 3), (
        whole
    )
    ledger.close()


def test_edited_and_deleted_segments_are_found(s3_endpoint: str, aws_env: None, tmp_path: Path) -> None:
    client = make_bucket(s3_endpoint, "plain", lock=False)
    ledger, keys = signed_ledger(tmp_path, 3)
    archive = S3Archive("s3://plain", ledger.chain_id, endpoint_url=s3_endpoint)
    written = archive_segments(ledger, archive, keys.current())
    key = keys.current().verifier
    assert verify_ledger(ledger.path, keys=[key], archive=archive).ok

    original = client.get_object(Bucket="plain", Key=written[1].fields["object"])["Body"].read()
    edited = gzip.compress(gzip.decompress(original).replace(b"/p/3", b"/p/9"))
    client.put_object(Bucket="plain", Key=written[1].fields["object"], Body=edited)
    result = verify_ledger(ledger.path, keys=[key], archive=archive)
    assert (result.reason, result.first_bad_seq) == ("modified", 5), result

    client.put_object(Bucket="plain", Key=written[1].fields["object"], Body=original)
    client.delete_object(Bucket="plain", Key=written[1].fields["object"])
    result = verify_ledger(ledger.path, keys=[key], archive=archive)
    assert (result.reason, result.first_bad_seq) == ("missing", 5), result

    client.delete_object(
        Bucket="plain", Key=written[1].key
    )  # its manifest too: the chain of manifests breaks
    result = verify_ledger(ledger.path, keys=[key], archive=archive)
    assert (result.reason, result.first_bad_seq) == ("missing", 5), result
    ledger.close()


def test_prune_refuses_unconfirmed_archives(s3_endpoint: str, aws_env: None, tmp_path: Path) -> None:
    """Anyone who can write to the bucket could plant a manifest or remove one: pruning deletes only events
    whose segments, from the first stored event on, are signed by the ledger's key and equal to them."""
    client = make_bucket(s3_endpoint, "planted", lock=False)
    ledger, keys = signed_ledger(tmp_path, 3)  # segments 0-4, 5-10, 11-16; events 17 on not archived
    archive = S3Archive("s3://planted", ledger.chain_id, endpoint_url=s3_endpoint)
    written = archive_segments(ledger, archive, keys.current())
    key = keys.current().verifier

    def plant(first: int, last: int, signer: Signer, body: bytes) -> None:
        name = f"{archive.prefix}{first:016d}-{last:016d}"
        fields = {
            "chain_id": ledger.chain_id,
            "first_seq": first,
            "last_seq": last,
            "time_to": "2000-01-01T00:00:00.000Z",
            "object": f"{name}.jsonl.gz",
            "sha256": hashlib.sha256(body).hexdigest(),
            "prev": written[-1].signature,
        }
        client.put_object(Bucket="planted", Key=f"{name}.jsonl.gz", Body=body)
        note = signer.sign(json.dumps(fields, sort_keys=True) + "\n")
        client.put_object(Bucket="planted", Key=f"{name}.manifest", Body=note.encode())

    # A manifest by another key claiming the events not yet archived.
    plant(17, 99, Signer.generate(keys.current().name), gzip.compress(b"{}\n"))
    with pytest.raises(ArchiveError, match="not signed by the ledger's key"):
        prune(ledger, archive, keys=[key], older_than_days=0)
    # Signed by the ledger's key (say, a stolen old manifest) but not holding the stored events.
    client.delete_object(Bucket="planted", Key=f"{archive.prefix}{17:016d}-{99:016d}.manifest")
    plant(17, 99, keys.current(), gzip.compress(b"{}\n"))
    with pytest.raises(ArchiveError, match=r"does not hold the stored events 17\.\.99"):
        prune(ledger, archive, keys=[key], older_than_days=0)
    client.delete_object(Bucket="planted", Key=f"{archive.prefix}{17:016d}-{99:016d}.manifest")
    # A segment missing in the middle: the one after it does not vouch for it.
    client.delete_object(Bucket="planted", Key=written[1].key)
    with pytest.raises(ArchiveError, match="no segment starting at seq 5"):
        prune(ledger, archive, keys=[key], older_than_days=0)
    with sqlite3.connect(ledger.path) as conn:
        assert conn.execute("SELECT min(seq), max(seq) FROM events").fetchone() == (0, 17)
    ledger.close()


def test_background_archiver_survives_an_unusable_key_file(
    s3_endpoint: str, aws_env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_bucket(s3_endpoint, "survive", lock=False)
    ledger, keys = signed_ledger(tmp_path, 1)
    retired = tmp_path / "ledger-signing.key.00000000.retired"
    retired.write_text(Signer.generate(keys.name).encode() + "\n")
    retired.chmod(0o644)  # readable by others: refused when pruning needs the trusted keys
    settings = ArchiveSettings(url="s3://survive", interval_seconds=1, local_retention_days=0)
    archiver = Archiver(
        ledger, S3Archive("s3://survive", ledger.chain_id, endpoint_url=s3_endpoint), keys, settings
    )

    async def rounds() -> bool:
        task = asyncio.create_task(archiver.run())
        deadline = time.monotonic() + 60  # a liveness bound only
        while "archive round failed" not in caplog.text and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.05)
        alive = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return alive

    with caplog.at_level(logging.ERROR, logger="tether.ledger"):
        assert asyncio.run(rounds()), caplog.text
    assert "readable by others" in caplog.text
    ledger.close()


def test_cli_archives_and_verifies_across_archive_and_ledger(
    s3_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    make_bucket(s3_endpoint, "cli", lock=True)
    ledger, _ = signed_ledger(tmp_path, 2)
    ledger.close()
    config = tmp_path / "tether.yaml"
    archive = {
        "url": "s3://cli/ledgers",
        "endpoint_url": s3_endpoint,
        "retention_days": 1,
        "local_retention_days": 0,
    }
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "ledger": {"archive": archive}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tether.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ,
        )

    archived = cli("ledger", "--config", str(config), "archive")
    assert archived.returncode == 0, archived.stderr
    assert "archived through seq 10" in archived.stdout
    verify = ["verify", "--config", str(config), "--ledger", str(tmp_path / "ledger.db")]
    assert cli(*verify).returncode == 0  # local only: starts at the checkpoint after the pruned events
    whole = cli(*verify, "--archive", "s3://cli/ledgers", "--json")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert json.loads(whole.stdout)["first_seq"] == 0
    assert "testing" not in whole.stdout + whole.stderr + archived.stderr
