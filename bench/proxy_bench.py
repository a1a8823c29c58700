"""Proxy benchmark (not a test): direct vs bare mitmdump vs tether against a local HTTPS server.

.venv/bin/python bench/proxy_bench.py [--rounds 3] [--seconds 3] [--warmup 1]

The upstream is a minimal HTTPS server (its own process) answering `GET /zen` for api.github.com with
a small JSON body. Three targets reach it:
  direct    the client connects to the upstream itself (the client's and the upstream's own cost);
  mitmdump  stock `mitmdump -q` with no scripts (lazy connections, the upstream's CA trusted); the
            client CONNECTs to the upstream's address, so mitmdump needs no address override;
  tether    `tether run`: policy (GitHub provider, route `GET /zen`), a static bearer credential
            injected, tagging, the api.github.com address override, and the durable ledger
            (api.request fsynced before the call is forwarded, api.response after).
Per-feature cost, the same tether with less switched on (the ledger cannot be switched off: these put
it on a tmpfs, where fsync costs nothing, so what remains is building, hashing and storing events):
  tether-policy  the host as plain egress: policy decision, no credential, ledger on tmpfs;
  tether-inject  + the GitHub provider: token issue and bearer injection, tagging, ledger on tmpfs;
  tether         + the durable ledger on disk (the row above);
  tether-ship    + shipping every event to a sink (the file sink: the shipper's own cost, no network).
A load generator in its own process (so it shares no GIL with a proxy) drives each target at
concurrency 1 and 16 over keep-alive HTTP/1.1 connections (CONNECT + TLS through the proxies). The
cells run in interleaved rounds, so drift on a shared machine hits every target alike.
`bench/run.py` runs this with the ledger benchmark and writes docs/performance.md.

Internal entry points (started by the benchmark itself): `upstream ...` and `load ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.sandbox.pki import SandboxCA
from tether.sandbox.sidecar import SidecarProcess, free_port

HOST = "api.github.com"
PATH = "/zen"
ZEN_BODY = b'{"zen":"Non-blocking is better than blocking."}'
# The upstream says in this header whether tether's injected bearer secret reached it.
CREDENTIAL_HEADER = "x-bench-credential"
CONCURRENCIES = (1, 16)
TARGETS = ("direct", "mitmdump", "tether-policy", "tether-inject", "tether", "tether-ship")
FEATURES = {  # target -> what it adds over the row before it
    "tether-policy": "policy decision + ledger on tmpfs (no fsync)",
    "tether-inject": "+ credential issue/injection, tagging",
    "tether": "+ durable ledger (fsync on disk)",
    "tether-ship": "+ shipping every event to a SIEM sink (file sink, JSON Lines)",
}
VOLATILE_DIR = Path("/dev/shm")
BASELINE = "mitmdump"
START_TIMEOUT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0

REQUEST = (
    f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: tether-bench\r\nAccept: application/json\r\n\r\n"
).encode()


class BenchError(RuntimeError):
    pass


# --- upstream: the local HTTPS server ---------------------------------------------------------------


def _response(credential: str) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(ZEN_BODY)}\r\n{CREDENTIAL_HEADER}: {credential}\r\n\r\n"
    )
    return head.encode() + ZEN_BODY


INJECTED = _response("injected")
ABSENT = _response("absent")


class ZenProtocol(asyncio.Protocol):
    """Answers every request head on a keep-alive connection (GETs only: no request bodies)."""

    def __init__(self, injected_line: bytes) -> None:
        self.injected_line = injected_line
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end].lower(), self.buffer[end + 4 :]
            self.transport.write(INJECTED if self.injected_line in head else ABSENT)


def serve_upstream(cert: Path, key: Path, secret_file: Path) -> None:
    """Serve until terminated; print the port once listening."""
    secret = secret_file.read_text().strip()
    injected_line = f"\r\nauthorization: bearer {secret}".lower().encode()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ZenProtocol(injected_line), "127.0.0.1", 0, ssl=context)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(serve())


# --- load generator -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """How the load generator reaches the upstream through one target."""

    name: str
    address: tuple[str, int]  # where the client opens its TCP connections
    tunnel: str | None  # CONNECT authority when `address` is a proxy; None: TLS straight to the upstream
    ca_file: Path  # the CA that signs what the client sees (the upstream's, or the proxy's own)
    credential: str  # what the upstream must report: "injected" only through tether

    def load_arguments(self) -> list[str]:
        host, port = self.address
        tunnel = [f"--tunnel={self.tunnel}"] if self.tunnel else []
        return [
            f"--address={host}:{port}",
            *tunnel,
            f"--ca={self.ca_file}",
            f"--credential={self.credential}",
        ]


@dataclass
class LoadSample:
    completed: int = 0
    latencies_ms: list[float] = field(default_factory=list)


async def _connect(
    target: Target, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = target.address
    if target.tunnel is None:
        return await asyncio.open_connection(host, port, ssl=context, server_hostname=HOST)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"CONNECT {target.tunnel} HTTP/1.1\r\nHost: {target.tunnel}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise BenchError(f"{target.name} refused CONNECT {target.tunnel}: {head.splitlines()[0]!r}")
    await writer.start_tls(context, server_hostname=HOST)
    return reader, writer


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, credential: str) -> None:
    writer.write(REQUEST)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head.split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    if not status.startswith("HTTP/1.1 200") or body != ZEN_BODY:
        raise BenchError(f"unexpected answer: {status!r} {body[:300]!r}")
    if headers.get(CREDENTIAL_HEADER) != credential:
        raise BenchError(
            f"the upstream saw credential {headers.get(CREDENTIAL_HEADER)!r}, not {credential!r}"
        )


async def drive(target: Target, concurrency: int, warmup: float, seconds: float) -> LoadSample:
    """`concurrency` keep-alive connections, each sending its next request as soon as the last is answered.
    Latencies count requests started after the warm-up; throughput counts answers within the window."""
    context = ssl.create_default_context(cafile=str(target.ca_file))
    context.set_alpn_protocols(["http/1.1"])
    connections = await asyncio.gather(*(_connect(target, context) for _ in range(concurrency)))
    sample = LoadSample()
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        while (start := time.perf_counter()) < stop_at:
            sent += 1
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    await _exchange(reader, writer, target.credential)
            except TimeoutError:
                raise BenchError(
                    f"no answer to request {sent} on a keep-alive connection within "
                    f"{REQUEST_TIMEOUT_SECONDS:.0f}s"
                ) from None
            end = time.perf_counter()
            if start >= measure_from:
                sample.latencies_ms.append(round((end - start) * 1000, 4))
            if measure_from <= end < stop_at:
                sample.completed += 1
        writer.close()

    await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    return sample


# --- orchestration ------------------------------------------------------------------------------------


@dataclass
class Cell:
    """All rounds of one target at one concurrency."""

    target: str
    concurrency: int
    completed: int = 0
    window_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    round_rps: list[float] = field(default_factory=list)

    def add(self, sample: dict[str, Any], window_s: float) -> None:
        self.completed += sample["completed"]
        self.window_s += window_s
        self.latencies_ms.extend(sample["latencies_ms"])
        self.round_rps.append(sample["completed"] / window_s)

    @property
    def rps(self) -> float:
        return self.completed / self.window_s

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the request latencies, in ms."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class ProxyResults:
    cells: dict[tuple[str, int], Cell]
    ledger_events: dict[str, int]  # event_type -> count in tether's ledger after the run
    rounds: int
    seconds: float
    warmup: float

    def cell(self, target: str, concurrency: int) -> Cell:
        return self.cells[(target, concurrency)]


def run_load(target: Target, concurrency: int, warmup: float, seconds: float) -> dict[str, Any]:
    """One cell of one round, in a fresh load generator process."""
    command = [
        sys.executable,
        __file__,
        "load",
        *target.load_arguments(),
        f"--concurrency={concurrency}",
        f"--warmup={warmup}",
        f"--seconds={seconds}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=warmup + seconds + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"the load generator against {target.name} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _wait_listening(port: int, process: subprocess.Popen[bytes], ready_file: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            if ready_file.exists():
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not start within {START_TIMEOUT_SECONDS:.0f}s")


@contextlib.contextmanager
def _process(command: list[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, **popen)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _upstream(directory: Path, secret_file: Path) -> Iterator[tuple[int, Path]]:
    """The HTTPS upstream on a sandbox CA; yields its port and the CA file that verifies it. Its
    certificate also names 127.0.0.1, the name bare mitmdump verifies when tunnelled to that address."""
    ca = SandboxCA(directory / "pki")
    issued = ca.issue((HOST, "127.0.0.1"))
    command = [
        sys.executable,
        __file__,
        "upstream",
        str(issued.cert_path),
        str(issued.key_path),
        str(secret_file),
    ]
    with _process(command, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip():
            raise BenchError(f"the upstream exited with {process.wait()}")
        yield int(line), ca.cert_path


@contextlib.contextmanager
def _mitmdump(directory: Path, upstream_port: int, upstream_ca: Path) -> Iterator[Target]:
    """Stock mitmdump, no scripts; the client CONNECTs to the upstream's address (no override needed)."""
    directory.mkdir()
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mitmdump"),
        "-q",
        "--listen-host=127.0.0.1",
        f"--listen-port={port}",
        "--set",
        f"confdir={directory}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"ssl_verify_upstream_trusted_ca={upstream_ca}",
    ]
    log = directory / "mitmdump.log"
    with log.open("wb") as out, _process(command, stdout=out, stderr=subprocess.STDOUT) as process:
        ca = directory / "mitmproxy-ca-cert.pem"
        try:
            _wait_listening(port, process, ca, "mitmdump")
        except BenchError as exc:
            raise BenchError(f"{exc}:\n{log.read_text(errors='replace')}") from None
        yield Target(BASELINE, ("127.0.0.1", port), f"127.0.0.1:{upstream_port}", ca, "absent")


