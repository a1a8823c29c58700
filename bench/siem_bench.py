"""SIEM shipping benchmark: events/s shipped from a ledger to the local Splunk HEC and Datadog
receivers, against a baseline that POSTs the same pre-encoded batches (no ledger, no encoding);
and the catch-up after an outage. Not a test: nothing is asserted.

.venv/bin/python bench/siem_bench.py [--events 50000] [--backlog 30000] [--update docs/performance.md]

The receivers run in their own process (so they share no interpreter lock with the shipper), over
HTTPS with gzip, as in production. About 40 s on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.siem_support import Siem, sink_from  # noqa: E402
from tether.ledger.events import new_event  # noqa: E402
from tether.ledger.store import Ledger  # noqa: E402
from tether.sinks.shipper import Shipper  # noqa: E402
from tether.sinks.state import SinkState  # noqa: E402

MARK_BEGIN = "<!-- siem-bench:begin -->"
MARK_END = "<!-- siem-bench:end -->"


def serve(directory: Path) -> None:
    """Child process: run the receivers, print their configs, keep only counts, wait for stdin EOF."""
    siem = Siem(directory)
    configs = {"hec": siem.hec_config(), "datadog": siem.datadog_config(), "ca": str(siem.ca.cert_path)}
    print(json.dumps(configs), flush=True)
    for line in sys.stdin:  # "count" → events stored so far; memory is kept small by clearing
        if line.strip() == "count":
            counts = {"hec": len(siem.hec.stored), "datadog": len(siem.datadog.stored)}
            print(json.dumps(counts), flush=True)
        elif line.strip() == "clear":
            for receiver in (siem.hec, siem.datadog):
                receiver.stored.clear()
                receiver.requests.clear()
            siem.hec.envelopes.clear()
            print("{}", flush=True)
    siem.stop()


async def fill(ledger: Ledger, count: int) -> None:
    """Append `count` realistic api.response events with concurrent callers (group commit)."""
    request = {
        "method": "GET",
        "host": "api.github.com",
        "path": "/repos/acme/api/pulls/7",
        "route": "GET /repos/{owner}/{repo}/pulls/{pull_number}",
        "body_sha256": None,
        "bytes": 0,
    }
    fields = {
        "agent_id": "agt_bench",
        "agent_name": "bench",
        "run_id": "run_bench",
        "provider": "github",
        "policy_id": "pol_bench",
        "request": request,
        "decision": {"action": "allow", "reason": None, "rule": None},
        "response": {"status": 200, "bytes": 5123, "duration_ms": 84.1},
    }
    for start in range(0, count, 2000):
        batch = [ledger.append(new_event("api.response", **fields)) for _ in range(min(2000, count - start))]
        await asyncio.gather(*batch)


async def ship(ledger_path: Path, options: dict[str, Any]) -> float:
    """Seconds to ship everything after the sink's cursor."""
    state = SinkState(ledger_path)
    shipper = Shipper(sink_from(options), state)
    target = state.last_seq()
    started = time.perf_counter()
    task = asyncio.create_task(shipper.run())
    while state.cursor(shipper.name) < target:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    shipper.stop(time.monotonic() + 5)
    await task
    await shipper.sink.close()
    state.close()
    return elapsed


async def baseline(ledger_path: Path, options: dict[str, Any], count: int) -> float:
    """Seconds to POST the same events, encoded up front, in batches of 1000 with one connection."""
    sink = sink_from(options)
    records = [sink.encode(e) for e in Ledger.open_readonly(ledger_path).iter_events()][:count]
    started = time.perf_counter()
    for start in range(0, len(records), 1000):
        outcome = await sink.send(records[start : start + 1000])
        assert outcome.kind == "ok", outcome
    elapsed = time.perf_counter() - started
    await sink.close()
    return elapsed


