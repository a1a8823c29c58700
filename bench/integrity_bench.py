"""Ledger integrity throughput (not a test; nothing asserted):

- durable appends/s with signed checkpoints on (default schedule: every 1000 events), against the same
  run without the checkpointer;
- full verification (`tether verify`: every stored event re-hashed and checked, every checkpoint
  signature) in events/s;
- digest export and digest-only verification (auditor mode) in events/s;
- archive throughput (events/s sealed, uploaded, read back and checked) and `verify --archive`, against
  moto's S3 server on this machine (it shares the CPU: a floor, not what a real S3 endpoint gives).

    .venv/bin/python bench/integrity_bench.py [--events N] [--callers C] [--dir DIR] [--markdown]

`--markdown` prints the section `make bench` puts into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path

from ledger_bench import sample_event

from tether.ledger.checkpoint import Checkpointer, KeySource
from tether.ledger.export import export_digests
from tether.ledger.store import Ledger
from tether.ledger.verify import verify_digests, verify_ledger


def appends(path: Path, events: int, callers: int, checkpoints: bool) -> tuple[float, int]:
    """Durable appends/s from `callers` concurrent callers; the number of checkpoints written."""
    batch = [sample_event(index) for index in range(events)]

    async def main(ledger: Ledger) -> float:
        keys = KeySource(path.with_suffix(".key"), ledger.chain_id, create=True)
        checkpointer = Checkpointer(ledger, keys)
        task = asyncio.create_task(checkpointer.run()) if checkpoints else None

        async def caller(share: list[dict[str, object]]) -> None:
            for event in share:
                await ledger.append(event)  # type: ignore[arg-type]

        started = time.perf_counter()
        await asyncio.gather(*(caller(batch[start::callers]) for start in range(callers)))
        elapsed = time.perf_counter() - started
        if task is not None:
            task.cancel()
            await checkpointer.aclose()
        return elapsed

    with Ledger(path) as ledger:
        elapsed = asyncio.run(main(ledger))
        written = sum(1 for _ in ledger.iter_events(event_types=["ledger.checkpoint"]))
    return events / elapsed, written


def archive_figures(path: Path, keys: KeySource) -> tuple[float, float]:
    """(archived events/s, verified events/s with --archive) against a local moto S3 server."""
    import os

    import boto3  # type: ignore[import-untyped]
    from moto.server import ThreadedMotoServer  # type: ignore[import-untyped]

    from tether.ledger.archive import S3Archive, archive_segments
    from tether.sandbox.sidecar import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="bench", ObjectLockEnabledForBucket=True
        )
        with Ledger(path) as ledger:
            archive = S3Archive(
                "s3://bench/tether", ledger.chain_id, endpoint_url=endpoint, region="us-east-1"
            )
            started = time.perf_counter()
            written = archive_segments(ledger, archive, keys.current(), retention_days=1)
            archived = sum(m.last_seq - m.first_seq + 1 for m in written) / (time.perf_counter() - started)
            size = ledger.head()[0] + 1
        verified = timed(
            "archive", size, lambda: verify_ledger(path, keys=[keys.current().verifier], archive=archive)
        )
    finally:
        server.stop()
    return archived, verified


def timed(label: str, count: int, func: object) -> float:
    started = time.perf_counter()
    func()  # type: ignore[operator]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--callers", type=int, default=256)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--markdown", action="store_true", help="print the docs/performance.md section")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="integrity-bench-", dir=args.dir))
    try:
        bare, _ = appends(scratch / "bare.db", args.events, args.callers, checkpoints=False)
        path = scratch / "signed.db"
        signed, checkpoints = appends(path, args.events, args.callers, checkpoints=True)
        keys = KeySource(path.with_suffix(".key"), Ledger.open_readonly(path).chain_id, create=False)
        size = Ledger.open_readonly(path).head()[0] + 1
        full = timed("verify", size, lambda: verify_ledger(path, keys=[keys.current().verifier]))
        digests = scratch / "digests.jsonl"

        def export() -> None:
            with open(digests, "w", encoding="utf-8") as out:
                export_digests(path, out)

        exported = timed("export", size, export)
        audited = timed("audit", size, lambda: verify_digests(digests, keys=[keys.current().verifier]))
        result = verify_digests(digests, keys=[keys.current().verifier])
        assert result.ok and result.checkpoints_checked == checkpoints, result
        archived, archive_verified = archive_figures(path, keys)
    finally:
        shutil.rmtree(scratch)
    rows = [
        (f"durable appends/s, {args.callers} callers, no checkpointer (baseline)", f"{bare:,.0f}", "100%"),
        (
            f"durable appends/s, {args.callers} callers, checkpoints every 1000 events"
            f" ({checkpoints} written)",
            f"{signed:,.0f}",
            f"{signed / bare:.0%}",
        ),
        ("full verification (`tether verify`), events/s", f"{full:,.0f}", ""),
        ("digest export (`tether export digests`), events/s", f"{exported:,.0f}", ""),
        ("digest-only verification (`tether verify --digests`), events/s", f"{audited:,.0f}", ""),
        ("archive to S3 (moto server, Object Lock), events/s", f"{archived:,.0f}", ""),
        ("verification across archive and ledger (`--archive`), events/s", f"{archive_verified:,.0f}", ""),
    ]
    if args.markdown:
        print(
            f"`bench/integrity_bench.py`: {args.events:,} api.response events (~900 bytes stored each).\n\n"
            "| figure | value | vs baseline |\n|---|--:|--:|"
        )
        for label, value, ratio in rows:
            print(f"| {label} | {value} | {ratio} |")
    else:
        for label, value, ratio in rows:
            print(f"{label:<90} {value:>10} {ratio:>5}")


if __name__ == "__main__":
    main()
