"""Gateway addon: in gateway mode every call proves which agent sent it, with Proxy-Authorization Basic
(agent id + secret). Without a valid credential the agent gets 407 and the ledger an `api.denied`.

A tunnel authenticates once, at CONNECT; the requests inside it belong to that agent whatever headers
they carry. A plain-HTTP request carries its own credential. Proxy-Authorization is never forwarded.
In sidecar mode (no `gateway:` section) this addon does nothing."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import connection, http

from tether.gateway import Agent, AuthResult
from tether.ledger.store import LedgerError
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder
from tether.proxy.runtime import NO_AGENT, Runtime

log = logging.getLogger("tether")

REALM = 'Basic realm="tether", charset="UTF-8"'


class GatewayAuth:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        self.tunnels: dict[str, Agent] = {}  # client connection id -> the agent its CONNECT proved

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        rt = self.holder.runtime
        if rt.gateway is None:
            return
        agent = await self._authenticate(flow, rt)
        if agent is None:
            refusal = flow.metadata.pop(fd.REFUSAL, None)
            if refusal is not None:  # the recorder addon never sees a CONNECT: write it here
                try:
                    await rt.recorder.write(refusal)
                except LedgerError as exc:
                    log.error("could not record a refused CONNECT (%s): %s", refusal["event_id"], exc)
            return
        self.tunnels[flow.client_conn.id] = agent

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        rt = self.holder.runtime
        if rt.gateway is None:
            return
        agent = self.tunnels.get(flow.client_conn.id)
        if agent is not None and rt.gateway.get(agent.agent_id) is None:
            # Removed from the agents file since its CONNECT: the tunnel no longer speaks for anyone.
            flow.request.headers.pop("Proxy-Authorization", None)
            self._refuse(flow, rt, "unknown_agent", agent.agent_id)
            return
        if agent is not None:
            flow.request.headers.pop("Proxy-Authorization", None)  # inside a tunnel: never forwarded
            flow.metadata[fd.AGENT] = agent
            return
        await self._authenticate(flow, rt)

    def client_disconnected(self, client: connection.Client) -> None:
        self.tunnels.pop(client.id, None)

    async def _authenticate(self, flow: http.HTTPFlow, rt: Runtime) -> Agent | None:
        assert rt.gateway is not None
        values = flow.request.headers.get_all("Proxy-Authorization")
        flow.request.headers.pop("Proxy-Authorization", None)
        header = values[0] if len(values) == 1 else None
        cached = rt.gateway.cached(header)
        if cached is not None:
            result = AuthResult(cached, None, cached.agent_id)
        else:
            result = await asyncio.to_thread(rt.gateway.check, header)  # scrypt: off the event loop
        if result.agent is None:
            problem = "ambiguous" if len(values) > 1 else result.problem or "missing"
            self._refuse(flow, rt, problem, result.claimed_id)
            return None
        agent = result.agent
        flow.metadata[fd.AGENT] = agent
        registry, created = rt.runs_for(agent)
        if created:
            run = registry.default
            event = rt.recorder.event(
                "run.started", run, agent=agent, source_ip=fd.source_ip(flow), detail={"origin": "gateway"}
            )
            if not await fd.durable(flow, rt, event):
                return None
        return agent

    @staticmethod
    def _refuse(flow: http.HTTPFlow, rt: Runtime, problem: str, claimed_id: str | None) -> None:
        rt.ops.gateway_auth_failures.labels(problem).inc()
        flow.metadata[fd.AGENT] = NO_AGENT
        reasons = {
            "missing": "proxy authentication required: send Proxy-Authorization Basic (agent id:secret)",
            "malformed": "Proxy-Authorization is not Basic base64(agent id:secret)",
            "ambiguous": "Proxy-Authorization was sent more than once",
            "unknown_agent": "unknown agent or wrong secret",
            "wrong_secret": "unknown agent or wrong secret",  # the same answer: no agent-id oracle
        }
        fd.refuse(
            flow,
            rt,
            status=407,
            error="tether_proxy_auth_required",
            reason=reasons[problem],
            rule="gateway",
            detail={"auth": problem, "claimed_agent_id": claimed_id},
        )
        assert flow.response is not None
        flow.response.headers["Proxy-Authenticate"] = REALM
