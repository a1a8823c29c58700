"""JSON Lines file sink, OCSF mapping, sink configuration errors, `tether sinks` CLI."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.siem_support import fill_ledger, ship_all, sink_from
from tether.cli import main
from tether.config import ConfigError, load_config
from tether.ledger.events import new_event
from tether.ledger.store import Ledger
from tether.sinks.ocsf import to_ocsf
from tether.sinks.shipper import Shipper
from tether.sinks.state import SinkState


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db") as ledger:
        yield ledger


def test_file_sink_writes_json_lines_and_rotates(ledger: Ledger, tmp_path: Path) -> None:
    events = fill_ledger(ledger, 40)
    out = tmp_path / "out" / "events.jsonl"
    sink = sink_from(
        {
            "name": "f",
            "type": "file",
            "path": str(out),
            "rotate_bytes": 4096,
            "keep_files": 50,
            "batch_max_events": 5,
        }
    )
    ship_all(ledger.path, sink)
    files = [*sorted(out.parent.glob("events.jsonl.*"), key=lambda p: -int(p.suffix[1:])), out]
    assert len(files) > 2
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert [e["event_id"] for e in lines] == [e["event_id"] for e in events]
    assert all(f.stat().st_size <= 4096 for f in files)
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_file_sink_keeps_only_keep_files(ledger: Ledger, tmp_path: Path) -> None:
    fill_ledger(ledger, 60)
    out = tmp_path / "events.jsonl"
    ship_all(ledger.path, sink_from({"name": "f", "type": "file", "path": str(out), "rotate_bytes": 2048,
                                     "keep_files": 2, "batch_max_events": 3}))  # fmt: skip
    assert sorted(p.name for p in tmp_path.glob("events.jsonl*")) == [
        "events.jsonl",
        "events.jsonl.1",
        "events.jsonl.2",
    ]


def _event(kind: str, **fields: object) -> dict[str, object]:
    event = new_event(kind, agent_id="agt_a", agent_name="a", run_id="run_1", **fields)
    event.update(chain_id="chn_x", seq=3, prev_hash="0" * 64, hash="1" * 64)
    return event


def test_a_blocked_stdout_never_blocks_the_event_loop(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`path: "-"` read by a consumer that stalls (a full pipe): the proxy shares the event loop."""
    fill_ledger(ledger, 3)
    writing, released = threading.Event(), threading.Event()
    timed_out: list[bool] = []

    class FullPipe(io.BytesIO):
        def write(self, data: Any) -> int:
            writing.set()
            timed_out.append(not released.wait(2))  # only the event loop releases it
            return super().write(data)

    pipe = FullPipe()
    monkeypatch.setattr("sys.stdout", SimpleNamespace(buffer=pipe))

    async def go() -> None:
        state = SinkState(ledger.path)
        shipper = Shipper(sink_from({"name": "o", "type": "file", "path": "-", "flush_seconds": 0.01}), state)
        task = asyncio.create_task(shipper.run())
        async with asyncio.timeout(5):
            while not writing.is_set():
                await asyncio.sleep(0.01)
        released.set()
        async with asyncio.timeout(5):
            while state.cursor("o") < 2:
                await asyncio.sleep(0.01)
        shipper.stop(0)
        await asyncio.wait_for(task, 5)

    asyncio.run(go())
    assert timed_out == [False]
    assert pipe.getvalue().count(b"\n") == 3


def test_ocsf_api_activity() -> None:
    event = _event(
        "api.response",
        provider="github",
        source_ip="10.0.0.5",
        request={
            "method": "POST",
            "host": "api.github.com",
            "path": "/repos/a/b/issues",
            "route": "POST /repos/{o}/{r}/issues",
        },
        response={"status": 201, "bytes": 10, "duration_ms": 3.5},
    )
    mapped = to_ocsf(event)
    assert (mapped["class_uid"], mapped["category_uid"], mapped["activity_id"], mapped["type_uid"]) == (
        6003,
        6,
        1,
        600301,
    )
    assert mapped["status_id"] == 1 and mapped["severity_id"] == 1
    assert mapped["actor"]["user"]["uid"] == "agt_a"
    assert mapped["api"]["operation"] == "POST /repos/{o}/{r}/issues"
    assert mapped["api"]["service"]["name"] == "github"
    assert mapped["src_endpoint"] == {"ip": "10.0.0.5"}
    assert mapped["http_response"]["code"] == 201
    assert mapped["metadata"]["uid"] == event["event_id"] and mapped["unmapped"] == event
    denied = to_ocsf(
        _event("api.denied", request={"method": "DELETE"}, decision={"action": "deny", "reason": "r"})
    )
    assert (denied["activity_id"], denied["status_id"], denied["status_detail"]) == (4, 2, "r")


