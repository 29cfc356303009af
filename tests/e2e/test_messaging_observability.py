"""What an SRE sees of the messaging service on the real broker: the Veteran's later send joins the
renewal's trace by a span link to the draft's creation, failures say whose tool and which SM code, and
/metrics counts drafts and sends by status, EHR and cohort, with their latency."""

from collections import Counter
from typing import Any
from uuid import uuid4

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from schemas.vocabulary import Cohort
from tests.e2e.conftest import Flow
from tests.e2e.test_messaging_delivery import care_teams_resolved, deliver, draft_of
from tests.e2e.test_messaging_drafts import MIXED, PRESCRIPTION, VISTA_ONLY, new_message
from tests.support import bearer, eventually


def spans_where(flow: Flow, kind: SpanKind, **attributes: str) -> list[ReadableSpan]:
    return [
        span
        for span in flow.spans.get_finished_spans()
        if span.kind is kind
        and all((span.attributes or {}).get(key) == value for key, value in attributes.items())
    ]


async def one_span(flow: Flow, kind: SpanKind, **attributes: str) -> ReadableSpan:
    async def found() -> ReadableSpan | None:
        spans = spans_where(flow, kind, **attributes)
        return spans[0] if len(spans) == 1 else None

    return await eventually(found)


async def test_the_veterans_send_joins_the_renewals_trace_by_a_link_to_the_drafts_creation(
    flow: Flow,
) -> None:
    accepted = await flow.renewal.post(
        "/v1/renewals",
        json={
            "veteranId": VISTA_ONLY,
            "prescription": {**PRESCRIPTION, "prescriptionId": str(uuid4())},
            "facilities": [{"stationNumber": "442", "ehr": "vista"}],
        },
    )
    assert accepted.status_code == 202, accepted.text
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]

    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(VISTA_ONLY)
        )
        return response.json() if response.status_code == 200 else None

    draft_id = (await eventually(draft))["id"]
    sent = await flow.messaging.post(f"/v1/drafts/{draft_id}/send", headers=bearer(VISTA_ONLY))
    assert sent.status_code == 200, sent.text

    journey = {"rxsm.renewal_id": renewal_id, "rxsm.ehr": "vista"}
    creation = await one_span(flow, SpanKind.CONSUMER, **journey, **{"rxsm.step": "draft.create"})
    send = await one_span(flow, SpanKind.SERVER, **journey, **{"rxsm.step": "message.send"})
    assert format(creation.context.trace_id, "032x") == trace_id, (
        "the draft is in the renewal's trace"
    )
    assert sent.json()["trace_id"] != trace_id, "the send is a request of its own"
    [link] = send.links
    assert (link.context.trace_id, link.context.span_id) == (
        creation.context.trace_id,
        creation.context.span_id,
    )
    assert (send.attributes or {})["rxsm.tool"] == "sm"


async def test_a_refused_send_says_on_its_span_whose_tool_and_which_code(flow: Flow) -> None:
    event = care_teams_resolved().model_copy(update={"suggested_team_id": None})
    await deliver(flow, event)
    draft = await draft_of(flow, event)
    refused = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(MIXED))
    assert refused.status_code == 422

    send = await one_span(
        flow,
        SpanKind.SERVER,
        **{"rxsm.step": "message.send", "rxsm.renewal_id": str(event.renewal_id)},
    )
    attributes = send.attributes or {}
    assert send.status.status_code is StatusCode.ERROR
    assert (attributes["error.type"], attributes["rxsm.failed_tool"]) == ("request_refused", "sm")
    assert (attributes["rxsm.error_code"], attributes["rxsm.ehr"]) == (
        "recipient_required",
        "vista",
    )
    assert len(send.links) == 1, "a refused send joins the journey too"


async def samples(flow: Flow) -> Counter[tuple[str, frozenset[tuple[str, str]]]]:
    """Every sample on the messaging service's /metrics, by name and labels."""
    text = (await flow.messaging.get("/metrics")).text
    found: Counter[tuple[str, frozenset[tuple[str, str]]]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = int(sample.value)
    return found


async def test_metrics_count_drafts_and_sends_by_status_ehr_and_cohort_with_latency(
    flow: Flow,
) -> None:
    before = await samples(flow)
    event = care_teams_resolved(cohort=Cohort.BASE)
    await deliver(flow, event)
    renewal_draft = await draft_of(flow, event)
    url, owner = f"/v1/drafts/{renewal_draft['id']}", bearer(MIXED)
    assert (await flow.messaging.put(url, json={"body": "Please renew"}, headers=owner)).is_success
    too_long = await flow.messaging.put(url, json={"subject": "x" * 51}, headers=owner)
    assert too_long.status_code == 422
    assert (await flow.messaging.post(f"{url}/send", headers=owner)).is_success
    general = await new_message(flow)
    assert general.status_code == 201, general.text
    deleted = await flow.messaging.delete(f"/v1/drafts/{general.json()['id']}", headers=owner)
    assert deleted.status_code == 204
    flags_cohort = flow.apps["messaging"].state.flags.cohort(MIXED)

    after = await samples(flow)
    delta = after - before

    def counted(name: str, **labels: str) -> int:
        return delta[(name, frozenset(labels.items()))]

    base = {"ehr": "vista", "cohort": "base"}
    assert counted("rxsm_drafts_created_total", status="success", **base) == 1
    assert counted("rxsm_drafts_updated_total", status="200", **base) == 1
    assert counted("rxsm_drafts_updated_total", status="422", **base) == 1
    assert counted("rxsm_messages_sent_total", status="200", **base) == 1
    general_labels = {"ehr": "vista", "cohort": flags_cohort}
    assert counted("rxsm_drafts_created_total", status="201", **general_labels) == 1
    assert counted("rxsm_drafts_deleted_total", status="204", **general_labels) == 1

    latency = "rxsm_draft_duration_seconds_count"
    from_event = {"step": "draft.create", "source": "care_teams", "status": "success", **base}
    assert counted(latency, **from_event) == 1
    assert counted(latency, step="draft.update", source="http", status="200", **base) == 1
    send_latency = {"step": "message.send", "source": "http", "status": "200", **base}
    assert counted("rxsm_send_duration_seconds_count", **send_latency) == 1
