"""`make bench`: the proxy benchmark and the ledger benchmark, checked against the targets of issue 2;
prints the report and writes it to docs/performance.md (not a test: nothing is asserted).

.venv/bin/python bench/run.py [--rounds 3] [--seconds 3] [--warmup 1] [--output docs/performance.md]

Takes about two minutes on two cores. bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mitmproxy.version import VERSION as MITMPROXY_VERSION
from proxy_bench import BASELINE, CONCURRENCIES, ZEN_BODY, BenchError, ProxyResults, table
from proxy_bench import run as run_proxy_bench

from tether import __version__ as TETHER_VERSION

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR.parent / "docs" / "performance.md"
LEDGER_BENCH = BENCH_DIR / "ledger_bench.py"
LEDGER_BENCH_TIMEOUT_SECONDS = 180
INTEGRITY_BENCH = BENCH_DIR / "integrity_bench.py"

# Targets from issue 2.
THROUGHPUT_RATIO_TARGET = 0.90  # tether's req/s over bare mitmdump's
P50_DELTA_TARGET_MS = 0.5  # tether's p50 minus bare mitmdump's
LEDGER_TARGET = 20_000  # durable appends/s

# A result row of bench/ledger_bench.py: callers (or "sync"), appends/s, events per commit.
LEDGER_ROW = re.compile(r"^\s*(\w+)\s+([\d,]+)\s+([\d.]+)\s*$")


@dataclass(frozen=True)
class LedgerFigures:
    output: str
    best_rate: float
    best_callers: str


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def filesystem(path: Path) -> str:
    """The type of the filesystem holding `path` (its longest mount point in /proc/mounts)."""
    best, kind = "", "unknown"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mount_point, fs_type, *_ = line.split()
            inside = str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, kind = mount_point, fs_type
    return kind


def fsync_latency_ms(directory: Path, samples: int = 200) -> tuple[float, float]:
    """p50 and p99 of appending 1 KiB and fsyncing it: the floor under every durable ledger commit."""
    timings = []
    with tempfile.NamedTemporaryFile(dir=directory) as probe:
        for _ in range(samples):
            probe.write(b"x" * 1024)
            probe.flush()
            started = time.perf_counter()
            os.fsync(probe.fileno())
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return timings[samples // 2], timings[int(samples * 0.99) - 1]


def run_ledger_bench(directory: Path) -> LedgerFigures | None:
    """bench/ledger_bench.py in its own process; None when it is not there."""
    if not LEDGER_BENCH.exists():
        return None
    done = subprocess.run(
        [sys.executable, str(LEDGER_BENCH), "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=LEDGER_BENCH_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"bench/ledger_bench.py failed:\n{done.stderr[-2000:]}")
    rows = [match.groups() for line in done.stdout.splitlines() if (match := LEDGER_ROW.match(line))]
    if not rows:
        raise BenchError(f"no appends/s rows in bench/ledger_bench.py's output:\n{done.stdout}")
    callers, rate, _ = max(rows, key=lambda row: float(row[1].replace(",", "")))
    return LedgerFigures(done.stdout.rstrip(), float(rate.replace(",", "")), callers)


def run_integrity_bench(directory: Path) -> str:
    """bench/integrity_bench.py's docs/performance.md section (signed checkpoints, verification, archive)."""
    done = subprocess.run(
        [sys.executable, str(INTEGRITY_BENCH), "--dir", str(directory), "--markdown"],
        capture_output=True,
        text=True,
        timeout=LEDGER_BENCH_TIMEOUT_SECONDS,
        check=False,
        cwd=BENCH_DIR,
    )
    if done.returncode != 0:
        raise BenchError(f"bench/integrity_bench.py failed:\n{done.stderr[-2000:]}")
    return f"## Ledger integrity\n\n{done.stdout.strip()}\n"