def test_ocsf_authentication() -> None:
    minted = to_ocsf(_event("token.minted", provider="github", token_id="tok_1", scope_downscoped=True))
    assert (minted["class_uid"], minted["activity_id"], minted["type_uid"], minted["status_id"]) == (
        3002,
        1,
        300201,
        1,
    )
    assert minted["user"]["name"] == "a" and minted["service"]["name"] == "github"
    assert minted["session"]["uid"] == "tok_1"
    assert to_ocsf(_event("token.mint_failed"))["status_id"] == 2
    assert to_ocsf(_event("token.revoked"))["activity_id"] == 2
    run = _event("run.started")
    assert to_ocsf(run) is run  # no OCSF class fits: native


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tether.yaml"
    path.write_text(text)
    return path


def test_sink_config_errors_name_file_and_line(tmp_path: Path) -> None:
    hec = "  - name: s\n    type: splunk_hec\n    url: https://h:8088\n    secret_file: missing-token\n"
    path = _write(tmp_path, f"agent_name: a\nsinks:\n{hec}  - name: s\n    type: file\n    path: out.jsonl\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any("used twice" in line for line in info.value.lines)
    path = _write(tmp_path, "sinks:\n  - name: s\n    type: splunk_hec\n    url: https://h:8088\n"
                  "    secret_file: missing-token\n")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.lines == [f"{path}:5: sinks.0.secret_file: no such file: {tmp_path / 'missing-token'}"]
    path = _write(tmp_path, "sinks:\n  - name: d\n    type: datadog\n    site: us9\n    secret_env: DD\n")
    with pytest.raises(ConfigError, match=r"tether.yaml:4: .*unknown Datadog site 'us9'"):
        load_config(path)
    path = _write(tmp_path, "sinks:\n  - name: x\n    type: kafka\n")
    with pytest.raises(ConfigError, match=r"tether\.yaml:2: sinks\.0: Input tag .kafka."):
        load_config(path)


def test_credentials_in_a_sink_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    for key, kind in (("url", "splunk_hec"), ("endpoint", "otlp")):
        path = _write(
            tmp_path,
            f"sinks:\n  - name: s\n    type: {kind}\n    {key}: https://ops:hunter2@h:8088\n"
            "    secret_env: HOME\n",
        )
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert any(
            f".{kind}.{key}: " in line and "must not hold credentials" in line for line in info.value.lines
        )
        assert "hunter2" not in str(info.value) and "hunter2" not in "\n".join(info.value.lines)


def test_datadog_site_aliases(tmp_path: Path) -> None:
    path = _write(tmp_path, "sinks:\n  - name: d\n    type: datadog\n    site: eu\n    secret_env: HOME\n")
    sink = load_config(path, environ={}).sinks[0]
    assert sink.type == "datadog" and sink.url == "https://http-intake.logs.datadoghq.eu/api/v2/logs"


def test_cli_status_and_replay(ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill_ledger(ledger, 5)
    out = tmp_path / "events.jsonl"
    config = _write(
        tmp_path, f"ledger_path: {ledger.path}\nsinks:\n  - name: f\n    type: file\n    path: {out}\n"
    )
    assert main(["sinks", "status", "--config", str(config)]) == 0
    assert "f: lag 5 (delivered through seq -1 of 4), dead letters 0" in capsys.readouterr().out
    ship_all(ledger.path, sink_from({"name": "f", "type": "file", "path": str(out)}))
    assert main(["sinks", "status", "--config", str(config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["lag"], status["cursor"], status["dead_letters"]) == (0, 4, 0)
    assert main(["sinks", "replay", "--config", str(config)]) == 0
    assert "f: no dead letters" in capsys.readouterr().out
    assert main(["sinks", "replay", "--config", str(config), "--sink", "nope"]) == 2


def test_syslog_octet_counting_and_escaping() -> None:
    from tether.sinks.syslog import sd_escape

    sink = sink_from({"name": "s", "type": "syslog", "address": "127.0.0.1:6514", "hostname": "h 1\x00x"})
    event = _event("api.denied", provider="github", task_context='a"]\\', decision={"action": "deny"})
    record = sink.encode(event)
    length, _, message = record.partition(b" ")
    assert int(length) == len(message)
    text = message.decode()
    assert text.startswith("<108>1 ")  # facility 13 (log audit) * 8 + warning (4)
    assert " h1x tether " in text  # header fields: printable US-ASCII only
    assert ' api.denied [tether@32473 event_id="' in text
    assert 'task_context="a\\"\\]\\\\"' in text and 'decision="deny"' in text
    assert json.loads(text.split("\ufeff", 1)[1]) == event
    assert sd_escape('"]\\') == '\\"\\]\\\\'
