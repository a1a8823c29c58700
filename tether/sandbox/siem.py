"""Local SIEM receivers that follow the published protocols, for tests, benchmarks and `tether demo`.

- `HecReceiver`: Splunk HTTP Event Collector — `/services/collector/event` (concatenated JSON
  envelopes, gzip), `/services/collector/ack` and `/services/collector/health`, with Splunk's
  reply codes (2/3/4 token, 5 no data, 6 invalid format, 7 incorrect index, 10/11 channel, 12/13
  event field, 14 ack disabled, 8/9 server errors, 17/18 health) and `invalid-event-number`.
  A request is all-or-nothing: when one event is refused, none of the request is stored.
- `DatadogReceiver`: Logs intake v2 `/api/v2/logs` — DD-API-KEY (401 missing, 403 wrong), 5 MB
  uncompressed (413), 1000 entries (413), 400 for bad JSON, 202 on success; an entry over 1 MB is
  accepted truncated, as Datadog does, and counted in `truncated` so a test can prove none was sent.
- `OtlpReceiver`: OTLP/HTTP JSON `/v1/logs` — 415 for another content type, 400 for bad JSON,
  200 with `partialSuccess` when it refuses some records.

Faults a test switches on: `fail_next(status, times, retry_after)`, `delay_seconds`, a `reject`
predicate (which events the receiver refuses), and stopping the server for a while (`SiemServer`).
`stored` holds the events accepted, in arrival order; `requests` logs each request's answer.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tether.sandbox.server import SandboxServer

Predicate = Callable[[dict[str, Any]], bool]


def event_id_of(payload: dict[str, Any]) -> str | None:
    """The tether event_id of a native or OCSF payload."""
    if "event_id" in payload:
        return str(payload["event_id"])
    metadata = payload.get("metadata")
    return str(metadata["uid"]) if isinstance(metadata, dict) and "uid" in metadata else None


@dataclass
class RequestLog:
    status: int
    event_ids: list[str]
    accepted: bool  # every event of the request was taken


@dataclass
class _Fault:
    status: int
    retry_after: str | None


@dataclass
class Receiver:
    """State and faults shared by the receivers (thread-safe: the server runs in its own thread)."""

    secret: str
    stored: list[dict[str, Any]] = field(default_factory=list)  # accepted payloads, arrival order
    requests: list[RequestLog] = field(default_factory=list)
    delay_seconds: float = 0.0
    reject: Predicate | None = None
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self._faults.extend(_Fault(status, retry_after) for _ in range(times))

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _log(self, status: int, payloads: list[dict[str, Any]], accepted: bool | None = None) -> None:
        ids = [i for i in map(event_id_of, payloads) if i is not None]
        with self._lock:
            self.requests.append(
                RequestLog(status, ids, 200 <= status < 300 if accepted is None else accepted)
            )

    def _store(self, payloads: list[dict[str, Any]]) -> None:
        with self._lock:
            self.stored.extend(payloads)

    def stored_ids(self) -> list[str]:
        with self._lock:
            return [i for i in map(event_id_of, self.stored) if i is not None]

    def retried_ids(self) -> set[str]:
        """Event ids that were in a request the receiver did not accept (the sender had to retry)."""
        with self._lock:
            return {i for log in self.requests if not log.accepted for i in log.event_ids}

    async def _pause(self) -> None:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)


def _body(request_bytes: bytes, encoding: str | None) -> bytes:
    return gzip.decompress(request_bytes) if (encoding or "").lower() == "gzip" else request_bytes


# --- Splunk HEC ---------------------------------------------------------------------------------


def _hec(status: int, code: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"text": text, "code": code, **extra}, status=status)


@dataclass
class HecReceiver(Receiver):
    ack_enabled: bool = False
    allowed_indexes: tuple[str, ...] | None = None  # None: any index
    ack_never: bool = False  # the indexer "loses" batches: acks never turn true, nothing is stored
    envelopes: list[dict[str, Any]] = field(default_factory=list)  # stored events with their metadata
    health_checks: int = 0
    _acks: dict[str, dict[int, list[dict[str, Any]] | None]] = field(default_factory=dict)
    _next_ack: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/services/collector/event", self._event)
        app.router.add_post("/services/collector", self._event)
        app.router.add_post("/services/collector/ack", self._ack)
        app.router.add_get("/services/collector/health", self._health)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            return _hec(401, 2, "Token is required")
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk" or not token:
            return _hec(401, 3, "Invalid authorization")
        if token != self.secret:
            return _hec(403, 4, "Invalid token")
        return None

    def _channel(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not channel:
            return None, _hec(400, 10, "Data channel is missing")
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, _hec(400, 11, "Invalid data channel")
        return channel, None

    async def _health(self, request: web.Request) -> web.Response:
        with self._lock:  # unhealthy while busy answers are queued; the health check uses none up
            busy = any(fault.status == 503 for fault in self._faults)
            self.health_checks += 1
        if busy:
            return _hec(503, 18, "HEC is unhealthy, queues are full")
        return _hec(200, 17, "HEC is healthy")

    async def _event(self, request: web.Request) -> web.Response:
        await self._pause()
        raw = await request.read()
        denied = self._auth(request)
        if denied is not None:
            self._log(denied.status, [])
            return denied
        channel = None
        if self.ack_enabled:
            channel, missing = self._channel(request)
            if missing is not None:
                self._log(missing.status, [])
                return missing
        text = _body(raw, request.headers.get("Content-Encoding")).decode("utf-8", errors="replace")
        envelopes, error = _parse_concatenated(text)
        payloads = [e["event"] for e in envelopes if isinstance(e.get("event"), dict)]
        fault = self._take_fault()
        if fault is not None:
            self._log(fault.status, payloads)
            code, message = (9, "Server is busy") if fault.status == 503 else (8, "Internal server error")
            response = _hec(fault.status, code, message)
            if fault.retry_after:
                response.headers["Retry-After"] = fault.retry_after
            return response
        if error is not None:
            self._log(400, payloads)
            return error
        for number, envelope in enumerate(envelopes):
            refused = self._check(envelope, number)
            if refused is not None:
                self._log(400, payloads)
                return refused
        self._log(200, payloads)
        if channel is None:
            self._keep(envelopes)
            return _hec(200, 0, "Success")
        with self._lock:
            ack_id = self._next_ack
            self._next_ack += 1
            self._acks.setdefault(channel, {})[ack_id] = None if self.ack_never else envelopes
        return _hec(200, 0, "Success", ackId=ack_id)

    def _keep(self, envelopes: list[dict[str, Any]]) -> None:
        with self._lock:
            self.envelopes.extend(envelopes)
            self.stored.extend(e["event"] for e in envelopes)

    def _check(self, envelope: dict[str, Any], number: int) -> web.Response | None:
        if "event" not in envelope:
            return _hec(400, 12, "Event field is required", **{"invalid-event-number": number})
        if envelope["event"] in ("", None, {}):
            return _hec(400, 13, "Event field cannot be blank", **{"invalid-event-number": number})
        index = envelope.get("index")
        if self.allowed_indexes is not None and index is not None and index not in self.allowed_indexes:
            return _hec(400, 7, "Incorrect index", **{"invalid-event-number": number})
        event = envelope["event"]
        if self.reject is not None and isinstance(event, dict) and self.reject(event):
            return _hec(400, 6, "Invalid data format", **{"invalid-event-number": number})
        return None

    async def _ack(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        if not self.ack_enabled:
            return _hec(400, 14, "ACK is disabled")
        channel, missing = self._channel(request)
        if missing is not None or channel is None:
            return missing or _hec(400, 10, "Data channel is missing")
        try:
            asked = (await request.json())["acks"]
            ids = [int(i) for i in asked]
        except (ValueError, KeyError, TypeError):
            return _hec(400, 6, "Invalid data format")
        answer: dict[str, bool] = {}
        with self._lock:
            pending = self._acks.get(channel, {})
            indexed = [pending.pop(ack_id, None) for ack_id in ids]
        # Indexed batches are stored now; a later query for the same ackId answers false.
        for ack_id, envelopes in zip(ids, indexed, strict=True):
            answer[str(ack_id)] = envelopes is not None
            if envelopes is not None:
                self._keep(envelopes)
        return web.json_response({"acks": answer})


def _parse_concatenated(text: str) -> tuple[list[dict[str, Any]], web.Response | None]:
    decoder = json.JSONDecoder()
    envelopes: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return envelopes, _hec(400, 6, "Invalid data format", **{"invalid-event-number": len(envelopes)})
        if not isinstance(value, dict):
            return envelopes, _hec(400, 6, "Invalid data format", **{"invalid-event-number": len(envelopes)})
        envelopes.append(value)
    if not envelopes:
        return envelopes, _hec(400, 5, "No data")
    return envelopes, None


# --- Datadog ------------------------------------------------------------------------------------

DD_MAX_PAYLOAD = 5 * 1024 * 1024
DD_MAX_ENTRIES = 1000
DD_MAX_ENTRY = 1024 * 1024


@dataclass
class DatadogReceiver(Receiver):
    truncated: int = 0  # entries over 1 MB that Datadog would have truncated

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v2/logs", self._logs)
        return app

    async def _logs(self, request: web.Request) -> web.Response:
        await self._pause()
        raw = await request.read()
        key = request.headers.get("DD-API-KEY")
        if not key:
            self._log(401, [])
            return web.json_response({"errors": ["Unauthorized"]}, status=401)
        if key != self.secret:
            self._log(403, [])
            return web.json_response({"errors": ["Forbidden"]}, status=403)
        body = _body(raw, request.headers.get("Content-Encoding"))
        if len(body) > DD_MAX_PAYLOAD:
            self._log(413, [])
            return web.json_response({"errors": ["Payload too large"]}, status=413)
        try:
            parsed = json.loads(body)
        except ValueError:
            self._log(400, [])
            return web.json_response({"errors": ["Bad request"]}, status=400)
        entries = parsed if isinstance(parsed, list) else [parsed]
        if len(entries) > DD_MAX_ENTRIES:
            self._log(413, [])
            return web.json_response({"errors": ["Too many entries"]}, status=413)
        if not all(isinstance(e, dict) for e in entries):
            self._log(400, [])
            return web.json_response({"errors": ["Bad request"]}, status=400)
        fault = self._take_fault()
        if fault is not None:
            self._log(fault.status, entries)
            response = web.json_response({"errors": ["fault"]}, status=fault.status)
            if fault.retry_after:
                response.headers["Retry-After"] = fault.retry_after
            return response
        if self.reject is not None and any(self.reject(e) for e in entries):
            self._log(400, entries)
            return web.json_response({"errors": ["Bad request"]}, status=400)
        for entry in entries:
            if len(json.dumps(entry, separators=(",", ":")).encode()) > DD_MAX_ENTRY:
                with self._lock:
                    self.truncated += 1
        self._log(202, entries)
        self._store(entries)
        return web.json_response({}, status=202)


# --- OTLP ---------------------------------------------------------------------------------------


def _from_any_value(value: dict[str, Any]) -> Any:
    if "kvlistValue" in value:
        return {kv["key"]: _from_any_value(kv["value"]) for kv in value["kvlistValue"].get("values", [])}
    if "arrayValue" in value:
        return [_from_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "intValue" in value:
        return int(value["intValue"])
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    return None


@dataclass
class OtlpReceiver(Receiver):
    records: list[dict[str, Any]] = field(default_factory=list)  # raw LogRecords accepted

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/logs", self._logs)
        return app

    async def _logs(self, request: web.Request) -> web.Response:
        await self._pause()
        raw = await request.read()
        if self.secret and request.headers.get("Authorization") != f"Bearer {self.secret}":
            self._log(401, [])
            return web.json_response({"code": 16, "message": "unauthenticated"}, status=401)
        if request.content_type != "application/json":
            self._log(415, [])
            return web.Response(status=415, text="unsupported content type")
        try:
            parsed = json.loads(_body(raw, request.headers.get("Content-Encoding")))
            records = [
                record
                for resource in parsed["resourceLogs"]
                for scope in resource["scopeLogs"]
                for record in scope["logRecords"]
            ]
            payloads = [_from_any_value(record["body"]) for record in records]
        except (ValueError, KeyError, TypeError):
            self._log(400, [])
            return web.json_response({"code": 3, "message": "invalid ExportLogsServiceRequest"}, status=400)
        fault = self._take_fault()
        if fault is not None:
            self._log(fault.status, payloads)
            response = web.json_response({"code": 14, "message": "unavailable"}, status=fault.status)
            if fault.retry_after:
                response.headers["Retry-After"] = fault.retry_after
            return response
        reject = self.reject
        kept = [(r, p) for r, p in zip(records, payloads, strict=True) if not (reject and reject(p))]
        rejected = len(records) - len(kept)
        self._log(200, payloads, accepted=not rejected)
        self._store([p for _, p in kept])
        with self._lock:
            self.records.extend(r for r, _ in kept)
        if rejected:
            partial = {"rejectedLogRecords": str(rejected), "errorMessage": "invalid log record"}
            return web.json_response({"partialSuccess": partial})
        return web.json_response({})


class SiemServer:
    """Serves a receiver over HTTPS on a fixed port across stops and starts (an outage)."""

    def __init__(
        self, receiver: HecReceiver | DatadogReceiver | OtlpReceiver, ssl_context: ssl.SSLContext
    ) -> None:
        self.receiver = receiver
        self.ssl_context = ssl_context
        self._server: SandboxServer | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SiemServer:
        self._server = SandboxServer(self.receiver.app(), self.ssl_context, port=self.port)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
