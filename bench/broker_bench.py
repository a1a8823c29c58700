"""Token broker benchmark (not a test): mint latency and cached-token overhead against the local stand-ins.

.venv/bin/python bench/broker_bench.py [--runs 20] [--calls 10]

1. Broker alone (in-process, real HTTPS to the sandbox providers on loopback): the latency of a mint
   (`Broker.issue` for a new run: the first call of a run) per credential type, and of a cached issue
   (every later call of the run), against the static credential as the baseline.
2. Through `tether run` (a subprocess, real sockets, durable ledger) with `requests` as the agent:
   the first call of each run (mint + token.minted fsynced + the call) and the later calls of the same
   run (cached token), for a `github_app` and a `static` credential, `GET /repos/acme/api/issues`.
The sandbox providers run in threads of this process, so broker figures include their cost.
Takes about 15 s on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tether.broker.base import Broker, Issuance, TokenKey
from tether.broker.registry import build_broker
from tether.config import TetherConfig
from tether.sandbox.providers import APP_ID, DRIVE_SCOPES, OAUTH_CLIENT_ID, OAUTH_HOST, SandboxProviders
from tether.sandbox.sidecar import SidecarProcess

SECRET = "ghs_BENCHstatic" + secrets.token_hex(12)
PERMISSIONS = {"contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"}
URL = "https://api.github.com/repos/acme/api/issues"


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"p50 {p50 * 1000:8.3f} ms   p90 {p90 * 1000:8.3f} ms"


def write_secret(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def credentials(box: SandboxProviders, directory: Path) -> dict[str, dict[str, Any]]:
    key = box.app_key_path
    return {
        "static": {"type": "static", "secret_file": write_secret(directory / "static", SECRET)},
        "github_app": {"type": "github_app", "app_id": APP_ID, "private_key_file": str(key)},
        "google_service_account": {"type": "google_service_account", "key_file": str(box.google_key_path)},
        "oauth2": {
            "type": "oauth2",
            "grant": "client_credentials",
            "token_url": f"https://{OAUTH_HOST}/oauth/token",
            "client_id": OAUTH_CLIENT_ID,
            "client_secret_file": write_secret(
                directory / "oauth", box.oauth.clients[OAUTH_CLIENT_ID].secret
            ),
        },
        "slack": {
            "type": "slack",
            "client_id": box.slack.client_id,
            "client_secret_file": write_secret(directory / "slack-secret", box.slack.client_secret),
            "refresh_token_file": write_secret(directory / "slack-refresh", box.slack.refresh_token),
        },
    }


NATIVE = {
    "static": {},
    "github_app": {"issues": "read"},
    "google_service_account": {DRIVE_SCOPES[1]: "granted"},
    "oauth2": {DRIVE_SCOPES[1]: "granted"},
    "slack": {"chat:write": "granted"},
}


async def broker_figures(box: SandboxProviders, directory: Path, runs: int, calls: int) -> None:
    config = TetherConfig.model_validate(
        {"credentials": credentials(box, directory), "upstream_overrides": box.overrides()}
    )
    broker: Broker = build_broker(config.credentials, config.upstream_overrides)

    async def recorded(_: Issuance) -> bool:
        return True

    print("1. Broker alone: Broker.issue, in-process, HTTPS to the sandbox providers on loopback")
    print(f"   {runs} runs per credential type; {calls} cached issues per run\n")
    baseline_cached = None
    for name in credentials(box, directory):
        first: list[float] = []
        cached: list[float] = []
        for run in range(runs):
            target = "acme" if name == "github_app" else None
            key = TokenKey("agt_bench", f"run_{name}_{run}", "p", name, ("s",), target=target)

            async def issue(k: TokenKey = key, native: dict[str, str] = NATIVE[name]) -> Issuance | None:
                return await broker.issue(k, ttl_seconds=900, native=native, record=recorded)

            first.append(await timed(issue))
            cached.extend([await timed(issue) for _ in range(calls)])
        cached_p50 = statistics.median(cached)
        baseline_cached = baseline_cached or cached_p50
        print(f"   {name:24} first call (mint)  {ms(first)}")
        print(f"   {'':24} cached issue      {ms(cached)}   ({cached_p50 / baseline_cached:.2f}x static)")
    await broker.close()


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def proxy_figures(box: SandboxProviders, directory: Path, runs: int, calls: int) -> None:
    print("\n2. Through `tether run` with requests as the agent: GET /repos/acme/api/issues")
    print(f"   {runs} runs per credential; the first call of each run, then {calls} calls in the run\n")
    policy = {
        "id": "pol_bench",
        "agents": ["bench-*"],
        "providers": {"github": {"credential": "gh", "scopes": ["issues:read"], "ttl_seconds": 900}},
    }
    all_credentials = credentials(box, directory)
    kinds = ("static", "github_app")
    sidecars = {}
    for kind in kinds:
        config = {"credentials": {"gh": all_credentials[kind]}, "upstream_overrides": box.overrides()}
        sidecar = SidecarProcess(directory / f"tether-{kind}", config, policy, agent_name="bench-agent")
        sidecars[kind] = sidecar.start()
    results: dict[str, tuple[list[float], list[float]]] = {kind: ([], []) for kind in kinds}
    try:
        # Interleaved: run i of each credential back to back, so drift on a shared machine hits both.
        for run in range(runs):
            for kind, tether in sidecars.items():
                first, later = results[kind]
                headers = {"X-Tether-Run": f"run_{kind}_{run}", "Authorization": "Bearer tether"}
                with tether.session(**headers) as s:
                    started = time.perf_counter()
                    status = s.get(URL, timeout=30).status_code
                    first.append(time.perf_counter() - started)
                    for _ in range(calls):
                        started = time.perf_counter()
                        status = max(status, s.get(URL, timeout=30).status_code)
                        later.append(time.perf_counter() - started)
                if status != 200:
                    sys.exit(f"benchmark call failed with {status}:\n{tether.log()[-2000:]}")
    finally:
        for tether in sidecars.values():
            tether.stop()
    for kind, (first, later) in results.items():
        print(f"   {kind:12} first call of a run  {ms(first)}")
        print(f"   {'':12} later calls          {ms(later)}")
    static_first, static_later = (statistics.median(v) for v in results["static"])
    app_first, app_later = (statistics.median(v) for v in results["github_app"])
    print(
        f"\n   github_app vs static, p50: first call {app_first / static_first:.2f}x "
        f"({(app_first - static_first) * 1000:+.1f} ms), later calls {app_later / static_later:.2f}x "
        f"({(app_later - static_later) * 1000:+.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-broker-bench-") as scratch:
        directory = Path(scratch)
        box = SandboxProviders(directory / "sandbox", SECRET, PERMISSIONS)
        try:
            asyncio.run(broker_figures(box, directory, args.runs, args.calls))
            proxy_figures(box, directory, args.runs, args.calls)
        finally:
            box.stop()


if __name__ == "__main__":
    main()
