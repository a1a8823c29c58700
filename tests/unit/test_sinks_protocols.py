"""Each sink against its local receiver over real HTTPS (the receivers follow the published protocols)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.siem_support import DD_API_KEY, HEC_TOKEN, SECRETS, Siem, fill_ledger, ship_all, sink_from
from tether.ledger.store import Ledger
from tether.sinks import splunk_hec
from tether.sinks.config import SplunkHecSink
from tether.sinks.shipper import Shipper
from tether.sinks.state import SinkState


@pytest.fixture(scope="module")
def siem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Siem]:
    box = Siem(tmp_path_factory.mktemp("siem"))
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def reset(siem: Siem) -> None:
    for receiver in (siem.hec, siem.datadog, siem.otlp):
        receiver.stored.clear()
        receiver.requests.clear()
        receiver.reject = None
        receiver.delay_seconds = 0
        receiver._faults.clear()
    siem.hec.envelopes.clear()
    siem.hec.ack_enabled = False
    siem.hec.ack_never = False
    siem.hec.allowed_indexes = None
    siem.datadog.truncated = 0


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db") as ledger:
        yield ledger


def ids(ledger: Ledger) -> list[str]:
    return [e["event_id"] for e in ledger.iter_events()]


def run_for(ledger: Ledger, options: dict[str, Any], seconds: float) -> tuple[Shipper, SinkState]:
    """Run a shipper for a while (for receivers that never accept)."""

    async def go() -> tuple[Shipper, SinkState]:
        state = SinkState(ledger.path)
        shipper = Shipper(sink_from(options), state)
        task = asyncio.create_task(shipper.run())
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await shipper.sink.close()
        return shipper, state

    return asyncio.run(go())


# --- Splunk HEC ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reply", "kind"),
    [
        (200, {"text": "Success", "code": 0}, "ok"),
        (401, {"text": "Token is required", "code": 2}, "retry"),
        (401, {"text": "Invalid authorization", "code": 3}, "retry"),
        (403, {"text": "Invalid token", "code": 4}, "retry"),
        (400, {"text": "No data", "code": 5}, "reject"),
        (400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 3}, "reject"),
        (400, {"text": "Incorrect index", "code": 7, "invalid-event-number": 0}, "retry"),
        (500, {"text": "Internal server error", "code": 8}, "retry"),
        (503, {"text": "Server is busy", "code": 9}, "retry"),
        (400, {"text": "Data channel is missing", "code": 10}, "retry"),
        (400, {"text": "Invalid data channel", "code": 11}, "retry"),
        (400, {"text": "Event field is required", "code": 12, "invalid-event-number": 1}, "reject"),
        (400, {"text": "Event field cannot be blank", "code": 13}, "reject"),
        (400, {"text": "ACK is disabled", "code": 14}, "retry"),
        (400, {"text": "Error in handling indexed fields", "code": 15}, "reject"),
        (400, {"text": "Query string authorization is not enabled", "code": 16}, "retry"),
        (503, {"text": "HEC is unhealthy, queues are full", "code": 18}, "retry"),
        (503, {"text": "HEC is unhealthy, ack service unavailable", "code": 19}, "retry"),
        (503, {"text": "HEC is unhealthy, queues are full, ack service unavailable", "code": 20}, "retry"),
        (502, None, "retry"),
        (404, None, "retry"),
    ],
)
def test_hec_reply_codes(status: int, reply: dict[str, Any] | None, kind: str) -> None:
    outcome = splunk_hec.classify(status, reply, None)
    assert outcome.kind == kind
    if reply is not None and "invalid-event-number" in reply and kind == "reject":
        assert outcome.index == reply["invalid-event-number"]


def test_hec_envelope(siem: Siem) -> None:
    sink = sink_from(siem.hec_config(host="sidecar-1", sourcetype="tether:event", source="tether"))
    event = {"timestamp": "2025-02-03T14:23:17.432Z", "event_id": "evt_1", "seq": 0}
    assert json.loads(sink.encode(event)) == {
        "time": 1738592597.432,
        "host": "sidecar-1",
        "source": "tether",
        "sourcetype": "tether:event",
        "index": "agent_tokens",
        "event": event,
    }


def test_hec_ships_gzip_batches_of_concatenated_envelopes(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 30)
    checks = siem.hec.health_checks
    shipper = ship_all(ledger.path, sink_from(siem.hec_config(batch_max_events=10)))
    assert siem.hec.health_checks == checks + 1  # GET /services/collector/health at start
    assert siem.hec.stored_ids() == ids(ledger)
    assert len(siem.hec.requests) == 3
    assert shipper.stats.parked == 0


def test_hec_invalid_event_number_parks_exactly_that_event(siem: Siem, ledger: Ledger) -> None:
    events = fill_ledger(ledger, 20)
    siem.hec.reject = lambda e: e.get("task_context") == "task-13"
    ship_all(ledger.path, sink_from(siem.hec_config()))
    assert siem.hec.stored_ids() == [e["event_id"] for e in events if e["task_context"] != "task-13"]
    letters = SinkState(ledger.path).dead_letters("splunk")
    assert [(d.event_id, d.reason) for d in letters] == [
        (events[13]["event_id"], "HEC code 6: Invalid data format")
    ]


def test_hec_busy_with_retry_after_is_retried(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 5)
    siem.hec.fail_next(503, times=2, retry_after="1")
    shipper = ship_all(ledger.path, sink_from(siem.hec_config()))
    assert siem.hec.stored_ids() == ids(ledger)
    assert shipper.stats.retries == 2
    assert [r.status for r in siem.hec.requests] == [503, 503, 200]


def test_hec_wrong_token_waits_and_parks_nothing(siem: Siem, ledger: Ledger, tmp_path: Path) -> None:
    fill_ledger(ledger, 3)
    bad = tmp_path / "bad-token"
    bad.write_text("00000000-0000-0000-0000-000000000000\n")
    _, state = run_for(ledger, siem.hec_config(secret_file=str(bad)), 0.5)
    assert siem.hec.stored == []
    assert state.cursor("splunk") == -1
    assert state.dead_letters() == []
    status = state.status(["splunk"])[0]
    assert status.last_error is not None and "code 4: Invalid token" in status.last_error
    assert "00000000" not in status.last_error


def test_hec_indexer_ack_confirms_before_the_cursor_moves(siem: Siem, ledger: Ledger) -> None:
    siem.hec.ack_enabled = True
    fill_ledger(ledger, 12)
    ship_all(ledger.path, sink_from(siem.hec_config(ack=True, ack_poll_seconds=0.05, batch_max_events=5)))
    assert siem.hec.stored_ids() == ids(ledger)


def test_hec_without_a_channel_is_told_data_channel_is_missing(siem: Siem, ledger: Ledger) -> None:
    siem.hec.ack_enabled = True
    fill_ledger(ledger, 2)
    _, state = run_for(ledger, siem.hec_config(ack=False), 0.4)
    assert state.cursor("splunk") == -1
    assert "code 10: Data channel is missing" in (state.status(["splunk"])[0].last_error or "")


def test_hec_resends_a_batch_that_is_never_acknowledged(siem: Siem, ledger: Ledger) -> None:
    siem.hec.ack_enabled = True
    siem.hec.ack_never = True
    fill_ledger(ledger, 3)
    options = siem.hec_config(ack=True, ack_poll_seconds=0.05, ack_timeout_seconds=0.2)
    _, state = run_for(ledger, options, 1.0)
    assert state.cursor("splunk") == -1
    assert len(siem.hec.requests) >= 2  # sent, not acked in time, sent again
    siem.hec.ack_never = False
    ship_all(ledger.path, sink_from(options))
    assert siem.hec.stored_ids() == ids(ledger)


def test_hec_health_check_and_settings(siem: Siem) -> None:
    with pytest.raises(ValueError, match="secret_file or secret_env"):
        SplunkHecSink.model_validate({"name": "s", "type": "splunk_hec", "url": "https://x:8088"})
    with pytest.raises(ValueError, match="http"):
        SplunkHecSink.model_validate({"name": "s", "type": "splunk_hec", "url": "x:8088", "secret_env": "X"})


# --- Datadog ------------------------------------------------------------------------------------


def test_datadog_entries_carry_attributes_and_defaults(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 3, provider="github")
    ship_all(ledger.path, sink_from(siem.datadog_config(ddtags="env:test", hostname="h1")))
    entry = siem.datadog.stored[0]
    assert entry["ddsource"] == "tether" and entry["service"] == "agent-auth"
    assert entry["ddtags"] == "env:test" and entry["hostname"] == "h1"
    assert entry["agent_id"] == "agt_test" and entry["provider"] == "github"
    assert entry["message"].startswith("api.request agent_name=test-agent run_id=run_1 provider=github")


def test_datadog_splits_at_1000_entries(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 2500)
    ship_all(ledger.path, sink_from(siem.datadog_config(batch_max_events=5000)), timeout=120)
    assert siem.datadog.stored_ids() == ids(ledger)
    assert [len(r.event_ids) for r in siem.datadog.requests] == [1000, 1000, 500]


def test_datadog_splits_at_5_mb_and_parks_an_entry_over_1_mb(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 12, task_context="x" * 600_000)  # ~0.6 MB each
    big = fill_ledger(ledger, 1, task_context="y" * 1_100_000)  # over 1 MB: never sent, never truncated
    fill_ledger(ledger, 2)
    options = siem.datadog_config(batch_max_events=1000, batch_max_bytes=50_000_000)
    ship_all(ledger.path, sink_from(options), timeout=120)
    assert siem.datadog.truncated == 0
    assert siem.datadog.stored_ids() == [i for i in ids(ledger) if i != big[0]["event_id"]]
    assert all(r.status == 202 for r in siem.datadog.requests)  # never a 413: split before sending
    letters = SinkState(ledger.path).dead_letters("datadog")
    assert [d.event_id for d in letters] == [big[0]["event_id"]]
    assert "over the sink's limit of 1048576" in letters[0].reason


def test_datadog_400_is_bisected_and_429_retried(siem: Siem, ledger: Ledger) -> None:
    events = fill_ledger(ledger, 8)
    siem.datadog.reject = lambda e: e.get("task_context") == "task-6"
    siem.datadog.fail_next(429, retry_after="1")
    siem.datadog.fail_next(500)
    ship_all(ledger.path, sink_from(siem.datadog_config()))
    assert siem.datadog.stored_ids() == [e["event_id"] for e in events if e["task_context"] != "task-6"]
    assert [d.seq for d in SinkState(ledger.path).dead_letters("datadog")] == [6]


def test_datadog_wrong_key_is_403_and_waits(siem: Siem, ledger: Ledger, tmp_path: Path) -> None:
    fill_ledger(ledger, 2)
    bad = tmp_path / "bad-key"
    bad.write_text("nope\n")
    _, state = run_for(ledger, siem.datadog_config(secret_file=str(bad)), 0.4)
    assert state.cursor("datadog") == -1 and state.dead_letters() == []
    assert "HTTP 403" in (state.status(["datadog"])[0].last_error or "")


# --- OTLP ---------------------------------------------------------------------------------------


def test_otlp_records_have_time_attributes_and_body(siem: Siem, ledger: Ledger) -> None:
    events = fill_ledger(ledger, 3, provider="slack", scope_requested=["chat:write"])
    ship_all(ledger.path, sink_from(siem.otlp_config()))
    record = siem.otlp.records[0]
    attributes = {a["key"]: a["value"] for a in record["attributes"]}
    assert attributes["tether.event_id"] == {"stringValue": events[0]["event_id"]}
    assert attributes["tether.seq"] == {"intValue": "0"}
    assert attributes["tether.scope_requested"] == {"arrayValue": {"values": [{"stringValue": "chat:write"}]}}
    assert record["timeUnixNano"].isdigit() and record["eventName"] == "api.request"
    assert siem.otlp.stored[0]["event_id"] == events[0]["event_id"]


def test_otlp_partial_success_parks_the_refused_record_and_retries_503(siem: Siem, ledger: Ledger) -> None:
    events = fill_ledger(ledger, 8)
    siem.otlp.reject = lambda e: e.get("task_context") == "task-2"
    siem.otlp.fail_next(503, retry_after="1")
    ship_all(ledger.path, sink_from(siem.otlp_config()))
    assert set(siem.otlp.stored_ids()) == {e["event_id"] for e in events if e["task_context"] != "task-2"}
    assert [d.seq for d in SinkState(ledger.path).dead_letters("otlp")] == [2]


# --- no secret in any payload -------------------------------------------------------------------


def test_no_secret_in_any_shipped_payload(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 5)
    for options in (siem.hec_config(), siem.datadog_config(), siem.otlp_config()):
        ship_all(ledger.path, sink_from(options))
    shipped = json.dumps([siem.hec.stored, siem.datadog.stored, siem.otlp.records])
    assert len(siem.hec.stored) == len(siem.datadog.stored) == len(siem.otlp.stored) == 5
    for secret in SECRETS:
        assert secret not in shipped
    assert HEC_TOKEN not in gzip.decompress(gzip.compress(shipped.encode())).decode()
    assert DD_API_KEY not in shipped


def test_sinks_honour_tethers_upstream_overrides(siem: Siem, ledger: Ledger) -> None:
    """Without their own address/ca_file, HTTP sinks follow `upstream_overrides` for their host."""
    from tether.config import UpstreamOverride
    from tether.sinks.config import SplunkHecSink
    from tether.sinks.splunk_hec import SplunkHec

    options = siem.hec_config()
    del options["address"], options["ca_file"]
    override = UpstreamOverride(address=siem.hec_server.address, ca_file=siem.ca.cert_path)
    sink = SplunkHec(SplunkHecSink.model_validate(options), HEC_TOKEN, {"splunk.example.com": override})
    fill_ledger(ledger, 3)
    ship_all(ledger.path, sink)
    assert siem.hec.stored_ids() == ids(ledger)


def test_ocsf_format_through_hec(siem: Siem, ledger: Ledger) -> None:
    fill_ledger(ledger, 2, provider="github", request={"method": "GET", "host": "api.github.com"})
    ship_all(ledger.path, sink_from(siem.hec_config(format="ocsf")))
    first = siem.hec.stored[0]
    assert (first["class_uid"], first["activity_id"], first["status_id"]) == (6003, 2, 0)
    assert first["metadata"]["uid"] == ids(ledger)[0] and first["unmapped"]["seq"] == 0
