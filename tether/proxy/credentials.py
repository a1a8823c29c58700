"""Credentials addon: the agent holds no real secret; tether issues a per-run token and injects it."""

from __future__ import annotations

import base64
import binascii
import logging

from mitmproxy import http

from tether.broker.base import Issuance, IssuedToken, MintError, TokenKey, TokenOrigin
from tether.config import AnyCredential
from tether.ledger.store import LedgerError
from tether.policy.engine import Decision
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")

PLACEHOLDER = "tether"
GIT_SMART_HTTP = ("/info/refs", "/git-upload-pack", "/git-receive-pack")


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
        try:
            issuance = await rt.broker.issue(
                key,
                ttl_seconds=grant.ttl_seconds,
                native=provider.native(grant.granted),
                record=lambda issued: self._record_issuance(flow, rt, issued),
                origin=origin,
                repository=f"{owner}/{repo.removesuffix('.git')}" if owner and repo else None,
            )
        except MintError as exc:
            fd.refuse(
                flow,
                rt,
                status=502,
                error="tether_mint_failed",
                reason=str(exc),
                event_type="token.mint_failed",
                rule="broker",
                provider=grant.provider,
                policy_id=grant.policy_id,
                scope_requested=list(grant.requested if grant.requested is not None else grant.granted),
                scope_granted=list(grant.granted),
                scope_downscoped=grant.downscoped,
                ttl_seconds=grant.ttl_seconds,
                detail={"credential": grant.credential, "provider_status": exc.status},
            )
            return
        if issuance is None:
            return  # its issuance could not be recorded: durable() answered 503
        inject(flow.request, issuance.token, credential)
        flow.metadata[fd.TOKEN] = issuance.token

    async def response(self, flow: http.HTTPFlow) -> None:
        """A 401 to a minted token: the provider no longer takes it (revoked or rotated out of band).
        Retire it so the next call mints a fresh one; the broker does this once per key."""
        token: IssuedToken | None = flow.metadata.get(fd.TOKEN)
        if token is None or flow.response is None or flow.response.status_code != 401:
            return
        rt = self.holder.runtime
        retired = await rt.broker.reject(token)
        if retired is None:
            return
        fields = rt.recorder.retired_fields(retired, reason="provider_rejected")
        try:
            await rt.recorder.record("token.revoked", flow.metadata[fd.RUN], **fields)
        except LedgerError as exc:
            log.error("could not record token.revoked for %s: %s", token.token_id, exc)

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