def machine_details(scratch: Path, fsync: tuple[float, float], load: tuple[float, float, float]) -> str:
    rows = [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} cores"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("tether", TETHER_VERSION),
        ("Python", platform.python_version()),
        ("mitmproxy", MITMPROXY_VERSION),
        ("OpenSSL", ssl.OPENSSL_VERSION),
        ("SQLite", sqlite3.sqlite_version),
        ("scratch and ledger directory", f"{scratch} ({filesystem(scratch)})"),
        ("fsync of 1 KiB there", f"p50 {fsync[0]:.3f} ms, p99 {fsync[1]:.3f} ms"),
        ("load average before the run", " ".join(f"{value:.2f}" for value in load)),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def verdicts(proxy: ProxyResults, ledger: LedgerFigures | None) -> str:
    lines = ["| target (issue 2) | measured | |", "|---|--:|---|"]
    for concurrency in CONCURRENCIES:
        tether, base = proxy.cell("tether", concurrency), proxy.cell(BASELINE, concurrency)
        ratio = tether.rps / base.rps
        lines.append(
            f"| tether keeps >= {THROUGHPUT_RATIO_TARGET:.0%} of bare mitmdump's req/s, concurrency "
            f"{concurrency} | {ratio:.0%} | {_met(ratio >= THROUGHPUT_RATIO_TARGET)} |"
        )
    for concurrency in CONCURRENCIES:
        tether, base = proxy.cell("tether", concurrency), proxy.cell(BASELINE, concurrency)
        delta = tether.percentile(50) - base.percentile(50)
        lines.append(
            f"| tether adds <= {P50_DELTA_TARGET_MS} ms at p50, concurrency {concurrency} "
            f"| {delta:+.2f} ms | {_met(delta <= P50_DELTA_TARGET_MS)} |"
        )
    if ledger is None:
        lines.append(
            f"| ledger >= {LEDGER_TARGET:,} durable appends/s | not measured (no bench/ledger_bench.py) | |"
        )
    else:
        lines.append(
            f"| ledger >= {LEDGER_TARGET:,} durable appends/s | {ledger.best_rate:,.0f} "
            f"({ledger.best_callers} concurrent callers) | {_met(ledger.best_rate >= LEDGER_TARGET)} |"
        )
    return "\n".join(lines)


def report(
    proxy: ProxyResults, ledger: LedgerFigures | None, machine: str, started: datetime.datetime
) -> str:
    events = ", ".join(f"{kind} {count:,}" for kind, count in sorted(proxy.ledger_events.items()))
    ledger_section = (
        f"```\n{ledger.output}\n```"
        if ledger is not None
        else "bench/ledger_bench.py was not there: not measured."
    )
    return f"""# Performance

Generated by `make bench` (`bench/run.py`) on {started:%Y-%m-%d %H:%M} UTC; run it again to refresh.
bench/README.md explains the method and each figure. One machine, one run: compare the rows with each
other, not with figures from another machine.

## Targets

{verdicts(proxy, ledger)}

## Proxy: direct vs bare mitmdump vs tether

`GET /zen` ({len(ZEN_BODY)}-byte JSON body) for api.github.com, served by a minimal local HTTPS server,
over keep-alive HTTP/1.1 connections; concurrency {" and ".join(map(str, CONCURRENCIES))} (one connection
per concurrent client). {proxy.rounds} interleaved rounds per cell, each {proxy.seconds:g} s measured after
{proxy.warmup:g} s of warm-up. Ratios and deltas are against bare mitmdump at the same concurrency.

- **direct**: the load generator talks TLS to the upstream itself: the client's and the upstream's
  own cost, the floor under the other rows.
- **mitmdump**: stock `mitmdump -q`, no scripts, `connection_strategy=lazy`, the upstream's CA trusted.
  The client CONNECTs to the upstream's address, so mitmdump needs no address override.
- **tether**: `tether run` with a policy (GitHub provider, route `GET /zen`), a static bearer credential
  injected (the upstream checks it arrived), tagging, the api.github.com upstream address override and
  the durable ledger: `api.request` is committed (fsynced) before the call is forwarded and
  `api.response` before the answer is returned.

{table(proxy)}

Tether's ledger after the run (sanity check: every call recorded): {events}.

## Ledger appends

`bench/ledger_bench.py`: durable appends per second by the number of concurrent callers (group commit:
concurrent appends share one fsync).

{ledger_section}

## Machine

{machine}

The load generator, the upstream and the proxy under test are separate processes sharing these
cores, so the absolute figures are lower than on a bigger machine; the ratios are the point.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per proxy cell")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the report")
    args = parser.parse_args()

    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    scratch = Path(tempfile.gettempdir()).resolve()
    try:
        fsync = fsync_latency_ms(scratch)
        proxy = run_proxy_bench(args.rounds, args.seconds, args.warmup)
        print("ledger benchmark ...", file=sys.stderr)
        ledger = run_ledger_bench(scratch)
        print("ledger integrity benchmark ...", file=sys.stderr)
        integrity = run_integrity_bench(scratch) if INTEGRITY_BENCH.exists() else ""
    except BenchError as exc:
        sys.exit(f"benchmark failed: {exc}")
    text = report(proxy, ledger, machine_details(scratch, fsync, load), started)
    if integrity:
        text = text.replace("\n## Machine\n", f"\n{integrity}\n## Machine\n", 1)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    # The SIEM shipping figures (issue 5) go into their own section of the same report.
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "siem_bench.py"), "--update", str(args.output)], check=False
    )


if __name__ == "__main__":
    main()
