"""Ships ledger events to one sink: the ledger is the outbox, the sink's cursor says what arrived.

Loop: read the events after the cursor, cut a batch by count, bytes or age, send it, and move the
cursor only once the receiver confirmed it. Retryable failures back off exponentially with full
jitter (at least as long as a Retry-After asks). A rejection is bisected down to the event the
receiver refuses, which is parked as a dead letter with the reason; the rest flows on. Order holds
per sink; delivery is at-least-once (a batch whose answer was lost is sent again; `event_id` is the
de-duplication key).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tether.ledger.store import LedgerError
from tether.sinks.base import Outcome, Sink
from tether.sinks.state import SinkState

log = logging.getLogger("tether.sinks")

_POLL_SECONDS = 0.05
_MAX_RETRY_AFTER_SECONDS = 600.0


@dataclass
class ShipperStats:
    delivered: int = 0  # events confirmed (parked ones excluded)
    requests: int = 0
    retries: int = 0
    parked: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class _Item:
    event: dict[str, Any]
    record: bytes


class Stopped(Exception):
    """The shutdown deadline passed while a batch was still unconfirmed. From `replay`: the seqs
    replayed and rejected again before that."""

    def __init__(self, delivered: tuple[int, ...] = (), rejected: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.delivered, self.rejected = delivered, rejected


@dataclass
class Shipper:
    sink: Sink
    state: SinkState
    stats: ShipperStats = field(default_factory=ShipperStats)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        cfg = self.sink.config
        self.max_events = min(cfg.batch_max_events, self.sink.max_records or cfg.batch_max_events)
        self.max_bytes = min(cfg.batch_max_bytes, self.sink.max_request_bytes or cfg.batch_max_bytes)
        self._stopping = asyncio.Event()
        self._deadline: float | None = None
        self._reader: SinkState | None = None  # for reading ahead while a request is in flight

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, deadline: float) -> None:
        """Flush what is pending without waiting for a full batch; give up at `deadline` (monotonic)."""
        self._deadline = deadline
        self._stopping.set()

    async def run(self) -> None:
        await self.sink.start()
        pending_since: float | None = None
        while True:
            cursor = self.state.cursor(self.name)
            pending = self.state.last_seq() - cursor
            if pending <= 0:
                if self._stopping.is_set():
                    return
                pending_since = None
                await self._wait(_POLL_SECONDS)
                continue
            now = time.monotonic()
            pending_since = pending_since or now
            age = now - pending_since
            if (
                pending < self.max_events
                and age < self.sink.config.flush_seconds
                and not self._stopping.is_set()
            ):
                await self._wait(min(_POLL_SECONDS, self.sink.config.flush_seconds - age))
                continue
            # SQLite reads, decoding and encoding run in a thread: the proxy shares this event loop.
            await self._ship_backlog(await asyncio.to_thread(self._batch, self.state, cursor))
            pending_since = None

    async def _ship_backlog(self, items: list[_Item]) -> None:
        """Ship `items`, and while more full batches wait, read and encode the next one in a thread
        (its own read-only connection) during the current request."""
        while items:
            after = items[-1].event["seq"]
            following: asyncio.Future[list[_Item]] | None = None
            if self.state.last_seq() - after >= self.max_events:
                if self._reader is None:
                    self._reader = SinkState(self.state.path, readonly=True)
                following = asyncio.ensure_future(asyncio.to_thread(self._batch, self._reader, after))
            try:
                await self.ship(items)
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            items = await following if following is not None else []

    def _batch(self, state: SinkState, cursor: int) -> list[_Item]:
        """Events after `cursor`, at most max_events and max_bytes (at least one event)."""
        items: list[_Item] = []
        size = 0
        for event, raw in state.events_after(cursor, self.max_events):
            record = self.sink.encode(event, raw)
            if items and size + len(record) > self.max_bytes:
                break
            items.append(_Item(event, record))
            size += len(record)
        return items

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def ship(self, items: list[_Item]) -> None:
        """Deliver `items` (bisecting rejections), then advance the cursor past them in one step."""
        parked: list[tuple[dict[str, Any], str]] = []
        chunks: deque[list[_Item]] = deque()
        for item in items:
            if (too_big := self._too_big(item)) is not None:
                parked.append((item.event, too_big))
                continue
            if not chunks or len(chunks[-1]) >= self.max_events:
                chunks.append([])
            chunks[-1].append(item)
        while chunks:
            chunk = chunks.popleft()
            outcome = await self._send(chunk)
            if outcome.kind == "ok":
                self.stats.delivered += len(chunk)
                continue
            if len(chunk) == 1:
                parked.append((chunk[0].event, outcome.reason))
                log.warning(
                    "sink %s: parked event seq %s as a dead letter: %s",
                    self.name,
                    chunk[0].event["seq"],
                    outcome.reason,
                )
                continue
            index = outcome.index
            if index is not None and 0 <= index < len(chunk):
                parts = [chunk[:index], chunk[index : index + 1], chunk[index + 1 :]]
            else:
                half = len(chunk) // 2
                parts = [chunk[:half], chunk[half:]]
            chunks.extendleft(reversed([part for part in parts if part]))
        # A write transaction (busy wait, fsync): off the event loop.
        await asyncio.to_thread(self.state.advance, self.name, items[-1].event["seq"], parked)
        self.stats.parked += len(parked)
        self.stats.last_error = None

    async def replay(self, events: list[tuple[dict[str, Any], str]]) -> tuple[list[int], list[int]]:
        """Resend parked events one by one: (seqs delivered, seqs rejected again). Raises Stopped
        when the deadline set by `stop` passes while the receiver is unreachable."""
        delivered: list[int] = []
        rejected: list[int] = []
        for event, raw in events:
            item = _Item(event, self.sink.encode(event, raw))
            too_big = self._too_big(item)
            try:
                outcome = Outcome.reject(too_big) if too_big is not None else await self._send([item])
            except Stopped:
                raise Stopped(tuple(delivered), tuple(rejected)) from None
            if outcome.kind == "ok":
                delivered.append(event["seq"])
                await asyncio.to_thread(self.state.mark_replayed, self.name, [event["seq"]])
            else:
                rejected.append(event["seq"])
                await asyncio.to_thread(self.state.park, self.name, [(event, outcome.reason)])
        return delivered, rejected

    def _too_big(self, item: _Item) -> str | None:
        """Why `item` may not be sent (over the protocol's size limit), else None. Such an event is
        parked, never truncated: the ledger keeps it whole."""
        limit = self.sink.max_record_bytes
        if limit is not None and len(item.record) > limit:
            return f"event is {len(item.record)} bytes, over the sink's limit of {limit}"
        return None

    async def _send(self, chunk: list[_Item]) -> Outcome:
        """Send until the receiver accepts or rejects for good; retryable failures back off."""
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                outcome = await self.sink.send([item.record for item in chunk])
            except Exception as exc:  # OSError, TimeoutError, aiohttp.ClientError: unreachable, broke off
                outcome = Outcome.retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            if outcome.kind != "retry":
                return outcome
            self.stats.retries += 1
            await self._note_error(outcome.reason)
            delay = self._backoff(attempt, outcome.retry_after)
            attempt += 1
            log.warning("sink %s: %s; retrying in %.1fs", self.name, outcome.reason, delay)
            await self._wait(delay, deadline_bound=True)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.sink.config
        cap = min(cfg.backoff_max_seconds, cfg.backoff_initial_seconds * 2 ** min(attempt, 30))
        delay = self.rng.uniform(0, cap)  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_SECONDS))
        return delay

    async def _note_error(self, message: str) -> None:
        if message == self.stats.last_error:
            return
        self.stats.last_error = message
        try:
            await asyncio.to_thread(self.state.record_error, self.name, message)
        except LedgerError as exc:
            log.warning("sink %s: cannot record its last error: %s", self.name, exc)

    async def _wait(self, seconds: float, *, deadline_bound: bool = False) -> None:
        """Sleep `seconds`, cut short by a stop; during shutdown, never past the deadline."""
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0 and deadline_bound:
                raise Stopped
            seconds = min(seconds, max(remaining, 0))
        if not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
                return
            except TimeoutError:
                return
        await asyncio.sleep(seconds)
