"""`tether report RUN`: a self-contained HTML incident report for one run.

One file, no external resources and no script: inline CSS and an inline SVG timeline chart, so it
opens from disk in any browser without network. Every value from an event is HTML-escaped — paths,
task text and headers-derived fields are attacker-influenced.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from tether import __version__
from tether.analysis.runs import summarize
from tether.ledger.events import utc_timestamp
from tether.ledger.store import Ledger
from tether.ledger.timeline import timeline_rows
from tether.ledger.verify import VerifyResult, verify_ledger

# Lanes of the chart, top to bottom, with their marker colour (also used in the legend).
LANES: tuple[tuple[str, str, str], ...] = (
    ("run", "run / policy", "#64748b"),
    ("token", "tokens", "#7c3aed"),
    ("call", "calls", "#0d9488"),
    ("denied", "denied", "#dc2626"),
    ("anomaly", "anomalies", "#ea580c"),
)
CALL_COLOUR = "#0d9488"
_WIDTH, _LEFT, _RIGHT, _LANE_H, _TOP = 1160, 110, 20, 34, 26

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#0f172a;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;width:100%;font-size:12.5px}th,td{text-align:left;padding:3px 6px;
border-bottom:1px solid #e2e8f0;vertical-align:top;word-break:break-word}th{background:#f8fafc}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.ok{background:#dcfce7;border:1px solid #16a34a}.bad{background:#fee2e2;border:1px solid #dc2626}
.box{padding:8px 12px;border-radius:6px;margin:8px 0}.muted{color:#64748b}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:8px 0}dt{color:#64748b}
dd{margin:0}.tag{display:inline-block;padding:0 6px;border-radius:4px;background:#f1f5f9}
.deny{color:#b91c1c;font-weight:600}.warn{color:#c2410c;font-weight:600}
"""


def _lane(event: dict[str, Any]) -> str:
    kind = event["event_type"]
    if kind == "anomaly.detected":
        return "anomaly"
    if kind in ("api.denied", "token.mint_failed"):
        return "denied"
    if kind.startswith("api."):
        return "call"
    if kind.startswith("token."):
        return "token"
    return "run"