@contextlib.contextmanager
def _tether(
    directory: Path,
    upstream_port: int,
    upstream_ca: Path,
    secret_file: Path,
    variant: str = "tether",
    sidecar_class: type[SidecarProcess] = SidecarProcess,
) -> Iterator[tuple[Target, SidecarProcess]]:
    """`tether run` as `variant` (see FEATURES); yields its target and its process."""
    config: dict[str, Any] = {
        "credentials": {"bench-github": {"type": "static", "secret_file": str(secret_file)}},
        "upstream_overrides": {HOST: {"address": f"127.0.0.1:{upstream_port}", "ca_file": str(upstream_ca)}},
    }
    policy: dict[str, Any] = {"id": "pol_bench", "agents": ["bench-*"], "mode": "enforce"}
    if variant == "tether-policy":
        policy["egress"] = [HOST]
    else:
        policy["providers"] = {
            "github": {"credential": "bench-github", "scopes": ["repo:read"], "ttl_seconds": 900}
        }
    if variant == "tether-ship":
        config["sinks"] = [{"name": "bench-file", "type": "file", "path": str(directory / "shipped.jsonl")}]
    volatile = None
    if variant in ("tether-policy", "tether-inject"):
        volatile = Path(tempfile.mkdtemp(prefix="tether-bench-", dir=VOLATILE_DIR))
        config["ledger_path"] = str(volatile / "ledger.db")
    sidecar = sidecar_class(directory, config, policy, agent_name="bench-agent")
    sidecar.start()
    credential = "absent" if variant == "tether-policy" else "injected"
    try:
        target = Target(
            variant, ("127.0.0.1", sidecar.proxy_port), f"{HOST}:443", sidecar.ca_cert, credential
        )
        yield target, sidecar
    finally:
        sidecar.stop()
        if volatile is not None:
            shutil.rmtree(volatile, ignore_errors=True)