async def catch_up(ledger: Ledger, options: dict[str, Any], backlog: int, rate: float) -> tuple[float, int]:
    """A backlog of `backlog` events (an outage's worth) while new events keep arriving at `rate`/s:
    seconds until the sink has no lag, and how many events it shipped in that time."""
    state = SinkState(ledger.path)
    shipper = Shipper(sink_from(options), state)
    stop = asyncio.Event()

    async def producer() -> None:
        while not stop.is_set():
            await fill(ledger, 1)
            await asyncio.sleep(1 / rate)

    start_seq = state.cursor(shipper.name)
    feeding = asyncio.create_task(producer())
    started = time.perf_counter()
    task = asyncio.create_task(shipper.run())
    while state.cursor(shipper.name) < start_seq + backlog or state.cursor(shipper.name) < state.last_seq():
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    shipped = state.cursor(shipper.name) - start_seq
    stop.set()
    await feeding
    shipper.stop(time.monotonic() + 5)
    await task
    await shipper.sink.close()
    state.close()
    return elapsed, shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--backlog", type=int, default=30_000, help="5 minutes at 100 events/s")
    parser.add_argument("--update", type=Path, help="replace the SIEM section of this markdown file")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    scratch = Path(tempfile.mkdtemp(prefix="siem-bench-"))
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(scratch / "receivers")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    configs = json.loads(child.stdout.readline())

    def ask(command: str) -> dict[str, int]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(command + "\n")
        child.stdin.flush()
        answer: dict[str, int] = json.loads(child.stdout.readline())
        return answer

    rows = []
    ledger = Ledger(scratch / "ledger.db")
    asyncio.run(fill(ledger, args.events))
    size = (scratch / "ledger.db").stat().st_size
    for name in ("hec", "datadog"):
        options = {
            **configs[name],
            "batch_max_events": 1000,
            "batch_max_bytes": 4_000_000,
            "flush_seconds": 0.2,
        }
        elapsed = asyncio.run(ship(ledger.path, options))
        stored = ask("count")[name]
        ask("clear")
        raw = asyncio.run(baseline(ledger.path, options, args.events))
        ask("clear")
        rows.append((name, args.events / elapsed, args.events / raw, stored))
        print(f"{name}: {args.events / elapsed:,.0f} events/s shipped, baseline {args.events / raw:,.0f}",
              file=sys.stderr)  # fmt: skip

    catch = []
    backlog_ledger = Ledger(scratch / "backlog.db")
    asyncio.run(fill(backlog_ledger, args.backlog))
    for name in ("hec", "datadog"):
        options = {**configs[name], "name": f"{name}-catchup", "batch_max_events": 1000,
                   "batch_max_bytes": 4_000_000, "flush_seconds": 0.2}  # fmt: skip
        elapsed, shipped = asyncio.run(catch_up(backlog_ledger, options, args.backlog, 100.0))
        ask("clear")
        catch.append((name, elapsed, shipped))
        print(f"{name}: backlog of {args.backlog:,} drained in {elapsed:.1f}s", file=sys.stderr)
    ledger.close()
    backlog_ledger.close()
    child.stdin.close()
    child.wait(timeout=30)

    text = section(rows, catch, args.events, args.backlog, size)
    print(text)
    if args.update:
        current = args.update.read_text() if args.update.exists() else ""
        block = f"{MARK_BEGIN}\n{text}\n{MARK_END}"
        if MARK_BEGIN in current:
            current = re.sub(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), block, current, flags=re.S)
        else:
            current = current.rstrip("\n") + "\n\n" + block + "\n"
        args.update.write_text(current)
        print(f"updated {args.update}", file=sys.stderr)


def section(
    rows: list[tuple[str, float, float, int]], catch: list[tuple[str, float, int]], events: int, backlog: int,
    size: int,
) -> str:  # fmt: skip
    names = {"hec": "Splunk HEC", "datadog": "Datadog Logs"}
    lines = [
        "## SIEM shipping",
        "",
        f"`bench/siem_bench.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): "
        f"{events:,} ledger events (api.response, ~{size // events} bytes each in the ledger) "
        "shipped from the ledger to the local receivers (`tether.sandbox.siem`, in their own "
        "process, HTTPS, gzip), batches of 1000. **Baseline**: the same events encoded up front "
        "and POSTed in batches of 1000 over one connection (no ledger reads, no encoding, no "
        "cursor writes): the receiver's and the network's share of the cost.",
        "",
        "| sink | events/s shipped | baseline events/s | shipped / baseline | target | |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for name, rate, raw, _ in rows:
        met = "met" if rate >= 10_000 else "**not met**"
        lines.append(f"| {names[name]} | {rate:,.0f} | {raw:,.0f} | {rate / raw:.0%} | >= 10,000/s | {met} |")
    lines += [
        "",
        f"**Catch-up after an outage**: a backlog of {backlog:,} events (what a 5-minute outage "
        "at 100 events/s leaves) while new events keep arriving at 100/s: the time from the "
        "receiver being reachable until the sink's lag is 0. The backlog is the full 5 minutes' "
        "worth; only the outage itself is not waited out. In production add the retry delay: with "
        "the default `backoff_max_seconds: 60` and full jitter, the first retry after the receiver "
        "returns comes on average 30 s (at most 60 s) later.",
        "",
        "| sink | backlog | events shipped | catch-up time |",
        "|---|--:|--:|--:|",
    ]
    for name, elapsed, shipped in catch:
        lines.append(f"| {names[name]} | {backlog:,} | {shipped:,} | {elapsed:.1f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
