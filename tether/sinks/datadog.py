"""Datadog Logs intake v2: `POST https://http-intake.logs.<site>/api/v2/logs` with `DD-API-KEY`.

Each log is the event's fields as attributes (so facets such as `@agent_id` work) plus `ddsource`,
`service`, `ddtags`, `hostname` and a one-line `message`. Datadog's limits per request: at most 1000
entries, 5 MB uncompressed, no entry over 1 MB. Datadog would truncate a larger entry; tether never
sends one: it is parked as a dead letter with the reason (the ledger keeps it whole). Statuses: 202
accepted; 400 and 413 rejected (bisected); 401/403 retried until the key is fixed (nothing parked);
408, 429 and 5xx retried, Retry-After honoured.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from typing import Any

from tether.sinks.base import HttpSink, Outcome, http_status_outcome
from tether.sinks.config import DatadogSink

MAX_ENTRIES = 1000
MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
MAX_ENTRY_BYTES = 1024 * 1024


def summary(event: Mapping[str, Any]) -> str:
    parts = [str(event.get("event_type"))]
    for key in ("agent_name", "run_id", "provider", "token_id"):
        if event.get(key) is not None:
            parts.append(f"{key}={event[key]}")
    decision = event.get("decision")
    if isinstance(decision, dict) and decision.get("action"):
        parts.append(f"decision={decision['action']}")
    return " ".join(parts)


class Datadog(HttpSink):
    config: DatadogSink
    max_records = MAX_ENTRIES
    # The JSON array adds brackets and one comma per entry on top of the entries themselves.
    max_request_bytes = MAX_PAYLOAD_BYTES - 2 - MAX_ENTRIES
    max_record_bytes = MAX_ENTRY_BYTES

    def __init__(self, config: DatadogSink, api_key: str, upstream_overrides: Mapping[str, Any]) -> None:
        super().__init__(config, config.url, upstream_overrides)
        self._api_key = api_key
        self.hostname = config.hostname or socket.gethostname()
        self._extra = {"ddsource": config.ddsource, "service": config.service, "hostname": self.hostname}
        if config.ddtags:
            self._extra["ddtags"] = config.ddtags

    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        extra = {**self._extra, "message": summary(event)}
        payload = self.payload_json(event, raw)
        # The event's attributes plus Datadog's reserved ones, spliced without re-encoding the event.
        tail = json.dumps(extra, separators=(",", ":"), ensure_ascii=False)[1:]
        return (payload[:-1] + ("," if payload != "{}" else "") + tail).encode()

    async def send(self, records: list[bytes]) -> Outcome:
        body, encoding = await self.body(b"[" + b",".join(records) + b"]")
        headers = {"DD-API-KEY": self._api_key, "Content-Type": "application/json", **encoding}
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            if resp.status in (200, 202):
                return Outcome.ok()
            text = await resp.text(errors="replace")
            return http_status_outcome(resp.status, text, resp.headers.get("Retry-After"), what="Datadog")
