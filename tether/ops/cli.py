"""`tether agents hash` (gateway mode secrets) and `tether probe` (container health checks)."""

from __future__ import annotations

import argparse
import getpass
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tether.gateway import MAX_CREDENTIAL, hash_secret

Command = Callable[..., Any]


def cmd_agents_hash(args: argparse.Namespace) -> int:
    """Read a secret from stdin (never from argv, which `ps` shows) and print its scrypt hash."""
    tty = sys.stdin.isatty()
    secret = getpass.getpass("agent secret: ") if tty else sys.stdin.readline().rstrip("\r\n")
    if len(secret) < 16:
        print(
            "tether: the secret must be at least 16 characters (e.g. `openssl rand -hex 24`)", file=sys.stderr
        )
        return 2
    if len(secret) > MAX_CREDENTIAL // 2 or ":" in secret:
        print("tether: the secret must be under 512 characters and contain no ':'", file=sys.stderr)
        return 2
    print(hash_secret(secret))
    return 0


def probe_command(config_of: Callable[[argparse.Namespace], Any]) -> Command:
    def cmd_probe(args: argparse.Namespace) -> int:
        host, port = config_of(args).api_address
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
        where = f"[{host}]" if ":" in host else host
        url = f"http://{where}:{port}/{'readyz' if args.ready else 'healthz'}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        try:
            with opener.open(url, timeout=args.timeout) as resp:
                return 0 if resp.status == 200 else 1
        except (urllib.error.URLError, OSError) as exc:
            print(f"tether probe: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            return 1

    return cmd_probe


def register(
    command: Callable[..., argparse.ArgumentParser], config_of: Callable[[argparse.Namespace], Any]
) -> None:
    agents = command("agents", "Gateway mode: manage agent credentials.", None, config=False)
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    hashing = agents_sub.add_parser("hash", help="Hash an agent secret read from stdin for the agents file.")
    hashing.set_defaults(func=cmd_agents_hash)
    probe = command(
        "probe", "Exit 0 when tether's /healthz (or --ready: /readyz) answers 200.", probe_command(config_of)
    )
    probe.add_argument("--ready", action="store_true", help="Check /readyz instead of /healthz")
    probe.add_argument("--timeout", type=float, default=3.0)
