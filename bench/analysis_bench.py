"""Analysis benchmark: how fast the anomaly detector keeps up with the ledger, and how long the
investigation reads take. Not a test; prints figures (bench/README.md).

.venv/bin/python bench/analysis_bench.py [--runs 300] [--calls 100]

The detector runs beside the request path: it must compare events faster than the ledger appends
them (issue 2's target: 20,000 durable appends/s), or its queue fills and comparisons are skipped.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from tether.analysis.baseline import Detector
from tether.analysis.report import render_report
from tether.analysis.runs import run_summaries
from tether.analysis.settings import AnomalySettings
from tether.ledger.events import new_event
from tether.ledger.store import Ledger

ROUTES = (
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    "GET /repos/{owner}/{repo}/pulls",
    "GET /repos/{owner}/{repo}/issues",
    "POST /repos/{owner}/{repo}/issues",
)


def events(runs: int, calls: int) -> list[dict[str, Any]]:
    """`runs` header-named runs (never ended, the worst case: all stay open) of `calls` calls each."""
    out = []
    for run in range(runs):
        run_id = f"run_{run:05d}"
        base = dict(agent_name="bench-agent", run_id=run_id, task_context=f"task {run}", provider="github")
        out.append(new_event("token.minted", token_id=f"tok_{run}", scope_requested=["repo:read"], **base))
        for call in range(calls):
            route = ROUTES[call % len(ROUTES)]
            method, _, _ = route.partition(" ")
            path = "/repos/a/b/pulls/1"
            request = {"method": method, "host": "api.github.com", "path": path, "route": route}
            out.append(new_event("api.request", token_id=f"tok_{run}", request=request, **base))
    for seq, event in enumerate(out):
        event["seq"] = seq
    return out


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    stream = events(args.runs, args.calls)
    settings = AnomalySettings()

    detector = Detector(settings)
    start = time.perf_counter()
    for event in stream:
        detector.observe(event)
    observed = time.perf_counter() - start
    opened = f"({args.runs} open runs)"
    print(f"detector.observe  {len(stream):>8} events  {rate(len(stream), observed)}  {opened}")

    start = time.perf_counter()
    Detector(settings).learn(stream)
    learned = time.perf_counter() - start
    print(f"detector.learn    {len(stream):>8} events  {rate(len(stream), learned)}")

    with tempfile.TemporaryDirectory() as directory:
        ledger = Ledger(Path(directory) / "ledger.db")
        for event in stream:
            ledger.append_sync({**event, "seq": None})
        start = time.perf_counter()
        summaries = run_summaries(ledger)
        summarised = time.perf_counter() - start
        took = f"{summarised * 1000:>10.0f} ms"
        print(f"run_summaries     {len(stream):>8} events  {took}  ({len(summaries)} runs)")
        start = time.perf_counter()
        html = render_report(ledger, "run_00000")
        reported = time.perf_counter() - start
        assert html is not None
        print(
            f"render_report     {args.calls + 1:>8} events  {reported * 1000:>10.0f} ms  "
            f"(incl. verifying all {len(stream)} events)"
        )
        ledger.close()


if __name__ == "__main__":
    main()
