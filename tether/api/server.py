"""Control API (aiohttp): health and the run lifecycle."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tether import __version__
from tether.api import analysis as analysis_api
from tether.api.audit import add_routes as add_audit_routes
from tether.context import ContextError, RunContext, scopes_from_json
from tether.ledger.store import LedgerError
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


async def open_run(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        body = await _json_object(request)
        for key in body:
            if key not in ("task_context", "triggered_by", "scopes"):
                raise ContextError(f"unknown field {key!r} (expected task_context, triggered_by, scopes)")
        for key in ("task_context", "triggered_by"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise ContextError(f"{key} must be a string")
        run = rt.runs.open(
            task_context=body.get("task_context"),
            triggered_by=body.get("triggered_by"),
            scopes=scopes_from_json(body.get("scopes")),
        )
    except ContextError as exc:
        return error(400, "tether_bad_request", str(exc))
    try:
        await rt.recorder.record("run.started", run, source_ip=request.remote, detail={"origin": "api"})
    except LedgerError:
        rt.runs.end(run.run_id)
        return error(503, "tether_ledger_unavailable", "the audit ledger cannot record")
    return web.json_response(run_json(run), status=201)


async def get_run(request: web.Request) -> web.Response:
    run = request.app[RUNTIME].runs.get(request.match_info["run_id"])
    if run is None:
        return error(404, "tether_not_found", "no such run")
    return web.json_response(run_json(run))


async def close_run(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    run_id = request.match_info["run_id"]
    if not await end_run(rt, run_id):
        return error(404, "tether_not_found", "no such run")
    run = rt.runs.get(run_id)
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


def make_app(rt: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[RUNTIME] = rt
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/runs", open_run)
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_post("/v1/runs/{run_id}/end", close_run)
    add_audit_routes(app, rt)
    analysis_api.add_routes(app.router, RUNTIME)
    return app


async def start_api(rt: Runtime) -> web.AppRunner:
    runner = web.AppRunner(make_app(rt), access_log=None)
    await runner.setup()
    host, port = rt.config.api_address
    await web.TCPSite(runner, host, port).start()
    return runner
