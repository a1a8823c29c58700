"""Syslog: RFC 5424 messages over TCP with octet-counting framing (RFC 6587), in TLS (RFC 5425).

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [tether@32473 event_id="…" …] BOM{"event": …}

MSGID is the event type; the structured data carries the fields SIEM rules key on (event id and
type, agent, run, provider, token, downscoping, decision, seq); MSG is the whole event as UTF-8 JSON.
Severity: warning (4) for denials, failed mints, rejected policies and anomalies; informational (6)
otherwise.

Syslog over TCP has no application-level acknowledgment: a batch counts as delivered once the
socket has taken all of it (`drain`), so a connection that breaks right after can lose what the
receiver had not read yet. For end-to-end confirmation use Splunk HEC with indexer acknowledgment.
A message larger than `max_message_bytes` is parked, never truncated (raise the receiver's limit
to match, e.g. rsyslog `global(maxMessageSize="64k")`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from typing import Any

from tether.config import split_host_port
from tether.sinks.base import Outcome, Sink
from tether.sinks.config import SyslogSink

SD_FIELDS = (
    "event_id",
    "event_type",
    "agent_id",
    "agent_name",
    "run_id",
    "task_context",
    "provider",
    "token_id",
    "scope_downscoped",
    "policy_id",
    "seq",
)
_WARNING_TYPES = frozenset({"api.denied", "token.mint_failed", "policy.rejected", "anomaly.detected"})
_BOM = "\ufeff"


def sd_escape(value: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 6.3.3): backslash before '"', '\\' and ']'."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` characters, '-' if empty."""
    cleaned = "".join(c for c in (value or "") if "!" <= c <= "~")[:limit]
    return cleaned or "-"


def _sd_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_message(event: dict[str, Any], payload: str, config: SyslogSink, hostname: str) -> bytes:
    """One RFC 5424 message: key fields as structured data, `payload` (JSON, native or OCSF) as MSG."""
    severity = 4 if event["event_type"] in _WARNING_TYPES else 6
    params = [
        f'{name}="{sd_escape(_sd_value(event[name]))}"' for name in SD_FIELDS if event.get(name) is not None
    ]
    decision = event.get("decision") or {}
    if decision.get("action"):
        params.append(f'decision="{sd_escape(str(decision["action"]))}"')
    header = " ".join(
        (
            f"<{config.facility * 8 + severity}>1",
            event["timestamp"],
            _header_field(hostname, 255),
            _header_field(config.app_name, 48),
            str(os.getpid()),
            _header_field(event["event_type"], 32),
        )
    )
    structured = f"[{config.sd_id} {' '.join(params)}]"
    return f"{header} {structured} {_BOM}{payload}".encode()


class Syslog(Sink):
    config: SyslogSink

    def __init__(self, config: SyslogSink) -> None:
        super().__init__(config)
        self.max_record_bytes = config.max_message_bytes
        self.host, self.port = split_host_port(config.address, what="address")
        self.hostname = config.hostname or socket.gethostname()
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None

    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        message = format_message(event, self.payload_json(event, raw), self.config, self.hostname)
        return b"%d %s" % (len(message), message)  # octet counting: MSG-LEN SP SYSLOG-MSG

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        context = ssl.create_default_context()
        if self.config.ca_file is not None:
            context.load_verify_locations(cafile=str(self.config.ca_file))
        return context

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.is_closing():
            context = self._ssl()
            server_name = (self.config.server_name or self.host) if context else None
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=context, server_hostname=server_name),
                self.config.timeout_seconds,
            )
        assert self._writer is not None
        return self._writer

    async def send(self, records: list[bytes]) -> Outcome:
        try:
            writer = await self._connect()
            if self._reader is not None and self._reader.at_eof():
                raise ConnectionResetError("the receiver closed the connection")
            writer.write(b"".join(records))
            await asyncio.wait_for(writer.drain(), self.config.timeout_seconds)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            await self.close()
            return Outcome.retry(f"syslog {self.config.address}: {type(exc).__name__}: {exc}")
        return Outcome.ok()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
