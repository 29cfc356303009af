"""promtool accepts each running service's /metrics once a renewal has gone through the flow: requested,
care team resolved, drafted, sent (tests/test_promtool.py says how promtool is found or skipped).

Here, beside the e2e fixtures, the services are the session's one running flow (tests/e2e/conftest.py)."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Flow
from tests.e2e.test_observability import draft_of, reached
from tests.e2e.test_renewal_journey import renewal_request
from tests.e2e.test_traces import VISTA_ONLY
from tests.support import bearer, eventually
from tests.test_promtool import promtool, promtool_complaints

pytestmark = pytest.mark.kafka


async def test_every_service_metrics_pass_promtool_after_a_renewal(flow: Flow) -> None:
    promtool()
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]
    draft = await draft_of(flow, renewal_id)
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(VISTA_ONLY))
    assert sent.status_code == 200, sent.text
    await eventually(reached(flow, renewal_id, "sent"))

    counted = {
        "renewal": ("rxsm_renewals_total", "http_server_request_duration_seconds_bucket"),
        "careteam": ("rxsm_renewals_total", "rxsm_care_system_picker_shown_total"),
        "messaging": ("rxsm_messages_sent_total", "http_server_request_duration_seconds_bucket"),
    }
    complaints = {}
    for service, series in counted.items():
        response = await getattr(flow, service).get("/metrics")
        assert response.status_code == 200
        assert [name for name in series if name not in response.text] == [], service
        complaints[service] = promtool_complaints("check", "metrics", text=response.text)
    assert complaints == {"renewal": "", "careteam": "", "messaging": ""}


async def test_http_requests_are_timed_in_seconds_by_route(flow: Flow) -> None:
    """OpenTelemetry's stable ``http.server.request.duration``: one series per route template (a
    draft's id stays out of the labels), none of the legacy histogram in milliseconds."""
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    draft = await draft_of(flow, accepted.json()["renewal_id"])
    veteran = bearer(VISTA_ONLY)
    await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=veteran)

    routes = {}
    for service in ("renewal", "messaging"):
        text = (await getattr(flow, service).get("/metrics")).text
        assert "milliseconds" not in text
        routes[service] = {
            sample.labels["http_route"]
            for family in text_string_to_metric_families(text)
            if family.name == "http_server_request_duration_seconds"
            for sample in family.samples
            if sample.name.endswith("_count")
        }
    assert "/v1/renewals" in routes["renewal"]
    assert "/v1/drafts/{draft_id}/send" in routes["messaging"]
    assert not any(draft["id"] in route for route in routes["messaging"])
