"""Credentials addon: the agent holds no real secret; tether issues a per-run token and injects it."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

from mitmproxy import http

from tether.broker.base import Issuance, IssuedToken, MintError, TokenKey, TokenOrigin
from tether.config import AnyCredential
from tether.context import RunContext
from tether.ledger.store import LedgerError
from tether.policy.engine import Decision
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder
from tether.proxy.recorder import STARTED, api_event
from tether.proxy.resend import ResendError, resend
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")

PLACEHOLDER = "tether"
GIT_SMART_HTTP = ("/info/refs", "/git-upload-pack", "/git-receive-pack")
FRESH = "tether.token_fresh"  # the flow's token was minted for it (a 401 to it is not retried)
RETRIED = "tether.token_retried"  # the flow was sent again with a re-minted token


class Credentials:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        decision: Decision | None = flow.metadata.get(fd.DECISION)
        if decision is None or decision.grant is None or not decision.forward:
            return  # not a brokered provider: the agent's own headers pass as they are
        rt = self.holder.runtime
        grant = decision.grant
        if flow.request.scheme != "https":
            reason = "insecure_transport: brokered credentials are only sent over HTTPS"
            fd.refuse(flow, rt, status=403, error="tether_denied", reason=reason, rule="credentials")
            return
        credential = rt.config.credentials.get(grant.credential)
        flow.metadata[fd.AGENT_AUTH] = strip_agent_credential(flow.request.headers, credential)
        try:
            issuance = await self._issue(flow, rt, decision)
        except MintError as exc:
            fields = mint_failed_fields(decision, exc)
            fd.refuse(
                flow,
                rt,
                status=502,
                error="tether_mint_failed",
                reason=str(exc),
                event_type="token.mint_failed",
                rule="broker",
                **fields,
            )
            return
        if issuance is None:
            return  # its issuance could not be recorded: durable() answered 503
        inject(flow.request, issuance.token, credential)
        flow.metadata[fd.TOKEN] = issuance.token
        flow.metadata[FRESH] = issuance.fresh

    async def response(self, flow: http.HTTPFlow) -> None:
        """A 401 to a cached minted token: the provider no longer takes it (revoked or rotated out of
        band). Retire it, mint a fresh one and send the call once more with it. The broker re-mints
        once per key: if the fresh token is refused as well, later calls get the provider's 401."""
        token: IssuedToken | None = flow.metadata.get(fd.TOKEN)
        if token is None or flow.response is None or flow.response.status_code != 401:
            return
        if flow.metadata.get(FRESH) or flow.metadata.get(RETRIED):
            return
        rt = self.holder.runtime
        retired = await rt.broker.reject(token)
        if retired is None:
            return
        flow.metadata[RETRIED] = True
        run = flow.metadata[fd.RUN]
        await _record_quietly(
            rt, "token.revoked", run, **rt.recorder.retired_fields(retired, reason="provider_rejected")
        )
        decision: Decision = flow.metadata[fd.DECISION]
        try:
            issuance = await self._issue(flow, rt, decision)
        except MintError as exc:
            fields = mint_failed_fields(decision, exc)
            refused = {"action": "deny", "reason": str(exc), "rule": "broker"}
            await _record_quietly(
                rt,
                "token.mint_failed",
                run,
                request=fd.request_fields(flow),
                decision=refused,
                source_ip=fd.source_ip(flow),
                **fields,
            )
            return  # the agent gets the provider's 401
        if issuance is None:
            return  # token.minted could not be recorded: durable() answered 503
        assert decision.grant is not None
        inject(flow.request, issuance.token, rt.config.credentials.get(decision.grant.credential))
        await self._send_again(flow, rt, issuance.token)

    @staticmethod
    async def _send_again(flow: http.HTTPFlow, rt: Runtime, token: IssuedToken) -> None:
        """Close the refused attempt on record, record the second before it is sent, send it."""
        assert flow.response is not None
        elapsed = round((time.monotonic() - flow.metadata[STARTED]) * 1000, 1)
        first = {"status": 401, "bytes": len(flow.response.raw_content or b""), "duration_ms": elapsed}
        await _write_quietly(
            rt, api_event("api.response", flow, rt, response=first, detail={"retried": True})
        )
        first_request = flow.metadata.get(fd.REQUEST_EVENT)
        flow.metadata[fd.TOKEN] = token
        retry_of = first_request["event_id"] if first_request else None
        event = api_event("api.request", flow, rt, detail={"retry_of": retry_of})
        if not await fd.durable(flow, rt, event):
            flow.metadata.pop(fd.REQUEST_EVENT, None)
            return
        flow.metadata[fd.REQUEST_EVENT] = event
        try:
            flow.response = await resend(rt, flow.request)
        except ResendError as exc:
            reason = f"the call was refused (401) and sending it again with a fresh token failed: {exc}"
            fd.reply_json(flow, 502, {"error": "tether_upstream_error", "reason": reason})

    async def _issue(self, flow: http.HTTPFlow, rt: Runtime, decision: Decision) -> Issuance | None:
        """The flow's token from the broker (token.minted recorded when fresh); raises MintError."""
        assert decision.grant is not None
        grant = decision.grant
        run = flow.metadata[fd.RUN]
        owner, repo = decision.params.get("owner"), decision.params.get("repo")
        key = TokenKey(
            rt.config.effective_agent_id,
            run.run_id,
            grant.provider,
            grant.credential,
            grant.granted,
            target=rt.broker.target(grant.credential, owner),
            repositories=grant.repositories,
        )
        provider = rt.catalog.providers[grant.provider]
        origin = TokenOrigin(grant.requested, grant.downscoped, grant.policy_id, fd.source_ip(flow))
        return await rt.broker.issue(
            key,
            ttl_seconds=grant.ttl_seconds,
            native=provider.native(grant.granted),
            record=lambda issued: self._record_issuance(flow, rt, issued),
            origin=origin,
            repository=f"{owner}/{repo.removesuffix('.git')}" if owner and repo else None,
        )

    @staticmethod
    async def _record_issuance(flow: http.HTTPFlow, rt: Runtime, issuance: Issuance) -> bool:
        """token.expired for what it replaces, then token.minted: durable before the token is used."""
        run = flow.metadata[fd.RUN]
        for retired in issuance.expired:
            event = rt.recorder.event("token.expired", run, **rt.recorder.retired_fields(retired))
            if not await fd.durable(flow, rt, event):
                return False
        event = rt.recorder.event("token.minted", run, **rt.recorder.token_fields(issuance.token))
        return await fd.durable(flow, rt, event)


