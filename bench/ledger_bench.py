"""Ledger append throughput: durable events per second by concurrency (not a test; nothing asserted).

    .venv/bin/python bench/ledger_bench.py [--events N] [--dir DIR]

Each line: how many callers append at once, durable appends/s, and the average number of events per
commit (group commit: events that share one fsync). `sync` is `append_sync` from one thread, one
event per commit. Events are built beforehand (a full api.response event, ~900 bytes stored) so
the figure is the ledger's own. Run it on the disk the ledger will use: a tmpfs fakes durability.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tether.ledger.events import new_event
from tether.ledger.store import Ledger

CONCURRENCY = (1, 16, 64, 256, 1024)


def sample_event(index: int) -> dict[str, Any]:
    return new_event(
        "api.response",
        agent_id="agt_01JKGQ3V8T00000000000000AG",
        agent_name="pr-review-agent",
        run_id="run_01JKGQ3V8T00000000000000RN",
        task_context="review-pr-4521",
        triggered_by="alice@example.com",
        provider="github",
        token_id="tok_01JKGQ3V8T00000000000000TK",
        token_sha256="n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
        scope_requested=["repo:write", "issues:write"],
        scope_granted=["repo:read", "issues:read"],
        scope_downscoped=True,
        ttl_seconds=3600,
        policy_id="pol_code-review-agent-v3",
        source_ip="10.0.1.45",
        request={
            "method": "GET",
            "host": "api.github.com",
            "path": f"/repos/acme/api/pulls/{index}",
            "route": "GET /repos/{owner}/{repo}/pulls/{pull_number}",
            "bytes": 0,
        },
        response={"status": 200, "bytes": 5123, "duration_ms": 84.1},
        decision={"action": "allow"},
    )


def bench_sync(path: Path, events: list[dict[str, Any]]) -> tuple[float, float]:
    with Ledger(path) as ledger:
        started = time.perf_counter()
        for event in events:
            ledger.append_sync(event)
        elapsed = time.perf_counter() - started
        stats = ledger.stats()
    return len(events) / elapsed, stats.events_written / stats.commits


def bench_async(path: Path, events: list[dict[str, Any]], concurrency: int) -> tuple[float, float]:
    async def main(ledger: Ledger) -> float:
        async def caller(share: list[dict[str, Any]]) -> None:
            for event in share:
                await ledger.append(event)

        started = time.perf_counter()
        await asyncio.gather(*(caller(events[start::concurrency]) for start in range(concurrency)))
        return time.perf_counter() - started

    with Ledger(path) as ledger:
        elapsed = asyncio.run(main(ledger))
        stats = ledger.stats()
    return len(events) / elapsed, stats.events_written / stats.commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per run (default 20000)")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to put the scratch ledgers")
    args = parser.parse_args()

    started = time.perf_counter()
    events = [sample_event(index) for index in range(args.events)]
    build_us = (time.perf_counter() - started) / args.events * 1e6
    scratch = Path(tempfile.mkdtemp(prefix="ledger-bench-", dir=args.dir))
    try:
        print(f"ledger append throughput, {args.events} events per run, scratch dir {scratch}")
        print(f"(building one event with new_event: {build_us:.1f} us, not included below)")
        print(f"{'callers':>8}  {'appends/s':>10}  {'events/commit':>13}")
        sync_events = events[: max(1, args.events // 10)]  # one fsync each: keep it short
        rate, per_commit = bench_sync(scratch / "sync.db", sync_events)
        print(f"{'sync':>8}  {rate:>10,.0f}  {per_commit:>13.1f}")
        for concurrency in CONCURRENCY:
            rate, per_commit = bench_async(scratch / f"async-{concurrency}.db", events, concurrency)
            print(f"{concurrency:>8}  {rate:>10,.0f}  {per_commit:>13.1f}")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
