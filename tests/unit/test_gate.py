from mitmproxy.test import tflow

from tether.proxy import flowdata as fd
from tether.proxy.gate import Gate


def test_unrecorded_call_is_refused():
    flow = tflow.tflow()
    Gate().request(flow)
    assert flow.response is not None and flow.response.status_code == 500
    assert b"tether_internal_error" in (flow.response.content or b"")


def test_recorded_call_passes():
    flow = tflow.tflow()
    flow.metadata[fd.REQUEST_EVENT] = {"event_id": "evt_x"}
    Gate().request(flow)
    assert flow.response is None


def test_answered_call_is_left_alone():
    flow = tflow.tflow(resp=True)
    Gate().request(flow)
    assert flow.response is not None and flow.response.status_code == 200
