"""The `tether` command (DESIGN.md CLI contract)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tether import __version__
from tether.analysis import cli as analysis_cli
from tether.config import ConfigError, TetherConfig, load_config
from tether.ledger import commands as ledger_commands
from tether.ledger.signing import SigningKeyError
from tether.ledger.store import LedgerError
from tether.sinks import cli as sinks_cli

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or missing inputs: exit 2 with the message."""


def _config(args: argparse.Namespace) -> TetherConfig:
    path = args.config or os.environ.get("TETHER_CONFIG")
    if path is None and Path("tether.yaml").is_file():
        path = "tether.yaml"
    try:
        return load_config(Path(path) if path else None)
    except ConfigError as exc:
        raise UsageError("\n".join(exc.lines)) from None


def _ledger_path(args: argparse.Namespace) -> Path:
    path = Path(args.ledger) if args.ledger else _config(args).effective_ledger_path
    if not path.is_file():
        raise UsageError(f"no ledger at {path} (use --ledger PATH or --config)")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from tether.policy.loader import PolicyError
    from tether.proxy.master import serve
    from tether.proxy.runtime import Runtime

    config = _config(args)
    try:
        runtime = Runtime.build(config)
    except ConfigError as exc:  # credential key material that cannot be used
        raise UsageError("\n".join(exc.lines)) from None
    except PolicyError as exc:
        print(f"tether: invalid policy:\n{exc}", file=sys.stderr)
        return EXIT_FAIL
    except (LedgerError, OSError, SigningKeyError) as exc:
        print(f"tether: cannot open the ledger, its signing key or the state dir: {exc}", file=sys.stderr)
        return EXIT_FAIL
    host, port = config.proxy_address
    print(
        f"tether {__version__}: proxy on {host}:{port}, control API on {config.api_listen}", file=sys.stderr
    )
    print(
        f"tether: ledger {config.effective_ledger_path}; agent CA {config.ca_cert_path}",
        file=sys.stderr,
    )
    asyncio.run(serve(runtime))
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    config = _config(args)
    host, port = config.proxy_address
    api_host, api_port = config.api_address
    ca = args.ca_path or str(config.ca_cert_path.resolve())
    proxy = f"http://{host}:{port}"
    lines = {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "https_proxy": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "localhost,127.0.0.1,::1",
        "no_proxy": "localhost,127.0.0.1,::1",
        "SSL_CERT_FILE": ca,
        "REQUESTS_CA_BUNDLE": ca,
        "NODE_EXTRA_CA_CERTS": ca,
        "NODE_USE_ENV_PROXY": "1",
        "GIT_SSL_CAINFO": ca,
        "TETHER_API": f"http://{api_host}:{api_port}",
    }
    for key, value in lines.items():
        print(f"export {key}={value}" if args.export else f"{key}={value}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from tether.ledger.commands import run_verify

    return run_verify(args, _config, _ledger_path)


def cmd_export(args: argparse.Namespace) -> int:
    from tether.ledger.export import export_digests, export_events

    exporter = export_digests if args.what == "digests" else export_events
    exporter(_ledger_path(args), sys.stdout, since=args.since, until=args.until)
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace) -> int:
    from tether.ledger.store import Ledger
    from tether.ledger.timeline import format_table, timeline_rows

    ledger = Ledger.open_readonly(_ledger_path(args))
    try:
        rows = timeline_rows(
            ledger,
            agent=args.agent,
            run=args.run,
            since=args.since,
            until=args.until,
            provider=args.provider,
            types=[name.strip() for value in args.type or () for name in value.split(",") if name.strip()],
        )
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            print(format_table(rows))
    finally:
        ledger.close()
    return EXIT_OK


def cmd_policy(args: argparse.Namespace) -> int:
    from tether.policy.loader import main_check
    from tether.policy.schema import policy_json_schema

    if args.policy_command == "suggest":
        return analysis_cli.cmd_policy_suggest(args)
    if args.policy_command == "schema":
        print(json.dumps(policy_json_schema(), indent=2))
        return EXIT_OK
    return main_check(args.files)


def cmd_demo(args: argparse.Namespace) -> int:
    from tether.demo import run_demo

    return run_demo(keep=args.dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description="Audit and credential sidecar for AI agents.")
    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func: object, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if config:
            p.add_argument("--config", help="tether.yaml (default: $TETHER_CONFIG or ./tether.yaml)")
        p.set_defaults(func=func)
        return p

    command("run", "Run the sidecar (proxy + control API).", cmd_run)
    demo = command(
        "demo", "Self-contained tour: proxy, sandbox GitHub, scripted agent.", cmd_demo, config=False
    )
    demo.add_argument("--dir", type=Path, help="Directory for the demo's state (default: a new temp dir)")
    env = command("env", "Print the environment an agent container needs.", cmd_env)
    env.add_argument("--ca-path", help="Path of tether's CA certificate as the agent sees it")
    env.add_argument("--export", action="store_true", help="Prefix lines with `export ` for shells")

    def ranged(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ledger", help="Ledger database (default: from the config)")
        p.add_argument("--from", dest="since", help="Start time (ISO 8601, inclusive)")
        p.add_argument("--to", dest="until", help="End time (ISO 8601, inclusive)")

    verify = command(
        "verify", "Verify the ledger's hash chain (exit 0 intact, 1 tampered, 2 usage).", cmd_verify
    )
    ranged(verify)
    verify.add_argument("--json", action="store_true")
    ledger_commands.add_verify_arguments(verify)
    export = command("export", "Export events or digests as JSON Lines on stdout.", cmd_export)
    export.add_argument("what", choices=["events", "digests"])
    ranged(export)
    timeline = command("timeline", "Show what agents did, in order.", cmd_timeline)
    timeline.add_argument("--ledger", help="Ledger database (default: from the config)")
    timeline.add_argument("--agent")
    timeline.add_argument("--run")
    timeline.add_argument("--since")
    timeline.add_argument("--until")
    timeline.add_argument("--provider", help="Only events of this provider (github, slack, ...)")
    timeline.add_argument(
        "--type",
        action="append",
        help="Only these event types, comma-separated or repeated; a family such as `token` means token.*",
    )
    timeline.add_argument("--json", action="store_true")
    ledger_commands.register(sub, _config)
    analysis_cli.register(command)
    policy = command(
        "policy", "Check policy files, print their JSON Schema or suggest one.", cmd_policy, config=False
    )
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="Validate policy files (exit 1 with file:line: message).")
    check.add_argument("files", nargs="+", type=Path)
    policy_sub.add_parser("schema", help="Print the policy JSON Schema.")
    analysis_cli.register_policy_suggest(policy_sub)
    sinks_cli.register(sub, _config, _ledger_path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)  # per-connection chatter is not tether's log
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (UsageError, ValueError, LedgerError) as exc:
        # Bad times, unreadable or non-ledger files: a usage problem, never "tampered" (exit 1).
        print(f"tether: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    # Run the importable module's main, so that the UsageError raised by modules importing tether.cli
    # (tether/analysis/cli.py) is the class main catches.
    from tether.cli import main as package_main

    sys.exit(package_main())
