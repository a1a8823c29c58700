"""Serves a sandbox aiohttp app over TLS on 127.0.0.1 and an ephemeral port.

`AsyncSandboxServer` runs inside the caller's event loop; `SandboxServer` runs the same server in a
background thread with its own loop, for synchronous pytest fixtures and the demo. A server object
serves one app once: after `stop()` make a new app and server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import ssl
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

# How long stop() lets in-flight requests finish before closing their connections.
SHUTDOWN_GRACE_SECONDS = 2.0
START_TIMEOUT_SECONDS = 30.0


class AsyncSandboxServer:
    def __init__(
        self, app: web.Application, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("sandbox server is not started")
        return self._port

    @property
    def address(self) -> str:
        """host:port, the form an upstream address override takes."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> int:
        if self._port is not None:
            raise RuntimeError("sandbox server is already started (a server starts once)")
        # Binding the socket ourselves gives the ephemeral port without reaching into aiohttp.
        sock = socket.create_server((self.host, self._requested_port))
        # Bodies reach the app as sent (e.g. git's gzip request bodies), so recordings show the wire.
        runner = web.AppRunner(
            self.app, access_log=None, auto_decompress=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
        )
        try:
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        self._port = sock.getsockname()[1]
        return self._port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class SandboxServer:
    """`AsyncSandboxServer` in a daemon thread with its own event loop."""

    def __init__(
        self, app: web.Application, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = AsyncSandboxServer(app, ssl_context, host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return self._server.address

    def start(self) -> int:
        if self._thread is not None:
            raise RuntimeError("sandbox server is already started (a server starts once)")
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(started),), daemon=True)
        self._thread.name = "tether-sandbox-server"
        self._thread.start()
        return started.result(timeout=START_TIMEOUT_SECONDS)

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            port = await self._server.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(port)
        try:
            await self._stopping.wait()
        finally:
            await self._server.stop()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            # The loop is already closed when start() failed; then there is nothing to stop.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