def mint_failed_fields(decision: Decision, exc: MintError) -> dict[str, Any]:
    """The grant's fields on token.mint_failed, with the provider's status (the reason is the error)."""
    assert decision.grant is not None
    grant = decision.grant
    return {
        "provider": grant.provider,
        "policy_id": grant.policy_id,
        "scope_requested": list(grant.requested if grant.requested is not None else grant.granted),
        "scope_granted": list(grant.granted),
        "scope_downscoped": grant.downscoped,
        "ttl_seconds": grant.ttl_seconds,
        "detail": {"credential": grant.credential, "provider_status": exc.status},
    }


async def _write_quietly(rt: Runtime, event: dict[str, Any]) -> None:
    try:
        await rt.recorder.write(event)
    except LedgerError as exc:
        log.error("could not record %s %s: %s", event["event_type"], event["event_id"], exc)


async def _record_quietly(rt: Runtime, event_type: str, run: RunContext, **fields: Any) -> None:
    await _write_quietly(rt, rt.recorder.event(event_type, run, **fields))


def strip_agent_credential(headers: http.Headers, credential: AnyCredential | None) -> str | None:
    """Remove the agent's own credential; say whether it was tether's placeholder or a real one."""
    names = ["Authorization"]
    if credential is not None and credential.inject == "header" and credential.header:
        names.append(credential.header)
    values = [value for name in names for value in headers.get_all(name)]
    for name in names:
        headers.pop(name, None)
    if not values:
        return None
    return "placeholder" if all(_is_placeholder(v) for v in values) else "replaced"


def _is_placeholder(value: str) -> bool:
    scheme, _, rest = value.strip().partition(" ")
    if not rest:
        return scheme == PLACEHOLDER
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return PLACEHOLDER in (user, password) and password in (PLACEHOLDER, "")
    return rest.strip() == PLACEHOLDER


def inject(req: http.Request, token: IssuedToken, credential: AnyCredential | None) -> None:
    path = req.path.split("?", 1)[0]
    if credential is None or credential.inject == "basic" or path.endswith(GIT_SMART_HTTP):
        user = credential.username if credential else "x-access-token"
        basic = base64.b64encode(f"{user}:{token.value}".encode()).decode()
        req.headers["Authorization"] = f"Basic {basic}"
    elif credential.inject == "header" and credential.header:
        req.headers[credential.header] = f"{credential.prefix}{token.value}"
    else:
        req.headers["Authorization"] = f"Bearer {token.value}"
