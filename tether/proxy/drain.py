"""Drain addon: knows which calls are in flight, so SIGTERM can let them finish (tether/ops/shutdown.py),
and refuses new calls once draining, with 503 and an event, so nothing is cut off half-way."""

from __future__ import annotations

from mitmproxy import http

from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder


class Drain:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "CONNECT":  # a CONNECT has no response hook; its requests count
            self.holder.runtime.ops.in_flight.add(flow.id)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        rt = self.holder.runtime
        if not rt.ops.draining:
            return
        fd.refuse(
            flow,
            rt,
            status=503,
            error="tether_shutting_down",
            reason="tether is shutting down",
            rule="shutdown",
        )
        assert flow.response is not None
        flow.response.headers["Connection"] = "close"

    def response(self, flow: http.HTTPFlow) -> None:
        self.holder.runtime.ops.in_flight.discard(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        self.holder.runtime.ops.in_flight.discard(flow.id)
