import json
import logging
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from tether.config import load_config
from tether.ops.health import readiness
from tether.ops.logs import JsonFormatter, redact
from tether.proxy.runtime import Runtime


@pytest.fixture
def runtime(tmp_path: Path):
    (tmp_path / "policy.yaml").write_text(
        yaml.safe_dump({"id": "pol_t", "agents": ["*"], "egress": ["x.test"]})
    )
    (tmp_path / "tether.yaml").write_text("state_dir: state\npolicy_files: [policy.yaml]\n")
    rt = Runtime.build(load_config(tmp_path / "tether.yaml", environ={}))
    rt.config.ca_cert_path.write_bytes(b"not a certificate")
    yield rt
    rt.close()


class StuckSink:
    name = "splunk"

    def lag_events(self) -> int:
        return 42

    def dead_letters(self) -> int:
        return 3

    def stuck(self) -> str | None:
        return "HEC answers 503 since 12:00"


def test_readiness_names_each_failing_check(runtime: Runtime) -> None:
    ready, body = readiness(runtime)
    assert not ready
    assert body["checks"]["ca"].endswith("is not a PEM certificate")
    assert body["checks"]["ledger"] == "ok" and body["checks"]["policy"] == "ok"
    runtime.ops.add_sink(StuckSink())
    runtime.ops.draining = True
    runtime.config.effective_ledger_path.chmod(0o400)
    try:
        _, body = readiness(runtime)
    finally:
        runtime.config.effective_ledger_path.chmod(0o600)
    assert body["checks"]["sink:splunk"] == "HEC answers 503 since 12:00"
    assert body["checks"]["draining"] == "shutting down"
    assert "not writable" in body["checks"]["ledger"]


def test_metrics_expose_hooked_gauges(runtime: Runtime) -> None:
    runtime.ops.add_sink(StuckSink())
    runtime.ops.checkpoint_age = lambda: 12.5
    text = generate_latest(runtime.ops.registry).decode()
    assert 'tether_sink_lag_events{sink="splunk"} 42.0' in text
    assert 'tether_sink_dead_letters{sink="splunk"} 3.0' in text
    assert "tether_checkpoint_age_seconds 12.5" in text


@pytest.mark.parametrize(
    "text",
    [
        "upstream said: Authorization: Bearer ghs_abcdef0123456789",
        "Proxy-Authorization: Basic YWdlbnQ6c2VjcmV0",
        "GET /?access_token=abc123&token=xyz789",
        "password=hunter2",
    ],
)
def test_redact_blanks_credential_looking_values(text: str) -> None:
    redacted = redact(text)
    for secret in ("ghs_abcdef0123456789", "YWdlbnQ6c2VjcmV0", "xyz789", "hunter2"):
        assert secret not in redacted
    assert "[redacted]" in redacted


def test_json_formatter_writes_one_object_per_record() -> None:
    try:
        raise ValueError("bad token=s3cr3t")
    except ValueError:
        record = logging.LogRecord("tether", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    record.flow_id = "f1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and entry["msg"] == "failed: x" and entry["flow_id"] == "f1"
    assert entry["ts"].endswith("Z")
    assert "ValueError" in entry["exc"] and "s3cr3t" not in entry["exc"]


class FakeState:
    def __init__(self) -> None:
        self.head, self.delivered = 10, 4

    def last_seq(self) -> int:
        return self.head

    def cursor(self, sink: str) -> int:
        return self.delivered

    def dead_letters(self, sink: str) -> list[object]:
        return [object(), object()]


def test_shipper_probe_is_stuck_only_when_the_cursor_stops_with_events_waiting() -> None:
    from types import SimpleNamespace

    from tether.ops import sinkprobe

    clock = [100.0]
    state = FakeState()
    shipper = SimpleNamespace(name="hec", state=state, stats=SimpleNamespace(last_error="HTTP 503"))
    probe = sinkprobe.ShipperProbe(shipper, stuck_seconds=60, clock=lambda: clock[0])  # type: ignore[arg-type]
    assert (probe.lag_events(), probe.dead_letters()) == (6, 2)
    assert probe.stuck() is None
    clock[0] += 61
    assert probe.stuck() == "nothing delivered for 61s, 6 event(s) waiting: HTTP 503"
    state.delivered = 8  # progress: not stuck, and the clock starts again
    assert probe.stuck() is None
    clock[0] += 30
    assert probe.stuck() is None
    state.delivered = state.head  # caught up: never stuck
    clock[0] += 600
    assert probe.stuck() is None


def test_checkpoint_age_counts_from_the_last_checkpoint_written(runtime: Runtime) -> None:
    import time as clock
    from types import SimpleNamespace

    from tether.proxy.lifecycle import checkpoint_age

    checkpointer = SimpleNamespace(written_at=None)
    age = checkpoint_age(checkpointer)  # type: ignore[arg-type]
    assert age() is None
    checkpointer.written_at = clock.time() - 30
    runtime.ops.checkpoint_age = age
    text = generate_latest(runtime.ops.registry).decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("tether_checkpoint_age_seconds "))
    assert 30 <= float(line.split()[1]) < 40
