"""Audit endpoints of the control API, behind the admin token (`ledger.admin_token_file|env`):

- `GET /v1/verify[?from=T&to=T]`: `tether verify --json` against the local signing key (and the witness
  file, when configured);
- `GET /v1/export/digests[?from=T&to=T]`: `tether export digests` as JSON Lines.

The agent shares the control API but not the token: without `Authorization: Bearer <token>` (compared
in constant time) both answer 401; with no token configured they refuse everyone.
"""

from __future__ import annotations

import asyncio
import hmac
import tempfile

from aiohttp import web

from tether.ledger.checkpoint import Checkpointer, local_verifiers
from tether.ledger.export import export_digests
from tether.ledger.signing import SigningKeyError
from tether.ledger.store import LedgerError
from tether.ledger.verify import verify_ledger
from tether.ledger.witness import WitnessFileError, read_witness_file
from tether.proxy.runtime import Runtime

CHUNK = 256 * 1024


def _error(status: int, code: str, reason: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="tether-admin"'} if status == 401 else None
    return web.json_response({"error": code, "reason": reason}, status=status, headers=headers)


def _authorized(request: web.Request, rt: Runtime) -> web.Response | None:
    """None when the request carries the admin token, else the 401 to answer."""
    try:
        token = rt.config.ledger.admin_token()
    except (OSError, ValueError):  # unreadable or not UTF-8: refuse everyone, without a traceback
        token = None
    if token is None:
        return _error(401, "tether_unauthorized", "no admin token is configured (ledger.admin_token_file)")
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        return _error(401, "tether_unauthorized", "admin token required")
    return None


def _range(request: web.Request) -> tuple[str | None, str | None]:
    return request.query.get("from"), request.query.get("to")


async def verify(request: web.Request, rt: Runtime, checkpointer: Checkpointer | None) -> web.Response:
    if (denied := _authorized(request, rt)) is not None:
        return denied
    since, until = _range(request)
    witness_file = rt.config.ledger.witness_file

    def run() -> dict[str, object]:
        keys = local_verifiers(checkpointer.keys.path, rt.ledger.chain_id) if checkpointer is not None else []
        witness = read_witness_file(witness_file, rt.ledger.chain_id) if witness_file is not None else []
        return verify_ledger(rt.ledger.path, since=since, until=until, keys=keys, witness=witness).to_json()

    try:
        result = await asyncio.to_thread(run)
    except (ValueError, LedgerError, SigningKeyError, WitnessFileError) as exc:
        return _error(400, "tether_bad_request", str(exc))
    return web.json_response(result)


async def digests(request: web.Request, rt: Runtime) -> web.StreamResponse:
    if (denied := _authorized(request, rt)) is not None:
        return denied
    since, until = _range(request)
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as spool:
        try:
            await asyncio.to_thread(export_digests, rt.ledger.path, spool, since=since, until=until)
        except (ValueError, LedgerError) as exc:
            return _error(400, "tether_bad_request", str(exc))
        spool.seek(0)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson; charset=utf-8"})
        await response.prepare(request)
        while chunk := await asyncio.to_thread(spool.read, CHUNK):
            await response.write(chunk.encode())
        await response.write_eof()
        return response


def add_routes(app: web.Application, rt: Runtime) -> None:
    app.router.add_get("/v1/verify", lambda request: verify(request, rt, rt.checkpointer))
    app.router.add_get("/v1/export/digests", lambda request: digests(request, rt))
