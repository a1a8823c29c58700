"""Per-flow data shared between tether's addons (in `flow.metadata`) and the replies they make."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from mitmproxy import http

from tether.gateway import Agent
from tether.ledger.store import LedgerError
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")

AGENT = "tether.agent"  # gateway mode: the Agent that authenticated (sidecar: absent, the config's agent)
RUN = "tether.run"  # RunContext of the call
NEW_RUN = "tether.new_run"  # the call named a run tether had not seen: record run.started
SCOPES = "tether.scopes"  # scopes the agent asked for, per provider (None: no ask)
DECISION = "tether.decision"  # policy Decision
TOKEN = "tether.token"  # IssuedToken injected into the call
AGENT_AUTH = "tether.agent_auth"  # what happened to the agent's own credential: "placeholder" | "replaced"
REFUSAL = "tether.refusal"  # event to record for a call tether answered itself (never forwarded)
REQUEST_EVENT = "tether.request_event"  # the committed api.request event

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def agent(flow: http.HTTPFlow, rt: Runtime) -> Agent:
    """Who made the call: the authenticated agent in gateway mode, the configured one in a sidecar."""
    found: Agent | None = flow.metadata.get(AGENT)
    return found or rt.agent


def reply_json(flow: http.HTTPFlow, status: int, body: dict[str, Any]) -> None:
    flow.response = http.Response.make(status, json.dumps(body).encode(), JSON_HEADERS)


def refuse(
    flow: http.HTTPFlow,
    rt: Runtime,
    *,
    status: int,
    error: str,
    reason: str,
    event_type: str = "api.denied",
    rule: str | None = None,
    **fields: Any,
) -> None:
    """Answer the agent ourselves and leave the event for the recorder addon to write."""
    fields.setdefault("request", request_fields(flow))
    fields.setdefault("decision", {"action": "deny", "reason": reason, "rule": rule})
    fields.setdefault("source_ip", source_ip(flow))
    who = agent(flow, rt)
    run = flow.metadata.get(RUN) or rt.runs_for(who)[0].current()
    event = rt.recorder.event(event_type, run, agent=who, **fields)
    flow.metadata[REFUSAL] = event
    reply_json(flow, status, {"error": error, "reason": reason, "event_id": event["event_id"]})


async def durable(flow: http.HTTPFlow, rt: Runtime, event: dict[str, Any]) -> bool:
    """Write `event`; when the ledger cannot record, fail closed (503, not forwarded) unless configured open.

    Returns whether the call may go on."""
    try:
        await rt.recorder.write(event)
        return True
    except LedgerError as exc:
        if rt.config.fail_mode == "open":
            log.error("ledger write failed, forwarding anyway (fail_mode: open): %s", exc)
            return True
        log.error("ledger write failed, refusing the call (fail closed): %s", exc)
        reply_json(
            flow, 503, {"error": "tether_ledger_unavailable", "reason": "the audit ledger cannot record"}
        )
        return False


def source_ip(flow: http.HTTPFlow) -> str | None:
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else None


def request_fields(flow: http.HTTPFlow, route: str | None = None) -> dict[str, Any]:
    """The event's `request` object. The path drops the query: it may carry secrets."""
    req = flow.request
    body = req.raw_content or b""
    return {
        "method": req.method,
        "host": req.host.lower(),
        "path": req.path.split("?", 1)[0][:2048],
        "route": route,
        "body_sha256": hashlib.sha256(body).hexdigest() if body else None,
        "bytes": len(body),
    }
