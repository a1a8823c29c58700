"""A/B of tether's lean master (not a test): the same tether with mitmdump's full stock addon set.

.venv/bin/python bench/master_ab.py [--rounds 4] [--seconds 3]

`tether run` loads only the stock mitmproxy addons a forward proxy needs (tether/proxy/master.py).
This runs bare mitmdump, tether, and tether on mitmdump's `DumpMaster` (every stock addon, as before
the change) side by side, in interleaved rounds, and prints req/s and p50 at concurrency 1 and 16.
Internal entry point: `stock-tether ARGS...` runs `tether ARGS...` on DumpMaster.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import proxy_bench as pb

from tether.sandbox.sidecar import SidecarProcess

CONCURRENCIES = (1, 16)


def stock_tether(argv: list[str]) -> int:
    from mitmproxy.tools.dump import DumpMaster

    import tether.proxy.master as master
    from tether.cli import main

    master.TetherMaster = lambda opts: DumpMaster(opts, with_termlog=False, with_dumper=False)  # type: ignore
    return main(argv)


class StockSidecar(SidecarProcess):
    def start(self) -> StockSidecar:
        with self.log_path.open("ab") as log:
            command = [sys.executable, __file__, "stock-tether", "run", "--config", str(self.config_path)]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        deadline = time.monotonic() + pb.START_TIMEOUT_SECONDS
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise pb.BenchError(f"stock tether did not start:\n{self.log()}")
            time.sleep(0.1)
        return self


def run(rounds: int, seconds: float) -> str:
    cells: dict[tuple[str, int], pb.Cell] = {}
    with tempfile.TemporaryDirectory(prefix="tether-ab-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        secret = directory / "secret"
        secret.write_text(f"ghs_bench{secrets.token_hex(16)}\n")
        port, ca = stack.enter_context(pb._upstream(directory, secret))
        mitmdump = stack.enter_context(pb._mitmdump(directory / "mitmdump", port, ca))
        lean, _ = stack.enter_context(pb._tether(directory / "lean", port, ca, secret))
        stock, _ = stack.enter_context(
            pb._tether(directory / "stock", port, ca, secret, "tether", StockSidecar)
        )
        stock = pb.Target("tether-stock-addons", stock.address, stock.tunnel, stock.ca_file, stock.credential)
        targets = [mitmdump, lean, stock]
        for number in range(rounds):
            for concurrency in CONCURRENCIES:
                shift = number % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    sample = pb.run_load(target, concurrency, 0.5, seconds)
                    cells.setdefault((target.name, concurrency), pb.Cell(target.name, concurrency))
                    cells[(target.name, concurrency)].add(sample, seconds)
    lines = [
        "| target | concurrency | req/s | vs mitmdump | p50 ms | req/s per round |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for concurrency in CONCURRENCIES:
        base = cells[("mitmdump", concurrency)]
        for name in ("mitmdump", "tether", "tether-stock-addons"):
            cell = cells[(name, concurrency)]
            spread = f"{min(cell.round_rps):.0f}-{max(cell.round_rps):.0f}"
            lines.append(
                f"| {name} | {concurrency} | {cell.rps:,.0f} | {cell.rps / base.rps:.0%} "
                f"| {cell.percentile(50):.2f} | {spread} |"
            )
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["stock-tether"]:
        sys.exit(stock_tether(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(run(args.rounds, args.seconds))


if __name__ == "__main__":
    main()
