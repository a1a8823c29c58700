"""Splunk HTTP Event Collector: `POST {url}/services/collector/event`, `Authorization: Splunk <token>`.

A batch is the events' JSON envelopes concatenated. HEC answers `{"text", "code"}`; the codes are
handled as Splunk documents them: 0 success; 1-4 token problems and 7, 10, 11, 14, 16 settings
problems (retried until an operator fixes them, nothing parked); 5, 6, 12, 13, 15 data problems
(rejected: bisected, `invalid-event-number` points at the bad event); 8, 9, 18-20 busy or unhealthy
(retried, Retry-After honoured). With indexer acknowledgment the request carries a channel GUID
(`X-Splunk-Request-Channel`) and the batch counts as delivered only once
`/services/collector/ack` reports its `ackId` true; not acked in time means it is sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tether.sinks.base import HttpSink, Outcome, http_status_outcome, parse_retry_after
from tether.sinks.config import SplunkHecSink

log = logging.getLogger("tether.sinks")

AUTH_CODES = frozenset({1, 2, 3, 4})
SETTINGS_CODES = frozenset({7, 10, 11, 14, 16})
DATA_CODES = frozenset({5, 6, 12, 13, 15})
BUSY_CODES = frozenset({8, 9, 18, 19, 20})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_seconds(timestamp: str) -> str:
    """`2025-02-03T14:23:17.432Z` as epoch seconds with milliseconds (HEC's `time`): `1738592597.432`."""
    ms = (datetime.fromisoformat(timestamp) - _EPOCH) // timedelta(milliseconds=1)
    return f"{ms // 1000}.{ms % 1000:03d}"


def classify(status: int, reply: Mapping[str, Any] | None, retry_after: str | None) -> Outcome:
    """The outcome of an HEC reply (HTTP status plus the JSON `code`)."""
    if reply is None or not isinstance(reply.get("code"), int):
        return http_status_outcome(status, "no HEC reply code", retry_after, what="HEC")
    code, text = reply["code"], str(reply.get("text", ""))
    reason = f"HEC code {code}: {text}"
    if code == 0 and status == 200:
        return Outcome.ok()
    if code in DATA_CODES:
        index = reply.get("invalid-event-number")
        return Outcome.reject(reason, index if isinstance(index, int) else None)
    if code in BUSY_CODES:
        return Outcome.retry(reason, parse_retry_after(retry_after))
    if code in AUTH_CODES:
        return Outcome.retry(f"{reason} (check the HEC token; events wait, none is dropped)")
    if code in SETTINGS_CODES:
        return Outcome.retry(f"{reason} (check the sink settings; events wait, none is dropped)")
    return http_status_outcome(status, reason, retry_after, what="HEC")


class SplunkHec(HttpSink):
    config: SplunkHecSink

    def __init__(self, config: SplunkHecSink, token: str, upstream_overrides: Mapping[str, Any]) -> None:
        super().__init__(config, config.url, upstream_overrides)
        self._auth = f"Splunk {token}"
        self.channel = str(uuid.uuid4())
        self.host = config.host or socket.gethostname()
        meta = {"host": self.host, "source": config.source, "sourcetype": config.sourcetype}
        if config.index:
            meta["index"] = config.index
        self._meta = json.dumps(meta, separators=(",", ":"), ensure_ascii=False)[1:-1] + ","

    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        # The stored JSON text is spliced in as is: no second encoding of the event.
        head = f'{{"time":{epoch_seconds(event["timestamp"])},{self._meta}"event":'
        return (head + self.payload_json(event, raw) + "}").encode()

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        if self.config.ack:
            headers["X-Splunk-Request-Channel"] = self.channel
        return headers

    async def start(self) -> None:
        if not self.config.health_check:
            return
        try:
            async with self.session.get(f"{self.url}/services/collector/health") as resp:
                reply = await resp.json(content_type=None)
                log.info("sink %s: HEC health: HTTP %s %s", self.name, resp.status, reply)
        except Exception as exc:  # the SIEM may be down at start; the shipper retries
            log.warning("sink %s: HEC health check failed: %s: %s", self.name, type(exc).__name__, exc)

    async def send(self, records: list[bytes]) -> Outcome:
        body, encoding = await self.body(b"".join(records))
        async with self.session.post(
            f"{self.url}/services/collector/event", data=body, headers={**self._headers(), **encoding}
        ) as resp:
            reply = await _json(resp)
            outcome = classify(resp.status, reply, resp.headers.get("Retry-After"))
        if outcome.kind != "ok" or not self.config.ack:
            return outcome
        ack_id = reply.get("ackId") if reply else None
        if not isinstance(ack_id, int):
            return Outcome.retry("HEC accepted the batch without an ackId (is useACK on for the token?)")
        return await self._await_ack(ack_id)

    async def _await_ack(self, ack_id: int) -> Outcome:
        deadline = time.monotonic() + self.config.ack_timeout_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(self.config.ack_poll_seconds)
            async with self.session.post(
                f"{self.url}/services/collector/ack",
                params={"channel": self.channel},
                json={"acks": [ack_id]},
                headers=self._headers(),
            ) as resp:
                reply = await _json(resp)
                if resp.status != 200 or reply is None:
                    outcome = classify(resp.status, reply, resp.headers.get("Retry-After"))
                    return (
                        outcome
                        if outcome.kind == "retry"
                        else Outcome.retry(f"ack query failed: {outcome.reason}")
                    )
            acks = reply.get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return Outcome.ok()
        return Outcome.retry(
            f"HEC did not acknowledge ackId {ack_id} within {self.config.ack_timeout_seconds:g}s"
        )


async def _json(resp: Any) -> dict[str, Any] | None:
    try:
        found = await resp.json(content_type=None)
    except (ValueError, UnicodeDecodeError):
        return None
    return found if isinstance(found, dict) else None
