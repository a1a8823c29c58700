"""Live anomaly detection: a ledger subscriber that compares each recorded event with the agent's
baseline (tether/analysis/baseline.py) and records `anomaly.detected` events.

It never slows or fails the request path: the recorder hands it events that are already durable
(`observe` only queues them), and a background task learns, compares and writes the anomaly events
(each durable like any event). At start it learns from what the ledger holds; on shutdown it works
off the queue before the ledger closes. A full queue drops events from comparison (logged), never
calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tether.analysis.baseline import RELEVANT_TYPES, Detector, anomaly_fields
from tether.ledger.events import new_event
from tether.ledger.store import LedgerError
from tether.proxy.runtime import Runtime

log = logging.getLogger("tether")

QUEUE_SIZE = 10_000


class AnomalyMonitor:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.detector = Detector(rt.config.anomalies)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._learned = False

    def observe(self, event: dict[str, Any]) -> None:
        """Called by the recorder after each durable append; only queues."""
        if event["event_type"] not in RELEVANT_TYPES:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("anomaly detection is behind: %d events not compared", self.dropped)

    def start(self) -> None:
        self.rt.recorder.observers.append(self.observe)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Compare what is still queued, then stop (before the ledger closes)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._learned:
            while not self.queue.empty():
                await self._compare(self.queue.get_nowait())

    async def _run(self) -> None:
        # Events recorded while the history is read are queued too; the detector skips any it has
        # seen already (by seq).
        agent = self.rt.config.agent_name
        try:
            await asyncio.to_thread(
                lambda: self.detector.learn(
                    self.rt.ledger.iter_events(agent=agent, event_types=RELEVANT_TYPES)
                )
            )
        except LedgerError as exc:
            log.error("anomaly detection starts without history: cannot read the ledger: %s", exc)
        self._learned = True
        while True:
            await self._compare(await self.queue.get())

    async def _compare(self, event: dict[str, Any]) -> None:
        try:
            anomalies = self.detector.observe(event)
        except Exception:  # a bug here must not stop detection for the rest of the run
            log.exception("anomaly detection failed on event %s", event.get("event_id"))
            return
        for anomaly in anomalies:
            log.warning("anomaly in run %s: %s", event.get("run_id"), anomaly.reason)
            try:
                await self.rt.recorder.write(new_event("anomaly.detected", **anomaly_fields(anomaly)))
            except LedgerError as exc:
                log.error("could not record anomaly.detected (%s): %s", anomaly.reason, exc)