def _time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def chart(events: list[dict[str, Any]]) -> str:
    """The SVG timeline: one lane per kind of event, one marker per event, time left to right."""
    height = _TOP + _LANE_H * len(LANES) + 30
    span_left, span_right = _LEFT, _WIDTH - _RIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="timeline of the run">'
    ]
    lanes = {name: index for index, (name, _, _) in enumerate(LANES)}
    for index, (_, label, colour) in enumerate(LANES):
        y = _TOP + index * _LANE_H
        parts.append(
            f'<rect x="{span_left}" y="{y}" width="{span_right - span_left}" height="{_LANE_H - 6}" '
            f'fill="#f8fafc" stroke="#e2e8f0"/>'
            f'<text x="8" y="{y + 19}" font-size="12" fill="{colour}">{_e(label)}</text>'
        )
    if events:
        start, end = _time(events[0]["timestamp"]), _time(events[-1]["timestamp"])
        total = max((end - start).total_seconds(), 0.001)
        for event in events:
            lane = _lane(event)
            offset = (_time(event["timestamp"]) - start).total_seconds() / total
            x = span_left + 2 + offset * (span_right - span_left - 12)
            y = _TOP + lanes[lane] * _LANE_H + 4
            colour = LANES[lanes[lane]][2]
            title = f"#{event['seq']} {event['event_type']} {event['timestamp']}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="8" height="{_LANE_H - 14}" fill="{colour}">'
                f"<title>{_e(title)}</title></rect>"
            )
        axis_y = _TOP + len(LANES) * _LANE_H + 14
        first, last = _e(events[0]["timestamp"]), _e(events[-1]["timestamp"])
        parts.append(
            f'<text x="{span_left}" y="{axis_y}" font-size="11" fill="#64748b">{first}</text>'
            f'<text x="{span_right}" y="{axis_y}" font-size="11" fill="#64748b" text-anchor="end">'
            f"{last} (+{total:.1f}s)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _verification(result: VerifyResult, path: str) -> str:
    if result.ok:
        span = f"seq {result.first_seq}-{result.last_seq}" if result.events_checked else "empty"
        return (
            f'<div class="box ok"><b>Ledger verified: intact.</b> {result.events_checked} events '
            f"({_e(span)}) of chain <code>{_e(result.chain_id)}</code> recomputed from seq 0; last hash "
            f"<code>{_e(result.last_hash)}</code>. <span class='muted'>{_e(path)}</span></div>"
        )
    return (
        f'<div class="box bad"><b>Ledger verification FAILED</b> at seq {_e(result.first_bad_seq)}: '
        f"{_e(result.reason)} ({_e(result.detail)}). Events of this run after that point cannot be trusted."
        f" <span class='muted'>{_e(path)}</span></div>"
    )


Cell = str | int | None | tuple[Any, str]  # a value, or (value, css class)


def _table(headers: tuple[str, ...], rows: list[list[Cell]], empty: str) -> str:
    """A table of escaped values; `empty` when there are no rows."""
    if not rows:
        return f"<p class='muted'>{_e(empty)}</p>"

    def cell(value: Cell) -> str:
        if isinstance(value, tuple):
            return f"<td class='{value[1]}'>{_e(value[0])}</td>"
        return f"<td>{_e(value)}</td>"

    head = "".join(f"<th>{_e(name)}</th>" for name in headers)
    body = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _joined(values: list[str] | None) -> str:
    return ", ".join(values) if values else "-"


def _tokens(events: list[dict[str, Any]]) -> str:
    used: dict[str, int] = {}
    for event in events:
        if event["event_type"] == "api.request" and event.get("token_id"):
            used[event["token_id"]] = used.get(event["token_id"], 0) + 1
    rows: list[list[Cell]] = []
    for event in events:
        kind = event["event_type"]
        if not kind.startswith("token."):
            continue
        downscoped = ("yes", "warn") if event.get("scope_downscoped") else "no"
        rows.append(
            [
                (event["seq"], "mono"),
                (event["timestamp"], "mono"),
                kind,
                (event.get("token_id"), "mono"),
                event.get("provider"),
                _joined(event.get("scope_requested")),
                _joined(event.get("scope_granted")),
                downscoped,
                event.get("ttl_seconds"),
                event.get("policy_id"),
                (event.get("detail") or {}).get("credential"),
                used.get(event.get("token_id") or "", 0) if kind == "token.minted" else None,
            ]
        )
    headers: tuple[str, ...] = ("seq", "time", "event", "token", "provider", "scopes asked")
    headers += ("scopes granted", "downscoped", "ttl s", "policy", "credential", "calls with it")
    return _table(headers, rows, "No token events in this run.")


def _anomalies(events: list[dict[str, Any]]) -> str:
    rows: list[list[Cell]] = []
    for event in events:
        if event["event_type"] != "anomaly.detected":
            continue
        detail = event.get("detail") or {}
        rows.append(
            [
                (event["seq"], "mono"),
                (event["timestamp"], "mono"),
                (detail.get("anomaly"), "warn"),
                detail.get("subject"),
                (event.get("decision") or {}).get("reason"),
                (detail.get("evidence_event_id"), "mono"),
            ]
        )
    headers = ("seq", "time", "anomaly", "subject", "why", "evidence event")
    return _table(headers, rows, "No anomalies were recorded for this run.")


def _target(request: dict[str, Any]) -> str:
    return f"{request.get('method') or ''} {request.get('host') or ''}{request.get('path') or ''}".strip()


def _denials(events: list[dict[str, Any]]) -> str:
    rows: list[list[Cell]] = []
    for event in events:
        decision = event.get("decision") or {}
        denied = event["event_type"] in ("api.denied", "token.mint_failed")
        if not denied and decision.get("would") != "deny":
            continue
        rows.append(
            [
                (event["seq"], "mono"),
                (event["timestamp"], "mono"),
                ("denied" if denied else "report mode: would deny", "deny"),
                (_target(event.get("request") or {}), "mono"),
                decision.get("reason"),
                decision.get("rule"),
            ]
        )
    headers = ("seq", "time", "outcome", "request", "reason", "rule")
    return _table(headers, rows, "Nothing was denied in this run.")


def _event_table(ledger: Ledger, run_id: str) -> str:
    rows: list[list[Cell]] = [
        [
            (row["seq"], "mono"),
            (row["time"], "mono"),
            row["event_type"],
            (row["token"], "mono"),
            (row["target"], "mono"),
            row["outcome"],
            row["task"],
        ]
        for row in timeline_rows(ledger, run=run_id)
    ]
    headers = ("seq", "time", "event", "token", "target", "outcome", "task")
    return _table(headers, rows, "No events.")


def render_report(ledger: Ledger, run_id: str) -> str | None:
    """The report for `run_id` as one HTML document; None when the ledger has no event of the run."""
    events = list(ledger.iter_events(run_id=run_id))
    if not events:
        return None
    summary = summarize(events)[0]
    verification = verify_ledger(ledger.path)
    facts = [
        ("run", summary.run_id),
        ("agent", summary.agent_name),
        ("task", summary.task_context),
        ("triggered by", summary.triggered_by),
        ("first event", summary.started_at),
        ("last event", summary.last_event_at + ("" if summary.ended else " (run not ended)")),
        ("duration", f"{summary.duration_seconds:.1f} s"),
        ("calls", f"{summary.calls} ({summary.denials} denied, {summary.would_deny} report-mode would-deny)"),
        ("tokens", len(summary.tokens)),
        ("providers", ", ".join(summary.providers) or "-"),
        ("hosts", ", ".join(summary.hosts) or "-"),
        ("anomalies", summary.anomalies),
    ]
    legend = " ".join(
        f'<span class="tag"><svg width="10" height="10"><rect width="10" height="10" fill="{colour}"/></svg> '
        f"{_e(label)}</span>"
        for _, label, colour in LANES
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>tether incident report: {_e(run_id)}</title><style>{_CSS}</style></head>
<body>
<h1>Incident report: run <code>{_e(run_id)}</code></h1>
<p class="muted">Generated {_e(utc_timestamp())} by tether {_e(__version__)}.</p>
{_verification(verification, str(ledger.path))}
<h2>Run</h2>
<dl>{"".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in facts)}</dl>
<h2>Timeline</h2>
<div id="timeline">{chart(events)}</div>
<p>{legend}</p>
<h2>Anomalies</h2>
{_anomalies(events)}
<h2>Tokens: minted, expired, revoked (in order)</h2>
{_tokens(events)}
<h2>Denials</h2>
{_denials(events)}
<h2>Every event of the run, in order</h2>
{_event_table(ledger, run_id)}
</body></html>
"""
