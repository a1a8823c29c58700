"""Helpers shared by the SIEM shipping tests: a ledger with events, receivers behind the sandbox CA."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from tether.ledger.events import new_event
from tether.ledger.store import Ledger
from tether.sandbox.pki import SandboxCA
from tether.sandbox.siem import DatadogReceiver, HecReceiver, OtlpReceiver, SiemServer
from tether.sinks.base import Sink
from tether.sinks.config import SinkConfig
from tether.sinks.service import build_sink
from tether.sinks.shipper import Shipper
from tether.sinks.state import SinkState

HEC_TOKEN = "11111111-2222-3333-4444-555555555555"  # the tests' HEC token; scanned for in payloads
DD_API_KEY = "ddkey0123456789abcdef0123456789ab"
OTLP_TOKEN = "otlp-secret-token-value-0123456789"
SECRETS = (HEC_TOKEN, DD_API_KEY, OTLP_TOKEN)
SIEM_NAMES = (
    "splunk.example.com",
    "http-intake.logs.datadoghq.com",
    "otel.example.com",
    "localhost",
    "127.0.0.1",
)


def fill_ledger(ledger: Ledger, count: int, **fields: Any) -> list[dict[str, Any]]:
    events = []
    for n in range(count):
        fields_n = {"agent_id": "agt_test", "agent_name": "test-agent", "run_id": "run_1", **fields}
        fields_n.setdefault("task_context", f"task-{n}")
        events.append(ledger.append_sync(new_event("api.request", **fields_n)))
    return events


def secret_file(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


class Siem:
    """The three HTTPS receivers on ephemeral ports, and sink configs pointing at them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = SandboxCA(directory / "siem-pki")
        context = self.ca.ssl_context(SIEM_NAMES)
        self.hec = HecReceiver(HEC_TOKEN)
        self.datadog = DatadogReceiver(DD_API_KEY)
        self.otlp = OtlpReceiver(OTLP_TOKEN)
        self.hec_server = SiemServer(self.hec, context).start()
        self.datadog_server = SiemServer(self.datadog, context).start()
        self.otlp_server = SiemServer(self.otlp, context).start()

    def stop(self) -> None:
        for server in (self.hec_server, self.datadog_server, self.otlp_server):
            server.stop()

    def hec_config(self, **options: Any) -> dict[str, Any]:
        return {
            "name": "splunk",
            "type": "splunk_hec",
            "url": "https://splunk.example.com:8088",
            "index": "agent_tokens",
            "secret_file": str(secret_file(self.directory, "hec-token", HEC_TOKEN)),
            "address": self.hec_server.address,
            "ca_file": str(self.ca.cert_path),
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.5,
            "flush_seconds": 0.1,
            **options,
        }

    def datadog_config(self, **options: Any) -> dict[str, Any]:
        return {
            "name": "datadog",
            "type": "datadog",
            "site": "datadoghq.com",
            "secret_file": str(secret_file(self.directory, "dd-key", DD_API_KEY)),
            "address": self.datadog_server.address,
            "ca_file": str(self.ca.cert_path),
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.5,
            "flush_seconds": 0.1,
            **options,
        }

    def otlp_config(self, **options: Any) -> dict[str, Any]:
        return {
            "name": "otlp",
            "type": "otlp",
            "endpoint": "https://otel.example.com:4318",
            "secret_file": str(secret_file(self.directory, "otlp-token", OTLP_TOKEN)),
            "address": self.otlp_server.address,
            "ca_file": str(self.ca.cert_path),
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.5,
            "flush_seconds": 0.1,
            **options,
        }


def sink_from(options: dict[str, Any]) -> Sink:
    config = TypeAdapter(SinkConfig).validate_python(options)
    return build_sink(config, {})


def ship_all(ledger_path: Path, sink: Sink, timeout: float = 30.0) -> Shipper:
    """Run a shipper until every stored event is confirmed (or parked), then stop it."""

    async def run() -> Shipper:
        state = SinkState(ledger_path)
        shipper = Shipper(sink, state)
        task = asyncio.create_task(shipper.run())
        try:
            async with asyncio.timeout(timeout):
                while state.cursor(sink.name) < state.last_seq():
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.02)
        finally:
            shipper.stop(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sink.close()
            state.close()
        return shipper

    return asyncio.run(run())
