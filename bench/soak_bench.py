"""Soak benchmark (not a test): tether's memory over many requests, then how fast its ledger verifies.

.venv/bin/python bench/soak_bench.py [--requests 100000] [--concurrency 16] [--window 2]

Drives the full tether (durable ledger, credential injection; as `proxy_bench.py`'s `tether` row) with
`--requests` requests in windows of `--window` seconds, sampling tether's resident memory (VmRSS)
after each window. Memory is "flat" when the last sample is within 10 % of the sample taken once 10 %
of the requests were done (the warm-up: caches, TLS contexts and the interpreter settle first). Then
`tether verify`'s engine checks the whole ledger: verification events/s.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from proxy_bench import _tether, _upstream, run_load

from tether.ledger.verify import verify_ledger

WARMUP_FRACTION = 0.10
FLAT_TOLERANCE = 0.10


@dataclass(frozen=True)
class SoakResult:
    requests: int
    concurrency: int
    seconds: float
    samples: list[tuple[int, int]]  # (requests done, RSS in KiB)
    verified_events: int
    verify_seconds: float

    @property
    def warm_rss_kib(self) -> int:
        threshold = self.requests * WARMUP_FRACTION
        return next(rss for done, rss in self.samples if done >= threshold)

    @property
    def final_rss_kib(self) -> int:
        return self.samples[-1][1]

    @property
    def growth(self) -> float:
        return self.final_rss_kib / self.warm_rss_kib - 1

    @property
    def flat(self) -> bool:
        return abs(self.growth) <= FLAT_TOLERANCE

    @property
    def verify_rate(self) -> float:
        return self.verified_events / self.verify_seconds


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def run(requests: int, concurrency: int, window: float, progress: bool = True) -> SoakResult:
    with tempfile.TemporaryDirectory(prefix="tether-soak-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        secret_file = directory / "secret"
        secret_file.write_text(f"ghs_bench{secrets.token_hex(16)}\n")
        upstream_port, upstream_ca = stack.enter_context(_upstream(directory, secret_file))
        sidecar_dir = directory / "tether"
        target, sidecar = stack.enter_context(_tether(sidecar_dir, upstream_port, upstream_ca, secret_file))
        assert sidecar.process is not None
        pid = sidecar.process.pid
        samples = [(0, rss_kib(pid))]
        started = time.monotonic()
        done = 0
        while done < requests:
            sample = run_load(target, concurrency, 0.0, window)
            done += sample["completed"]
            samples.append((done, rss_kib(pid)))
            if progress:
                print(
                    f"soak: {done:,}/{requests:,} requests, RSS {samples[-1][1] / 1024:.1f} MiB",
                    file=sys.stderr,
                )
        elapsed = time.monotonic() - started
        stack.close()  # stop tether before verifying its ledger
        verify_started = time.perf_counter()
        result = verify_ledger(sidecar_dir / "state" / "ledger.db")
        verify_seconds = time.perf_counter() - verify_started
        if not result.ok:
            raise RuntimeError(f"the soak ledger does not verify: {result.reason}")
    return SoakResult(done, concurrency, elapsed, samples, result.events_checked, verify_seconds)


def summary(result: SoakResult) -> str:
    warm, final = result.warm_rss_kib / 1024, result.final_rss_kib / 1024
    return (
        f"RSS after warm-up {warm:.1f} MiB, after {result.requests:,} requests {final:.1f} MiB "
        f"({result.growth:+.1%})"
    )


def table(result: SoakResult) -> str:
    step = max(1, len(result.samples) // 10)
    shown = result.samples[::step] + ([result.samples[-1]] if (len(result.samples) - 1) % step else [])
    lines = ["| requests done | RSS MiB |", "|--:|--:|"]
    lines += [f"| {done:,} | {rss / 1024:.1f} |" for done, rss in shown]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=2.0, help="seconds between RSS samples")
    args = parser.parse_args()
    result = run(args.requests, args.concurrency, args.window)
    print(table(result))
    print(f"{summary(result)}; verified {result.verified_events:,} events at {result.verify_rate:,.0f}/s")


if __name__ == "__main__":
    main()
