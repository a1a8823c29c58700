"""Gate addon, last in the request chain: a call leaves only once the recorder has put it on record.

mitmproxy logs an exception raised in an addon hook and goes on forwarding the flow. Without this
gate any bug in an earlier addon would fail open: forwarded, maybe with a credential, unrecorded."""

from __future__ import annotations

import logging

from mitmproxy import http

from tether.proxy import flowdata as fd

log = logging.getLogger("tether")


class Gate:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or fd.REQUEST_EVENT in flow.metadata:
            return
        log.error("refusing a call that was not checked and recorded (an addon failed; see the error above)")
        fd.reply_json(
            flow, 500, {"error": "tether_internal_error", "reason": "the call could not be recorded"}
        )