def _count_events(ledger: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT event_type, count(*) FROM events GROUP BY event_type").fetchall()
    return {str(kind): int(count) for kind, count in rows}


def run(rounds: int, seconds: float, warmup: float, progress: bool = True) -> ProxyResults:
    """Start upstream, mitmdump and tether, drive every cell `rounds` times, stop everything."""
    cells = {(t, c): Cell(t, c) for t in TARGETS for c in CONCURRENCIES}
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        secret_file = directory / "secret"
        secret_file.write_text(f"ghs_bench{secrets.token_hex(16)}\n")
        secret_file.chmod(0o600)
        upstream_port, upstream_ca = stack.enter_context(_upstream(directory, secret_file))
        direct = Target("direct", ("127.0.0.1", upstream_port), None, upstream_ca, "absent")
        mitmdump = stack.enter_context(_mitmdump(directory / "mitmdump", upstream_port, upstream_ca))
        targets = [direct, mitmdump]
        for variant in TARGETS[2:]:
            tether = _tether(directory / variant, upstream_port, upstream_ca, secret_file, variant)
            targets.append(stack.enter_context(tether)[0])
        for number in range(rounds):
            for concurrency in CONCURRENCIES:
                # Rotate the order each round so no target always runs first (or last) after a change.
                shift = number % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    sample = run_load(target, concurrency, warmup, seconds)
                    cells[(target.name, concurrency)].add(sample, seconds)
                    if progress:
                        print(
                            f"round {number + 1}/{rounds}  c={concurrency:<2}  {target.name:<8}  "
                            f"{sample['completed'] / seconds:8.0f} req/s",
                            file=sys.stderr,
                        )
        stack.close()  # stop tether before reading its ledger
        ledger_events = _count_events(directory / "tether" / "state" / "ledger.db")
    return ProxyResults(cells, ledger_events, rounds, seconds, warmup)


def table(results: ProxyResults) -> str:
    """Markdown table: one row per target and concurrency, ratios against bare mitmdump."""
    lines = [
        "| target | concurrency | requests | req/s | req/s per round | p50 ms | p99 ms "
        "| req/s vs mitmdump | p50 vs mitmdump | p99 vs mitmdump |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for concurrency in CONCURRENCIES:
        base = results.cell(BASELINE, concurrency)
        for name in TARGETS:
            cell = results.cell(name, concurrency)
            spread = "-".join(f"{rps:.0f}" for rps in (min(cell.round_rps), max(cell.round_rps)))
            p50, p99 = cell.percentile(50), cell.percentile(99)
            lines.append(
                f"| {name} | {concurrency} | {cell.completed:,} | {cell.rps:,.0f} | {spread} "
                f"| {p50:.2f} | {p99:.2f} | {cell.rps / base.rps:.0%} "
                f"| {p50 - base.percentile(50):+.2f} ms | {p99 - base.percentile(99):+.2f} ms |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
    internal = parser.add_subparsers(dest="internal", help="started by the benchmark itself")
    upstream = internal.add_parser("upstream", help="serve the HTTPS upstream, print its port")
    upstream.add_argument("cert", type=Path)
    upstream.add_argument("key", type=Path)
    upstream.add_argument("secret_file", type=Path)
    load = internal.add_parser("load", help="drive one target, print JSON")
    load.add_argument("--address", required=True, help="HOST:PORT to connect to")
    load.add_argument("--tunnel", help="CONNECT authority (when --address is a proxy)")
    load.add_argument("--ca", type=Path, required=True)
    load.add_argument("--credential", choices=["injected", "absent"], required=True)
    load.add_argument("--concurrency", type=int, required=True)
    load.add_argument("--warmup", type=float, required=True)
    load.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()

    if args.internal == "upstream":
        serve_upstream(args.cert, args.key, args.secret_file)
    elif args.internal == "load":
        host, _, port = args.address.rpartition(":")
        target = Target("target", (host, int(port)), args.tunnel, args.ca, args.credential)
        try:
            sample = asyncio.run(drive(target, args.concurrency, args.warmup, args.seconds))
        except BenchError as exc:
            sys.exit(f"load generator: {exc}")
        json.dump({"completed": sample.completed, "latencies_ms": sample.latencies_ms}, sys.stdout)
    else:
        results = run(args.rounds, args.seconds, args.warmup)
        print(table(results))
        print(f"tether ledger after the run: {results.ledger_events}")


if __name__ == "__main__":
    main()
