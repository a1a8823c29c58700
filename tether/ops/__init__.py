"""Operations: what tether reports about itself (metrics, readiness, its own logs) and how it stops.

Components report into one `Ops` object on the runtime. Parts built by other issues plug in through
small hooks instead of being imported here: a sink registers a `SinkProbe`, the checkpointer sets
`checkpoint_age`, and both add `shutdown_hooks` (final checkpoint, flush) that run on SIGTERM.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A failed ledger append keeps /readyz unready this long (so a flapping disk is seen by probes).
LEDGER_FAILURE_HOLD_SECONDS = 10.0


class SinkProbe(Protocol):
    """What a SIEM sink tells the operator: how far behind it is and whether it is stuck."""

    name: str

    def lag_events(self) -> int: ...

    def dead_letters(self) -> int: ...

    def stuck(self) -> str | None:
        """Why the sink is stuck (shown on /readyz), or None when it is shipping."""
        ...


ShutdownHook = Callable[[float], Awaitable[None]]  # called with the seconds left before the deadline


@dataclass
class _Hook:
    name: str
    run: ShutdownHook


class Ops:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "tether_calls",
            "API calls by provider (or 'egress') and decision (allow, deny, report_deny, refused).",
            ["provider", "decision"],
            registry=self.registry,
        )
        self.mint_seconds = Histogram(
            "tether_mint_seconds",
            "Time to issue a fresh token (mint + durable token.minted), by provider.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ledger_append_seconds = Histogram(
            "tether_ledger_append_seconds",
            "Time until an event is durable in the ledger (group commit, fsync).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ledger_append_failures = Counter(
            "tether_ledger_append_failures", "Events the ledger could not record.", registry=self.registry
        )
        self.gateway_auth_failures = Counter(
            "tether_gateway_auth_failures",
            "Gateway mode: requests refused with 407, by problem.",
            ["problem"],
            registry=self.registry,
        )
        self.sinks: list[SinkProbe] = []
        self.checkpoint_age: Callable[[], float | None] | None = None
        self.shutdown_hooks: list[_Hook] = []
        self.in_flight: set[str] = set()
        self.draining = False
        self.last_ledger_failure: float | None = None  # time.monotonic() of the last failed append
        self.registry.register(_HookCollector(self))

    def add_sink(self, probe: SinkProbe) -> None:
        self.sinks.append(probe)

    def on_shutdown(self, name: str, hook: ShutdownHook) -> None:
        """Run `hook` on SIGTERM after in-flight calls finished (e.g. final checkpoint, flush sinks)."""
        self.shutdown_hooks.append(_Hook(name, hook))


class _HookCollector(Collector):
    """Gauges read from the hooks at scrape time."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ops = self.ops
        lag = GaugeMetricFamily(
            "tether_sink_lag_events", "Events recorded but not yet shipped.", labels=["sink"]
        )
        dead = GaugeMetricFamily(
            "tether_sink_dead_letters", "Events a sink gave up on (kept for replay).", labels=["sink"]
        )
        for sink in ops.sinks:
            lag.add_metric([sink.name], sink.lag_events())
            dead.add_metric([sink.name], sink.dead_letters())
        yield lag
        yield dead
        age = ops.checkpoint_age() if ops.checkpoint_age is not None else None
        if age is not None:
            yield GaugeMetricFamily(
                "tether_checkpoint_age_seconds", "Seconds since the last signed checkpoint.", value=age
            )
        yield GaugeMetricFamily(
            "tether_in_flight_calls", "Calls being forwarded now.", value=len(ops.in_flight)
        )
        yield GaugeMetricFamily("tether_draining", "1 while shutting down.", value=int(ops.draining))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
