"""Recorder addon: every call in the ledger — `api.request` durably before it is forwarded
(fail closed), `api.response` after, `api.denied` for calls tether answered itself."""

from __future__ import annotations

import logging
import time
from typing import Any

from mitmproxy import http

from tether.ledger.store import LedgerError
from tether.policy.engine import Decision
from tether.proxy import flowdata as fd
from tether.proxy.guard import decision_fields, scope_fields
from tether.proxy.holder import Holder
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")

STARTED = "tether.started"


class Recorder:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    async def request(self, flow: http.HTTPFlow) -> None:
        rt = self.holder.runtime
        flow.metadata[STARTED] = time.monotonic()
        if flow.metadata.get(fd.NEW_RUN) and not await self._run_started(flow, rt):
            return
        refusal = flow.metadata.get(fd.REFUSAL)
        if refusal is not None:
            try:
                await rt.recorder.write(refusal)
            except LedgerError as exc:
                log.error("could not record a refused call (%s): %s", refusal["event_id"], exc)
            return
        if flow.response or flow.error:
            return
        event = api_event("api.request", flow, rt)
        if await fd.durable(flow, rt, event):
            flow.metadata[fd.REQUEST_EVENT] = event

    async def response(self, flow: http.HTTPFlow) -> None:
        if fd.REQUEST_EVENT not in flow.metadata or flow.response is None:
            return
        body = flow.response.raw_content or b""
        await self._after(flow, {"status": flow.response.status_code, "bytes": len(body)})

    async def error(self, flow: http.HTTPFlow) -> None:
        if fd.REQUEST_EVENT not in flow.metadata or flow.response is not None:
            return
        # mitmproxy answers the agent 502 itself; the reason is mitmproxy's text, no secrets in it.
        message = flow.error.msg if flow.error else "unknown error"
        await self._after(flow, {"status": 502, "bytes": 0}, detail={"error": message[:500]})

    async def _after(
        self, flow: http.HTTPFlow, response: dict[str, Any], detail: dict[str, Any] | None = None
    ) -> None:
        rt = self.holder.runtime
        response["duration_ms"] = round((time.monotonic() - flow.metadata[STARTED]) * 1000, 1)
        event = api_event("api.response", flow, rt, response=response, detail=detail)
        try:
            await rt.recorder.write(event)
        except LedgerError as exc:
            # The call already happened and its api.request is on record; keep the agent's answer.
            log.error(
                "could not record api.response for %s: %s", flow.metadata[fd.REQUEST_EVENT]["event_id"], exc
            )

    async def _run_started(self, flow: http.HTTPFlow, rt: Runtime) -> bool:
        run = flow.metadata[fd.RUN]
        event = rt.recorder.event(
            "run.started", run, source_ip=fd.source_ip(flow), detail={"origin": run.origin}
        )
        return await fd.durable(flow, rt, event)


def api_event(event_type: str, flow: http.HTTPFlow, rt: Runtime, **extra: Any) -> dict[str, Any]:
    """An api.* event for the flow: its request, decision, scopes and the token it carries."""
    decision: Decision | None = flow.metadata.get(fd.DECISION)
    token = flow.metadata.get(fd.TOKEN)
    fields: dict[str, Any] = {"request": fd.request_fields(flow, decision.route if decision else None)}
    if decision is not None:
        fields.update(scope_fields(decision), decision=decision_fields(decision))
    if token is not None:
        fields.update(token_id=token.token_id, token_sha256=token.token_sha256)
    detail = dict(extra.pop("detail", None) or {})
    if flow.metadata.get(fd.AGENT_AUTH):
        detail["agent_credential"] = flow.metadata[fd.AGENT_AUTH]
    return rt.recorder.event(
        event_type,
        flow.metadata[fd.RUN],
        source_ip=fd.source_ip(flow),
        detail=detail or None,
        **fields,
        **extra,
    )
