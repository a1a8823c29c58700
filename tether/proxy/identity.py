"""Identity addon: which run, task and human a call belongs to; consumes every `X-Tether-*` header."""

from __future__ import annotations

from dataclasses import replace

from mitmproxy import http

from tether.context import (
    MAX_TASK,
    MAX_TRIGGERED_BY,
    ContextError,
    RunContext,
    RunRegistry,
    check_run_id,
    check_text,
    parse_scopes,
)
from tether.proxy import flowdata as fd
from tether.proxy.holder import Holder

PREFIX = "x-tether-"


class Identity:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        rt = self.holder.runtime
        sent = _take_tether_headers(flow.request.headers)
        try:
            run, created = self._run(rt.runs, sent)
            scopes = parse_scopes(_one(sent, "scopes")) if "scopes" in sent else None
            _check_host_header(flow)
        except ContextError as exc:
            fd.refuse(flow, rt, status=400, error="tether_bad_request", reason=str(exc), rule="identity")
            return
        flow.metadata[fd.RUN] = run
        flow.metadata[fd.NEW_RUN] = created
        flow.metadata[fd.SCOPES] = scopes if scopes is not None else (run.scopes or None)

    @staticmethod
    def _run(runs: RunRegistry, sent: dict[str, list[str]]) -> tuple[RunContext, bool]:
        created = False
        if "run" in sent:
            run, created = runs.adopt(check_run_id(_one(sent, "run")))
        else:
            run = runs.current()
        if "task" in sent:
            run = replace(run, task_context=check_text("X-Tether-Task", _one(sent, "task"), MAX_TASK) or None)
        if "triggered-by" in sent:
            value = check_text("X-Tether-Triggered-By", _one(sent, "triggered-by"), MAX_TRIGGERED_BY)
            run = replace(run, triggered_by=value or None)
        return run, created


def _take_tether_headers(headers: http.Headers) -> dict[str, list[str]]:
    """Remove every X-Tether-* header (never forwarded as sent); return them by lowercase suffix."""
    sent: dict[str, list[str]] = {}
    for name in list(headers.keys()):
        if name.lower().startswith(PREFIX):
            sent.setdefault(name.lower().removeprefix(PREFIX), []).extend(headers.get_all(name))
            del headers[name]
    return sent


def _one(sent: dict[str, list[str]], key: str) -> str:
    values = sent[key]
    if len(values) != 1:
        raise ContextError(f"X-Tether-{key.title()} was sent {len(values)} times")
    return values[0]


def _check_host_header(flow: http.HTTPFlow) -> None:
    """The Host header must name the host we connect to: credentials follow the connection target."""
    header = flow.request.host_header
    if header is None:
        return
    name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    if name.strip("[]").lower() != flow.request.host.lower():
        raise ContextError("the Host header does not match the requested host")
