"""OTLP/HTTP logs, JSON encoding: `POST {endpoint}/v1/logs` with an ExportLogsServiceRequest.

Each event is one LogRecord: `timeUnixNano` from the event time, `body` the event as a kvlist, and
one attribute per schema field (`tether.<field>`, nested objects flattened with dots) so collectors
can route and filter on them. Statuses follow the OTLP/HTTP spec: 200 success; 429, 502, 503, 504
retryable (Retry-After honoured); 401/403 are retried until an operator fixes the credentials
(nothing parked); other 4xx/5xx are not retryable and are bisected to the record at fault. A 200
with `partialSuccess.rejectedLogRecords > 0` does not say which record was refused, so tether
bisects that batch too (the accepted records may arrive twice; `event_id` de-duplicates) and parks
the refused record as a dead letter with the server's `errorMessage`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tether import __version__
from tether.sinks.base import HttpSink, Outcome, parse_retry_after
from tether.sinks.config import OtlpSink
from tether.sinks.ocsf import _time_ms

RETRYABLE = frozenset({429, 502, 503, 504})


def any_value(value: Any) -> dict[str, Any]:
    """A JSON value as an OTLP AnyValue (int64 as a decimal string, per the OTLP JSON mapping)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": any_value(v)} for k, v in value.items()]}}
    return {}  # null: an empty AnyValue


def _attributes(event: Mapping[str, Any], prefix: str = "tether.") -> list[dict[str, Any]]:
    attributes = []
    for key, value in event.items():
        if value is None:
            continue
        if isinstance(value, dict):
            attributes.extend(_attributes(value, f"{prefix}{key}."))
        else:
            attributes.append({"key": f"{prefix}{key}", "value": any_value(value)})
    return attributes


class Otlp(HttpSink):
    config: OtlpSink

    def __init__(self, config: OtlpSink, secret: str | None, upstream_overrides: Mapping[str, Any]) -> None:
        super().__init__(config, f"{config.endpoint}/v1/logs", upstream_overrides)
        self._headers = {"Content-Type": "application/json"}
        if secret is not None:
            self._headers[config.secret_header] = config.secret_prefix + secret
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": config.service_name}}]}
        scope = {"name": "tether", "version": __version__}
        self._head = (
            b'{"resourceLogs":[{"resource":'
            + json.dumps(resource, separators=(",", ":")).encode()
            + b',"scopeLogs":[{"scope":'
            + json.dumps(scope, separators=(",", ":")).encode()
            + b',"logRecords":['
        )

    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        nanos = str(_time_ms(event["timestamp"]) * 1_000_000)
        record = {
            "timeUnixNano": nanos,
            "observedTimeUnixNano": nanos,
            "severityNumber": 9,
            "severityText": "INFO",
            "eventName": event["event_type"],
            "body": any_value(self.render(event)),
            "attributes": _attributes(event),
        }
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()

    def payload(self, records: list[bytes]) -> bytes:
        return self._head + b",".join(records) + b"]}]}]}"

    async def send(self, records: list[bytes]) -> Outcome:
        body, encoding = await self.body(self.payload(records))
        async with self.session.post(self.url, data=body, headers={**self._headers, **encoding}) as resp:
            text = await resp.text(errors="replace")
            if resp.status == 200:
                return _partial(text)
            reason = f"OTLP receiver answered HTTP {resp.status}: {text[:200]}"
            if resp.status in RETRYABLE:
                return Outcome.retry(reason, parse_retry_after(resp.headers.get("Retry-After")))
            if resp.status in (401, 403):
                return Outcome.retry(reason + " (fix the sink's credentials; events wait, none is dropped)")
            return Outcome.reject(reason)


def _partial(text: str) -> Outcome:
    try:
        reply = json.loads(text) if text.strip() else {}
    except ValueError:
        return Outcome.ok()  # 200 is success; the body is informational
    partial = reply.get("partialSuccess") if isinstance(reply, dict) else None
    if not isinstance(partial, dict):
        return Outcome.ok()
    try:
        rejected = int(partial.get("rejectedLogRecords") or 0)
    except (TypeError, ValueError):
        rejected = 0
    if rejected <= 0:
        return Outcome.ok()
    return Outcome.reject(
        f"OTLP partial success: {rejected} record(s) rejected: {partial.get('errorMessage', '')}"
    )
