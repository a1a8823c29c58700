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
METHOD_OVERRIDES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")


class Identity:
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        rt = self.holder.runtime
        sent = _take_tether_headers(flow.request.headers)
        size = len(flow.request.raw_content or b"")
        if size > rt.config.max_body_bytes:
            reason = (
                f"request body of {size} bytes is larger than max_body_bytes ({rt.config.max_body_bytes})"
            )
            fd.refuse(flow, rt, status=413, error="tether_body_too_large", reason=reason, rule="identity")
            return
        try:
            _check_target(flow)
            run, created = self._run(rt.runs_for(fd.agent(flow, rt))[0], sent)
            if not run.active:
                raise ContextError(f"run {run.run_id} has ended")
            scopes = parse_scopes(_one(sent, "scopes")) if "scopes" in sent else None
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


def _check_target(flow: http.HTTPFlow) -> None:
    """Policy, credentials and the ledger follow the host tether connects to, so every other name the
    request carries for its target must agree with it: Host, an absolute-form authority inside a
    tunnel, the TLS server name. Method-override headers are refused: they would make the provider
    run another method than the one the policy decided on."""
    req = flow.request
    host = req.host.lower()
    if host.endswith("."):
        host = host.rstrip(".")
        req.host = host  # one spelling everywhere: policy, upstream overrides, the ledger
    names = [("Host header", req.host_header), ("request authority", req.authority or None)]
    names.append(("TLS server name", flow.client_conn.sni))
    for what, value in names:
        if value and _host_of(value) != host:
            raise ContextError(f"the {what} does not match the requested host")
    for header in METHOD_OVERRIDES:
        if header in req.headers:
            raise ContextError(f"{header} is not allowed: send the real method")


def _host_of(value: str) -> str:
    if value.startswith("["):
        return value[1 : value.find("]")].lower()
    return value.rsplit(":", 1)[0].lower().rstrip(".") if value.count(":") == 1 else value.lower().rstrip(".")
