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
    baseline = command(
        "baseline", "Show what an agent's prior runs taught tether (its baseline).", cmd_baseline
    )
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True)
    show = baseline_sub.add_parser("show", help="Routes, hosts, scopes, calls per run and hours of AGENT.")
    show.add_argument("agent", help="The agent name")
    show.add_argument("--config", help="tether.yaml (default: $TETHER_CONFIG or ./tether.yaml)")
    _ledger_args(show)
    show.add_argument("--json", action="store_true")
    report = command("report", "Write a self-contained HTML incident report for a run.", cmd_report)
    _ledger_args(report)
    report.add_argument("run", help="The run id")
    report.add_argument("-o", "--output", type=Path, help="Write the report here (default: stdout)")


def cmd_baseline(args: argparse.Namespace) -> int:
    from tether.analysis.baseline import RELEVANT_TYPES, Detector
    from tether.cli import _config
    from tether.ledger.timeline import printable

    settings = _config(args).anomalies
    detector = Detector(settings)
    ledger = _open(args)
    try:
        detector.learn(ledger.iter_events(agent=args.agent, event_types=RELEVANT_TYPES))
    finally:
        ledger.close()
    baseline = detector.baseline(args.agent).to_json()
    baseline["learning_runs"] = settings.learning_runs
    baseline["learning_complete"] = baseline["runs"] >= settings.learning_runs
    if args.json:
        print(json.dumps(baseline))
        return 0
    state = "complete" if baseline["learning_complete"] else "still learning: baseline rules do not flag yet"
    print(f"agent {printable(args.agent)}: {baseline['runs']} runs with calls learned")
    if baseline["runs"]:
        print(f"  runs {printable(baseline['first_run'])} .. {printable(baseline['last_run'])}")
    print(f"learning period: {settings.learning_runs} runs ({state})")
    calls = baseline["calls_per_run"]
    if baseline["runs"]:
        print(f"calls per run: min {calls['min']}, median {calls['median']}, ", end="")
        print(f"max {calls['max']}, mean {calls['mean']}")
    hours = ", ".join(f"{hour} ({count})" for hour, count in baseline["hours_utc"].items())
    print(f"active hours UTC (calls): {hours or '-'}")
    for title, key in (("hosts", "hosts"), ("routes", "routes"), ("scopes asked for", "scopes")):
        print(f"{title}:" + ("" if baseline[key] else " -"))
        for name, count in baseline[key].items():
            print(f"  {count:>7}  {printable(name)}")
    return 0


def register_policy_suggest(policy_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tether policy suggest` (tether/cli.py's cmd_policy dispatches to cmd_policy_suggest)."""
    suggest = policy_sub.add_parser(
        "suggest", help="Write a least-privilege policy from what an agent did in its recorded runs."
    )
    suggest.add_argument("--agent", required=True, help="The agent name")
    suggest.add_argument("--runs", type=int, help="Only its last N runs with calls (default: all)")
    suggest.add_argument("-o", "--output", type=Path, help="Write the policy here (default: stdout)")
    _ledger_args(suggest)
    suggest.add_argument("--config", help="tether.yaml (default: $TETHER_CONFIG or ./tether.yaml)")


def cmd_policy_suggest(args: argparse.Namespace) -> int:
    from tether.analysis.suggest import render, suggest_from_ledger
    from tether.catalog import load_catalog
    from tether.cli import UsageError
    from tether.ledger.events import utc_timestamp

    if args.runs is not None and args.runs < 1:
        raise UsageError("--runs must be at least 1")
    catalog = load_catalog()
    ledger = _open(args)
    try:
        result = suggest_from_ledger(ledger, catalog, args.agent, args.runs)
    finally:
        ledger.close()
    if not result.runs:
        raise UsageError(f"no calls of agent {args.agent!r} in the ledger (see `tether runs`)")
    _write(render(result, catalog, utc_timestamp()), args.output)
    if args.output is not None:
        print(
            f"policy written to {args.output} from {len(result.runs)} run(s), {result.calls} call(s)",
            file=sys.stderr,
        )
    return 0


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
