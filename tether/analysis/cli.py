"""The investigation commands: `tether runs`, `tether report`, `tether baseline show`,
`tether policy suggest`. Registered by tether/cli.py; the logic lives in the analysis modules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tether.ledger.store import Ledger

Command = Callable[..., argparse.ArgumentParser]


def _ledger_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", help="Ledger database (default: from the config)")


def _open(args: argparse.Namespace) -> Ledger:
    from tether.cli import _ledger_path

    return Ledger.open_readonly(_ledger_path(args))


def register(command: Command) -> None:
    """Add the top-level investigation commands with tether/cli.py's `command` helper."""
    runs = command(
        "runs", "List runs with a summary (calls, denials, tokens, providers, duration).", cmd_runs
    )
    _ledger_args(runs)
    runs.add_argument("--agent")
    runs.add_argument("--since", help="Runs with events at or after this time (ISO 8601)")
    runs.add_argument("--until", help="Runs with events at or before this time (ISO 8601)")
    runs.add_argument("--json", action="store_true", help="One JSON object per run")
    report = command("report", "Write a self-contained HTML incident report for a run.", cmd_report)
    _ledger_args(report)
    report.add_argument("run", help="The run id")
    report.add_argument("-o", "--output", type=Path, help="Write the report here (default: stdout)")


def cmd_runs(args: argparse.Namespace) -> int:
    from tether.analysis.runs import format_runs, run_summaries

    ledger = _open(args)
    try:
        summaries = run_summaries(ledger, agent=args.agent, since=args.since, until=args.until)
    finally:
        ledger.close()
    if args.json:
        for summary in summaries:
            print(json.dumps(summary.to_json()))
    else:
        print(format_runs(summaries))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tether.analysis.report import render_report
    from tether.cli import UsageError

    ledger = _open(args)
    try:
        html = render_report(ledger, args.run)
    finally:
        ledger.close()
    if html is None:
        raise UsageError(f"no events of run {args.run!r} in the ledger (see `tether runs`)")
    _write(html, args.output)
    if args.output is not None:
        print(f"report written to {args.output}", file=sys.stderr)
    return 0


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
