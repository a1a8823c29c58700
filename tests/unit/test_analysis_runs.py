"""Run summaries, filtered timelines and the HTML report over a real (temporary) ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.analysis_events import at, call, event, minted
from tether.analysis.report import CALL_COLOUR, render_report
from tether.analysis.runs import format_runs, run_summaries, run_summary
from tether.cli import main
from tether.ledger.store import Ledger
from tether.ledger.timeline import event_types, timeline_rows

EVIL = '<script>alert(1)</script><img src="http://evil.example/x">'


def incident_events() -> list[dict[str, Any]]:
    return [
        event("run.started", "run_a", at(0), detail={"origin": "api"}),
        minted("run_a", at(0, 1), scope_requested=["repo:write"], scope_downscoped=True),
        call("run_a", at(0, 2)),
        call(
            "run_a", at(0, 3), kind="api.response", response={"status": 200, "bytes": 10, "duration_ms": 4.2}
        ),
        call(
            "run_a",
            at(0, 4),
            method="DELETE",
            path="/repos/acme/api",
            route="DELETE /repos/{owner}/{repo}",
            kind="api.denied",
            decision={"action": "deny", "reason": "denied_by_rule: no-deletes", "rule": "no-deletes"},
        ),
        call("run_a", at(0, 5), host="status.example.com", path="/x", route=None, provider=None, token=None),
        event(
            "anomaly.detected",
            "run_a",
            at(0, 6),
            decision={"action": "flag", "reason": "new_route: never seen", "rule": "anomaly.new_route"},
            detail={"anomaly": "new_route", "subject": "github DELETE /repos/{owner}/{repo}"},
        ),
        event("run.ended", "run_a", at(1, 30)),
        event("run.started", "run_b", at(5), agent="other-bot", task_context=EVIL),
        call("run_b", at(5, 1), agent="other-bot", path="/repos/acme/" + EVIL, task_context=EVIL),
    ]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path / "ledger.db")
    for item in incident_events():
        ledger.append_sync(item)
    return ledger


def test_run_summaries(ledger: Ledger) -> None:
    first, second = run_summaries(ledger)
    assert (first.run_id, first.agent_name, first.task_context) == ("run_a", "pr-bot", "task of run_a")
    assert (first.calls, first.denials, first.anomalies, first.ended) == (3, 1, 1, True)
    assert first.tokens == ["tok_1"]
    assert first.providers == ["github"]
    assert first.hosts == ["api.github.com", "status.example.com"]
    assert first.duration_seconds == 90.0
    assert (second.run_id, second.ended, second.calls) == ("run_b", False, 1)
    assert [s.run_id for s in run_summaries(ledger, agent="other-bot")] == ["run_b"]
    assert [s.run_id for s in run_summaries(ledger, since=at(2))] == ["run_b"]
    summary = run_summary(ledger, "run_a")
    assert summary is not None and summary.to_json()["duration_seconds"] == 90.0
    assert run_summary(ledger, "nope") is None
    table = format_runs(run_summaries(ledger))
    assert "run_a" in table and "<script>" in table  # the table is text; control chars are escaped
    assert format_runs([]) == "(no runs)"


def test_timeline_filters(ledger: Ledger) -> None:
    tokens = timeline_rows(ledger, types=["token"])
    assert [row["event_type"] for row in tokens] == ["token.minted"]
    assert tokens[0]["task"] == "task of run_a"
    github = timeline_rows(ledger, run="run_a", provider="github", types=["api.request", "api.denied"])
    assert [row["seq"] for row in github] == [2, 4]
    assert [r["event_type"] for r in timeline_rows(ledger, since=at(0, 4), until=at(0, 5))] == [
        "api.denied",
        "api.request",
    ]
    with pytest.raises(ValueError, match="unknown event type 'bogus'"):
        event_types(["bogus"])


def test_cli_runs_timeline_and_report(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(ledger.path)
    assert main(["runs", "--ledger", db, "--json"]) == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["run_id"] for r in runs] == ["run_a", "run_b"] and runs[0]["denials"] == 1
    assert main(["timeline", "--ledger", db, "--type", "token,anomaly", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event_type"] for r in rows] == ["token.minted", "anomaly.detected"]
    assert main(["timeline", "--ledger", db, "--type", "nope"]) == 2
    assert "unknown event type" in capsys.readouterr().err
    out = tmp_path / "report.html"
    assert main(["report", "run_a", "--ledger", db, "-o", str(out)]) == 0
    assert "Ledger verified: intact" in out.read_text()
    assert main(["report", "run_x", "--ledger", db]) == 2
    assert "no events of run 'run_x'" in capsys.readouterr().err


def test_report_content_and_escaping(ledger: Ledger) -> None:
    html = render_report(ledger, "run_a")
    assert html is not None
    assert "Ledger verified: intact" in html and "10 events" in html
    assert CALL_COLOUR in html and "<svg" in html
    assert "tok_1" in html and "repo:write" in html  # asked for repo:write, downscoped to repo:read
    assert "denied_by_rule: no-deletes" in html
    assert "new_route" in html and "github DELETE /repos/{owner}/{repo}" in html
    # Self-contained: nothing to fetch, nothing to run.
    assert not any(word in html.lower() for word in ("src=", "href=", "<script", "@import", "url("))
    evil = render_report(ledger, "run_b")
    assert evil is not None
    assert "<script>" not in evil and "<img" not in evil
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in evil
    assert render_report(ledger, "run_none") is None


def test_report_shows_a_tampered_ledger(ledger: Ledger) -> None:
    import sqlite3

    ledger.close()
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET body = replace(body, 'pulls/7', 'pulls/8') WHERE seq = 2")
    html = render_report(Ledger.open_readonly(ledger.path), "run_a")
    assert html is not None and "Ledger verification FAILED</b> at seq 2" in html
