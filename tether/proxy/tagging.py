"""Tagging addon: tells the provider which agent and run made a call, for its own audit log."""

from __future__ import annotations

import re

from mitmproxy import http

from tether import __version__
from tether.policy.engine import Decision
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder

MAX_TAG = 128
_UNSAFE = re.compile(r"[^\x21-\x7e ]|[;()]")


def sanitise(value: str) -> str:
    """Printable ASCII only, no characters that would break the User-Agent comment syntax."""
    return _UNSAFE.sub("_", value)[:MAX_TAG]


class Tagging:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        decision: Decision | None = flow.metadata.get(fd.DECISION)
        if decision is None or decision.grant is None or not decision.grant.tag_upstream:
            return  # only brokered provider calls are tagged: other hosts learn nothing about the agent
        rt = self.holder.runtime
        run = flow.metadata[fd.RUN]
        headers = flow.request.headers
        agent = sanitise(fd.agent(flow, rt).agent_name)
        headers["X-Tether-Agent"] = agent
        headers["X-Tether-Run"] = sanitise(run.run_id)
        if run.task_context:
            headers["X-Tether-Task"] = sanitise(run.task_context)
        suffix = f"tether/{__version__} (agent={agent}; run={sanitise(run.run_id)})"
        user_agent = headers.get("User-Agent", "").strip()
        headers["User-Agent"] = f"{user_agent} {suffix}" if user_agent else suffix
