"""Control API routes for investigation: run summaries, filtered timelines and the HTML incident report.

The ledger is read in a worker thread: the proxy shares this event loop and must not wait on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tether.ledger.store import LedgerError
from tether.proxy.runtime import Runtime

MAX_ROWS = 10_000
RuntimeKey = web.AppKey[Runtime]


def _error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", str(MAX_ROWS))
    if not text.isdigit() or not 0 < int(text) <= MAX_ROWS:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_ROWS}")
    return int(text)


def add_routes(router: web.UrlDispatcher, key: RuntimeKey) -> None:
    async def list_runs(request: web.Request) -> web.Response:
        from tether.analysis.runs import run_summaries

        rt, query = request.app[key], request.query
        try:
            limit = _limit(request)
            summaries = await asyncio.to_thread(
                run_summaries,
                rt.ledger,
                agent=query.get("agent"),
                since=query.get("since"),
                until=query.get("until"),
            )
        except ValueError as exc:
            return _error(400, "tether_bad_request", str(exc))
        except LedgerError as exc:
            return _error(503, "tether_ledger_unavailable", str(exc))
        # The newest runs are the interesting ones when the list is cut.
        runs = [summary.to_json() for summary in summaries[-limit:]]
        return web.json_response({"runs": runs, "truncated": len(summaries) > limit})

    async def timeline(request: web.Request) -> web.Response:
        from tether.ledger.timeline import timeline_rows

        rt, query = request.app[key], request.query
        types = [name for value in query.getall("type", []) for name in value.split(",") if name]
        try:
            limit = _limit(request)
            rows: list[Any] = await asyncio.to_thread(
                timeline_rows,
                rt.ledger,
                agent=query.get("agent"),
                run=query.get("run"),
                since=query.get("since"),
                until=query.get("until"),
                provider=query.get("provider"),
                types=types or None,
            )
        except ValueError as exc:
            return _error(400, "tether_bad_request", str(exc))
        except LedgerError as exc:
            return _error(503, "tether_ledger_unavailable", str(exc))
        return web.json_response({"events": rows[:limit], "truncated": len(rows) > limit})

    async def report(request: web.Request) -> web.Response:
        from tether.analysis.report import render_report

        rt, run_id = request.app[key], request.match_info["run_id"]
        try:
            html = await asyncio.to_thread(render_report, rt.ledger, run_id)
        except LedgerError as exc:
            return _error(503, "tether_ledger_unavailable", str(exc))
        if html is None:
            return _error(404, "tether_not_found", "no events for this run in the ledger")
        return web.Response(
            text=html,
            content_type="text/html",
            headers={
                "Cache-Control": "no-store",
                # The report is self-contained: forbid every fetch and script, whatever the data says.
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                "X-Content-Type-Options": "nosniff",
            },
        )

    router.add_get("/v1/runs", list_runs)
    router.add_get("/v1/timeline", timeline)
    router.add_get("/v1/runs/{run_id}/report", report)
