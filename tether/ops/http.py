"""The operator endpoints of the control API: /readyz and /metrics (/healthz is in tether/api)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tether.ops.health import readiness

if TYPE_CHECKING:
    from tether.proxy.runtime import Runtime


def register(app: web.Application, runtime: Runtime) -> None:
    async def readyz(request: web.Request) -> web.Response:
        ready, body = readiness(runtime)
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(runtime.ops.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
