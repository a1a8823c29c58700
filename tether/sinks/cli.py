"""`tether sinks status` and `tether sinks replay` (registered into the main parser by cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether.sinks.state import SinkState, open_state

ConfigLoader = Callable[[argparse.Namespace], Any]


def register(sub: Any, load_config: ConfigLoader, ledger_path: Callable[[argparse.Namespace], Path]) -> None:
    """Add `sinks status|replay` to the `tether` subcommands."""
    sinks = sub.add_parser("sinks", help="SIEM shipping: lag, errors, dead letters; replay.")
    sinks_sub = sinks.add_subparsers(dest="sinks_command", required=True)
    status = sinks_sub.add_parser("status", help="Per sink: cursor, lag, last error, dead letters.")
    replay = sinks_sub.add_parser("replay", help="Resend dead letters (all sinks, or --sink).")
    for p in (status, replay):
        p.add_argument("--config", help="tether.yaml (default: $TETHER_CONFIG or ./tether.yaml)")
        p.add_argument("--ledger", help="Ledger database (default: from the config)")
    status.add_argument("--json", action="store_true", help="One JSON object per sink")
    status.add_argument("--dead-letters", action="store_true", help="Also list each dead letter")
    replay.add_argument("--sink", help="Only this sink")
    replay.add_argument("--timeout", type=float, default=60.0, help="Give up after this many seconds")
    status.set_defaults(func=lambda args: cmd_status(args, load_config, ledger_path))
    replay.set_defaults(func=lambda args: cmd_replay(args, load_config, ledger_path))


def cmd_status(args: argparse.Namespace, load_config: ConfigLoader, ledger_path: Callable[..., Path]) -> int:
    names = [sink.name for sink in load_config(args).sinks]
    state = open_state(ledger_path(args), readonly=True)
    try:
        head = state.last_seq()
        rows = state.status(names)
        letters = state.dead_letters() if args.dead_letters else []
    finally:
        state.close()
    for row in rows:
        info = {
            "sink": row.sink,
            "configured": row.sink in names,
            "cursor": row.cursor,
            "head": head,
            "lag": head - row.cursor,
            "updated_at": row.updated_at,
            "last_error": row.last_error,
            "last_error_at": row.last_error_at,
            "dead_letters": row.dead_letters,
        }
        if args.json:
            print(json.dumps(info))
            continue
        note = "" if info["configured"] else "  (not in the config)"
        print(
            f"{row.sink}: lag {info['lag']} (delivered through seq {row.cursor} of {head}), "
            f"dead letters {row.dead_letters}{note}"
        )
        if row.last_error:
            print(f"  last error at {row.last_error_at}: {row.last_error}")
    for letter in letters:
        print(
            f"  dead letter {letter.sink} seq {letter.seq} {letter.event_id} parked {letter.parked_at}"
            f" (attempts {letter.attempts}): {letter.reason}"
        )
    if not rows:
        print("no sinks configured")
    return 0


def cmd_replay(args: argparse.Namespace, load_config: ConfigLoader, ledger_path: Callable[..., Path]) -> int:
    from tether.sinks.service import build_sink

    config = load_config(args)
    sinks = [s for s in config.sinks if args.sink in (None, s.name)]
    if args.sink and not sinks:
        print(f"tether: no sink named {args.sink!r} in the config", file=sys.stderr)
        return 2
    path = ledger_path(args)
    failed = False
    for sink_config in sinks:
        state = SinkState(path)
        try:
            letters = state.dead_letters(sink_config.name)
            if not letters:
                print(f"{sink_config.name}: no dead letters")
                continue
            sink = build_sink(sink_config, config.upstream_overrides)
            events = state.events_at([letter.seq for letter in letters])
            delivered, rejected, error = asyncio.run(_replay(sink, state, events, args.timeout))
            print(
                f"{sink_config.name}: {len(delivered)} replayed, {len(rejected)} rejected again"
                + (f", {len(events) - len(delivered) - len(rejected)} not sent ({error})" if error else "")
            )
            failed = failed or bool(rejected) or bool(error)
        finally:
            state.close()
    return 1 if failed else 0


async def _replay(
    sink: Any, state: SinkState, events: list[tuple[dict[str, Any], str]], timeout: float
) -> tuple[list[int], list[int], str | None]:
    from tether.sinks.shipper import Shipper, Stopped

    shipper = Shipper(sink, state)
    shipper.stop(time.monotonic() + timeout)
    try:
        await sink.start()
        delivered, rejected = await shipper.replay(events)
        return delivered, rejected, None
    except Stopped as stopped:  # the ones before were sent (and marked) already
        error = f"receiver unreachable for {timeout:g}s: {shipper.stats.last_error}"
        return list(stopped.delivered), list(stopped.rejected), error
    finally:
        await sink.close()
