"""Control API (aiohttp): health and the run lifecycle.

In gateway mode the run endpoints take the agent's own credential (`Authorization: Basic id:secret`,
the same as its Proxy-Authorization) and act on that agent's runs only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tether import __version__
from tether.api import analysis as analysis_api
from tether.api.audit import add_routes as add_audit_routes
from tether.context import ContextError, RunContext, RunRegistry, scopes_from_json
from tether.gateway import Agent
from tether.ledger.store import LedgerError
from tether.ops import http as ops_http
from tether.proxy.lifecycle import end_run
from tether.proxy.runtime import Runtime

MAX_BODY = 64 * 1024
RUNTIME = web.AppKey("runtime", Runtime)


def run_json(run: RunContext) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "task_context": run.task_context,
        "triggered_by": run.triggered_by,
        "scopes": {provider: sorted(names) for provider, names in run.scopes.items()},
        "origin": run.origin,
        "active": run.active,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
    }


def error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


async def healthz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "agent": rt.config.agent_name,
            "run_id": rt.runs.current().run_id,
        }
    )


async def _caller(request: web.Request) -> tuple[Agent, RunRegistry] | web.Response:
    """The agent calling the run API and its runs; in gateway mode it must authenticate (else 401)."""
    rt = request.app[RUNTIME]
    if rt.gateway is None:
        return rt.agent, rt.runs
    header = request.headers.get("Authorization")
    result = rt.gateway.check(header) if rt.gateway.cached(header) else None
    if result is None:
        result = await asyncio.to_thread(rt.gateway.check, header)
    if result.agent is None:
        response = error(401, "tether_unauthorized", "send Authorization: Basic (agent id:secret)")
        response.headers["WWW-Authenticate"] = 'Basic realm="tether"'
        return response
    return result.agent, rt.runs_for(result.agent)[0]


async def open_run(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    caller = await _caller(request)
    if isinstance(caller, web.Response):
        return caller
    agent, runs = caller
    try:
        body = await _json_object(request)
        for key in body:
            if key not in ("task_context", "triggered_by", "scopes"):
                raise ContextError(f"unknown field {key!r} (expected task_context, triggered_by, scopes)")
        for key in ("task_context", "triggered_by"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise ContextError(f"{key} must be a string")
        run = runs.open(
            task_context=body.get("task_context"),
            triggered_by=body.get("triggered_by"),
            scopes=scopes_from_json(body.get("scopes")),
        )
    except ContextError as exc:
        return error(400, "tether_bad_request", str(exc))
    try:
        await rt.recorder.record(
            "run.started", run, agent=agent, source_ip=request.remote, detail={"origin": "api"}
        )
    except LedgerError:
        runs.end(run.run_id)
        return error(503, "tether_ledger_unavailable", "the audit ledger cannot record")
    return web.json_response(run_json(run), status=201)


async def get_run(request: web.Request) -> web.Response:
    caller = await _caller(request)
    if isinstance(caller, web.Response):
        return caller
    run = caller[1].get(request.match_info["run_id"])
    if run is None:
        return error(404, "tether_not_found", "no such run")
    return web.json_response(run_json(run))


async def close_run(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    caller = await _caller(request)
    if isinstance(caller, web.Response):
        return caller
    agent, runs = caller
    run_id = request.match_info["run_id"]
    if not await end_run(rt, run_id, agent):
        return error(404, "tether_not_found", "no such run")
    run = runs.get(run_id)
    assert run is not None
    return web.json_response(run_json(run))


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ContextError(f"request body larger than {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContextError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ContextError("request body must be a JSON object")
    return body


# Read the whole ledger (every agent's runs): in gateway mode agents reach this API, so these stay closed.
OPERATOR_ROUTES = (("GET", "/v1/runs"), ("GET", "/v1/timeline"), ("GET", "/v1/runs/{run_id}/report"))


@web.middleware
async def gateway_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    route = request.match_info.route
    resource = route.resource.canonical if route.resource is not None else None
    if rt.gateway is not None and (request.method, resource) in OPERATOR_ROUTES:
        reason = "in gateway mode the investigation routes are closed: use `tether runs|timeline|report`"
        return error(403, "tether_forbidden", reason)
    return await handler(request)


def make_app(rt: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[gateway_guard])
    app[RUNTIME] = rt
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/runs", open_run)
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_post("/v1/runs/{run_id}/end", close_run)
    ops_http.register(app, rt)
    add_audit_routes(app, rt)
    analysis_api.add_routes(app.router, RUNTIME)
    return app


async def start_api(rt: Runtime) -> web.AppRunner:
    runner = web.AppRunner(make_app(rt), access_log=None)
    await runner.setup()
    host, port = rt.config.api_address
    await web.TCPSite(runner, host, port).start()
    return runner
