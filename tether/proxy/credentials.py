"""Credentials addon: the agent holds no real secret; tether issues a per-run token and injects it."""

from __future__ import annotations

import base64
import binascii
import logging
import time

from mitmproxy import http

from tether.broker.base import Issuance, IssuedToken, MintError, TokenKey
from tether.config import CredentialConfig
from tether.policy.engine import Decision
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")

PLACEHOLDER = "tether"
MINT_STARTED = "tether.mint_started"
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
        key = TokenKey(
            fd.agent(flow, rt).agent_id, run.run_id, grant.provider, grant.credential, grant.granted
        )
        flow.metadata[MINT_STARTED] = time.monotonic()
        provider = rt.catalog.providers[grant.provider]
        try:
            issuance = await rt.broker.issue(
                key,
                ttl_seconds=grant.ttl_seconds,
                native=provider.native(grant.granted),
                record=lambda issued: self._record_issuance(flow, rt, issued, decision),
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
                scope_requested=list(grant.requested) if grant.requested is not None else None,
                scope_granted=list(grant.granted),
            )
            return
        if issuance is None:
            return  # its issuance could not be recorded: durable() answered 503
        inject(flow.request, issuance.token, credential)
        flow.metadata[fd.TOKEN] = issuance.token

    @staticmethod
    async def _record_issuance(
        flow: http.HTTPFlow, rt: Runtime, issuance: Issuance, decision: Decision
    ) -> bool:
        """token.expired for what it replaces, then token.minted: durable before the token is used."""
        assert decision.grant is not None
        grant = decision.grant
        run = flow.metadata[fd.RUN]
        agent = fd.agent(flow, rt)
        for token in issuance.expired:
            expired = rt.recorder.event("token.expired", run, agent=agent, **rt.recorder.token_fields(token))
            if not await fd.durable(flow, rt, expired):
                return False
        token = issuance.token
        event = rt.recorder.event(
            "token.minted",
            run,
            agent=agent,
            **rt.recorder.token_fields(token),
            scope_requested=list(grant.requested) if grant.requested is not None else list(grant.granted),
            scope_downscoped=grant.downscoped,
            policy_id=grant.policy_id,
            source_ip=fd.source_ip(flow),
            detail={"credential": token.secret.source, "minted": token.secret.minted},
        )
        if not await fd.durable(flow, rt, event):
            return False
        rt.ops.mint_seconds.labels(grant.provider).observe(time.monotonic() - flow.metadata[MINT_STARTED])
        return True


def strip_agent_credential(headers: http.Headers, credential: CredentialConfig | None) -> str | None:
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


def inject(req: http.Request, token: IssuedToken, credential: CredentialConfig | None) -> None:
    path = req.path.split("?", 1)[0]
    if credential is None or credential.inject == "basic" or path.endswith(GIT_SMART_HTTP):
        user = credential.username if credential else "x-access-token"
        basic = base64.b64encode(f"{user}:{token.value}".encode()).decode()
        req.headers["Authorization"] = f"Basic {basic}"
    elif credential.inject == "header" and credential.header:
        req.headers[credential.header] = f"{credential.prefix}{token.value}"
    else:
        req.headers["Authorization"] = f"Bearer {token.value}"
