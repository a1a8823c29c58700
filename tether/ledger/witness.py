"""Witnesses: copies of every checkpoint kept outside the ledger, so a rewritten or truncated ledger no
longer matches them (`tether verify --witness FILE`).

A witness line is `{"checkpoint": <the ledger.checkpoint event>}` — the same line a digest export carries.

- FileWitness appends lines to a file (ideally on another disk or host mount), fsynced, from a
  background thread. A torn last line (a crash mid-write) is cut off when the file is opened again.
- UrlWitness POSTs each line as JSON to a URL, in order, retrying with backoff; it never blocks the
  proxy: when the receiver stays down, the oldest undelivered checkpoints are dropped (and logged) past
  `max_pending`, since every later checkpoint covers them anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from .checkpoint import Checkpoint, CheckpointError, from_event

log = logging.getLogger("tether.ledger")


def witness_line(event: dict[str, Any]) -> str:
    return json.dumps({"checkpoint": event}, ensure_ascii=False, separators=(",", ":"))


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line (no newline: a write torn by a crash) off `path`; returns bytes removed."""
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return 0
            keep = 0
            position = size
            while position > 0:  # scan back in blocks for the last newline
                step = min(65536, position)
                position -= step
                handle.seek(position)
                found = handle.read(step).rfind(b"\n")
                if found >= 0:
                    keep = position + found + 1
                    break
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            return size - keep
    except FileNotFoundError:
        return 0


class FileWitness:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        removed = repair_torn_tail(path)  # before appending after it
        if removed:
            log.warning("witness file %s: removed a torn last line (%d bytes) left by a crash", path, removed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def append(self, event: dict[str, Any]) -> None:
        """Append one checkpoint durably (blocking; for threads and the CLI)."""
        data = (witness_line(event) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def _append(self, event: dict[str, Any]) -> None:
        async with self._lock:  # keep lines in checkpoint order
            try:
                await asyncio.to_thread(self.append, event)
            except OSError as exc:
                log.error(
                    "witness file %s: cannot append checkpoint seq %s: %s", self.path, event["seq"], exc
                )

    def submit(self, event: dict[str, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self._append(event))
        except RuntimeError:  # no event loop (CLI): write now
            self.append(event)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class UrlWitness:
    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_seconds: float = 10.0,
        max_pending: int = 10_000,
        retry_max_seconds: float = 60.0,
    ) -> None:
        self.url = url
        # For log lines: no credentials or query (a URL may carry a token).
        split = urllib.parse.urlsplit(url)
        self.label = f"{split.scheme}://{split.hostname}{f':{split.port}' if split.port else ''}{split.path}"
        self.headers = dict(headers or {})
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.max_pending = max_pending
        self.retry_max_seconds = retry_max_seconds
        self.delivered = 0
        self.dropped = 0
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def submit(self, event: dict[str, Any]) -> None:
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
            log.error("witness %s unreachable: dropped the oldest undelivered checkpoint", self.label)
        self._pending.append(event)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._deliver_forever())

    async def _post(self, event: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = witness_line(event).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        async with self._session.post(self.url, data=body, headers=headers) as response:
            if response.status >= 300:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=response.reason or ""
                )

    async def _deliver_forever(self) -> None:
        delay = 0.5
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._pending[0]
            try:
                await self._post(event)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # The URL may hold a credential: name only the error kind and status.
                status = getattr(exc, "status", None)
                log.warning(
                    "witness POST of checkpoint seq %s failed (%s%s); retrying in %.1fs",
                    event["seq"],
                    type(exc).__name__,
                    f" {status}" if status else "",
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_seconds)
                continue
            delay = 0.5
            if self._pending and self._pending[0] is event:
                self._pending.popleft()
            self.delivered += 1

    async def aclose(self, grace_seconds: float = 5.0) -> None:
        """Try for `grace_seconds` to deliver what is pending, then stop."""
        if self._task is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_seconds
            while self._pending and loop.time() < deadline:
                await asyncio.sleep(0.05)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if self._pending:
                log.error(
                    "witness %s: %d checkpoint(s) undelivered at shutdown", self.label, len(self._pending)
                )
        if self._session is not None:
            await self._session.close()


class WitnessFileError(ValueError):
    """A witness file that cannot be read."""


def read_checkpoint_lines(lines: Iterator[str], chain_id: str | None, label: str) -> Iterator[Checkpoint]:
    """The checkpoints in `{"checkpoint": event}` lines of `chain_id` (or of any chain when None)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            event = record["checkpoint"]
            chain = chain_id if chain_id is not None else event["chain_id"]
            if event.get("chain_id") != chain:
                continue  # a witness may hold several ledgers' checkpoints
            yield from_event(event, chain)
        except (ValueError, KeyError, TypeError, CheckpointError) as exc:
            raise WitnessFileError(f"{label}:{number}: not a checkpoint line ({exc})") from None


def read_witness_file(path: Path, chain_id: str | None) -> list[Checkpoint]:
    try:
        with open(path, encoding="utf-8") as handle:
            return list(read_checkpoint_lines(iter(handle), chain_id, str(path)))
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessFileError(f"cannot read witness file {path}: {exc}") from None
