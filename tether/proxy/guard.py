"""Guard addon: asks the policy engine whether a call may go out; denies with 403 in enforce mode."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

from mitmproxy import http, tcp

from tether.policy.engine import Decision, RequestFacts
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder


class Guard:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        rt = self.holder.runtime
        req = flow.request
        host = req.host.lower()
        facts = RequestFacts(
            agent_name=fd.agent(flow, rt).agent_name,
            method=req.method.upper(),
            host=host,
            port=req.port,
            path=req.path.split("?", 1)[0],
            query=req.path.partition("?")[2],
            requested_scopes=flow.metadata.get(fd.SCOPES),
            resolved_ips=(),
            trusted_destination=True,
            now=datetime.datetime.now(datetime.UTC),
        )
        engine = rt.policies.engine
        decision = engine.decide(facts)
        if decision.forward and host not in rt.config.upstream_overrides:
            # Resolve only hosts that may be reached (no DNS for denied ones), then apply the SSRF guard.
            try:
                addresses = await rt.resolver.resolve(host, req.port)
            except (OSError, UnicodeError) as exc:
                reason = f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}"
                fd.refuse(
                    flow, rt, status=502, error="tether_upstream_unresolvable", reason=reason, rule="dns"
                )
                return
            decision = engine.decide(replace(facts, resolved_ips=addresses, trusted_destination=False))
            if decision.forward:
                rt.resolver.vet(host, req.port, addresses)
        flow.metadata[fd.DECISION] = decision
        if decision.forward:
            return
        fd.refuse(
            flow,
            rt,
            status=403,
            error="tether_denied",
            reason=decision.reason or "denied by policy",
            rule=decision.rule,
            **scope_fields(decision),
            request=fd.request_fields(flow, decision.route),
            decision=decision_fields(decision),
        )

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """Only HTTP can be attributed and recorded: raw TCP tunnels are refused (fail closed)."""
        flow.kill()


def decision_fields(decision: Decision) -> dict[str, Any]:
    fields: dict[str, Any] = {"action": decision.action, "reason": decision.reason, "rule": decision.rule}
    fields["mode"] = decision.mode
    if decision.mode == "report" and decision.action == "deny":
        # The call went through; say what enforce mode would have done.
        fields.update(action="allow", would="deny")
    if decision.flags:
        fields["flags"] = list(decision.flags)
    return fields


def scope_fields(decision: Decision) -> dict[str, Any]:
    """Scope fields of an api.* event: requested = what the call needed, granted = the grant."""
    grant = decision.grant
    return {
        "provider": decision.provider,
        "policy_id": decision.policy_id,
        "scope_requested": list(decision.scope_needed) if decision.scope_needed else None,
        "scope_granted": list(grant.granted) if grant else None,
        # True when the call needed more than the grant (whether the policy or the agent's ask cut it).
        "scope_downscoped": needs_more(decision) if decision.scope_needed else None,
        "ttl_seconds": grant.ttl_seconds if grant else None,
    }


def needs_more(decision: Decision) -> bool:
    return decision.downscoped or (decision.reason or "").startswith("scope_not_granted")
