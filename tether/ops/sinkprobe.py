"""A running SIEM shipper as /metrics and /readyz see it (tether/sinks ships; this only reports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.sinks.shipper import Shipper

# A sink with events waiting whose cursor has not moved for this long is stuck (unready).
STUCK_SECONDS = 60.0


class ShipperProbe:
    def __init__(
        self,
        shipper: Shipper,
        stuck_seconds: float = STUCK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shipper = shipper
        self.name = shipper.name
        self.stuck_seconds = stuck_seconds
        self.clock = clock
        self._cursor: int | None = None
        self._since = clock()

    def lag_events(self) -> int:
        state = self.shipper.state
        return max(0, state.last_seq() - state.cursor(self.name))

    def dead_letters(self) -> int:
        return len(self.shipper.state.dead_letters(self.name))

    def stuck(self) -> str | None:
        now = self.clock()
        cursor, lag = self.shipper.state.cursor(self.name), self.lag_events()
        if cursor != self._cursor or lag == 0:
            self._cursor, self._since = cursor, now
            return None
        waited = now - self._since
        if waited < self.stuck_seconds:
            return None
        error = self.shipper.stats.last_error
        return f"nothing delivered for {waited:.0f}s, {lag} event(s) waiting" + (
            f": {error}" if error else ""
        )
