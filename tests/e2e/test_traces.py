"""One trace per renewal, on the real broker: the HTTP request, each publish and each consumer nest as
parent and child, one span per record per hop (a ``publish`` span per record sent, a ``process`` span
per record in each consumer group), named and attributed by the OpenTelemetry messaging conventions,
each span saying whose tool it is; a failure at any step marks its span with error.type and the tool
that owns it, and the Veteran's later send joins the renewal's trace by a link."""

import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from schemas import topics
from services.messaging.adapters.upstream import HttpSecureMessaging
from services.messaging.domain import PollSchedule
from services.messaging.handlers import Messaging
from tests.e2e.conftest import Flow
from tests.e2e.test_renewal_journey import renewal_request
from tests.messaging.fake_sm import FakeSm
from tests.support import bearer, eventually

pytestmark = pytest.mark.kafka

VISTA_ONLY = "1012845331V153043"  # Cheyenne (442): one allowed team, suggested
MIXED = "1012667122V019349"  # VistA Denver (554) and Oracle Health Columbus (757)
UNKNOWN_TO_SM = "1000000001V000001"  # in no care-team directory
COLUMBUS_PRIMARY_OH = 3075701
DEMO_DIRECTORY = (
    Path(__file__).resolve().parents[2] / "services" / "careteam" / "data" / "demo_directory.json"
)


def oracle_health_request() -> dict[str, Any]:
    """A renewable Oracle Health prescription at Columbus for the mixed Veteran (who messaged the
    Columbus primary care pool lately, so it is suggested)."""
    return {
        "veteranId": MIXED,
        "prescription": {
            "prescriptionId": str(uuid4()),
            "prescriptionName": "METFORMIN 500MG TAB",
            "dispStatus": "Active",
            "prescriptionSource": "VA",
            "stationNumber": "757",
            "expirationDate": (date.today() + timedelta(days=30)).isoformat(),
            "isRenewable": True,
            "isRefillable": False,
            "medicationRequestStatus": "active",
            "medicationCategory": "va_prescription",
            "dispenseCount": 2,
            "completedDispenseCount": 2,
            "numberOfRepeatsAllowed": 1,
            "refillRequested": False,
            "dispenseInProgress": False,
        },
        "facilities": [
            {"stationNumber": "554", "ehr": "vista"},
            {"stationNumber": "757", "ehr": "oracle_health"},
        ],
    }


@dataclass(frozen=True)
class Trace:
    """The finished spans of one trace, as a tree."""

    spans: Sequence[ReadableSpan]

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        return next(
            (s for s in self.spans if s.context.span_id == span.parent.span_id),
            None,
        )

    def path_to_root(self, span: ReadableSpan) -> list[tuple[str, SpanKind, str]]:
        """(name, kind, service) of ``span`` and each of its ancestors up to the root."""
        path: list[tuple[str, SpanKind, str]] = []
        current: ReadableSpan | None = span
        while current is not None:
            path.append((current.name, current.kind, service(current)))
            current = self.parent(current)
        return path

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent and s.parent.span_id == span.context.span_id]

    def find(self, match: Callable[[ReadableSpan], bool]) -> list[ReadableSpan]:
        return [span for span in self.spans if match(span)]


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def trace_id_of(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def spans_of_trace(flow: Flow, trace_id: str) -> Trace:
    return Trace([s for s in flow.spans.get_finished_spans() if trace_id_of(s) == trace_id])


def consumer(topic: str, group: str) -> Callable[[ReadableSpan], bool]:
    return lambda span: (
        span.kind is SpanKind.CONSUMER
        and span.name == f"{topic} process"
        and attrs(span).get("messaging.consumer.group.name") == group
    )


def producer(topic: str) -> Callable[[ReadableSpan], bool]:
    return lambda span: (
        span.kind is SpanKind.PRODUCER
        and attrs(span).get("messaging.destination.name") == topic
        and span.name == f"{topic} publish"
    )


async def span_in(
    flow: Flow, trace_id: str, match: Callable[[ReadableSpan], bool], count: int = 1
) -> Trace:
    """The trace once ``count`` of its finished spans satisfy ``match``."""

    async def probe() -> Trace | None:
        found = spans_of_trace(flow, trace_id)
        return found if len(found.find(match)) >= count else None

    return await eventually(probe)


async def path_in(
    flow: Flow, trace_id: str, match: Callable[[ReadableSpan], bool], length: int
) -> Trace:
    """The trace once the span ``match`` finds and its ancestors, ``length`` in all, have ended (a
    publish span ends when Kafka acknowledged the record, which may be after its consumer's)."""

    async def probe() -> Trace | None:
        found = spans_of_trace(flow, trace_id)
        spans = found.find(match)
        return found if len(spans) == 1 and len(found.path_to_root(spans[0])) >= length else None

    return await eventually(probe)


async def failed_span(
    flow: Flow, match: Callable[[ReadableSpan], bool], within: float = 30.0
) -> ReadableSpan:
    async def probe() -> ReadableSpan | None:
        found = [span for span in flow.spans.get_finished_spans() if match(span)]
        return found[0] if found else None

    return await eventually(probe, within=within)


def about(renewal_id: str) -> Callable[[ReadableSpan], bool]:
    return lambda span: attrs(span).get("rxsm.renewal_id") == renewal_id


def assert_consumer_conventions(span: ReadableSpan, topic: str, group: str) -> None:
    """The messaging attributes a Kafka consumer span carries (OpenTelemetry semantic conventions)."""
    found = attrs(span)
    assert found["messaging.system"] == "kafka"
    assert found["messaging.operation"] == "process"
    assert found["messaging.destination.name"] == topic
    assert found["messaging.consumer.group.name"] == group
    assert isinstance(found["messaging.kafka.destination.partition"], int)
    assert isinstance(found["messaging.kafka.message.offset"], int)
    assert found["messaging.message.id"]


def assert_one_span_per_record_per_hop(trace: Trace) -> None:
    """Each record of the trace has one ``publish`` span where it was sent and one ``process`` span
    in each consumer group that read it, and nothing else records it: no span for a batch, no
    second span of the same hop beside rxsm's own."""
    kinds = Counter(span.kind for span in trace.spans)
    assert set(kinds) <= {SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER}, kinds
    hops = Counter(
        (span.name, span.kind, attrs(span).get("messaging.consumer.group.name"))
        for span in trace.spans
        if span.kind is not SpanKind.SERVER
    )
    assert {hop: count for hop, count in hops.items() if count > 1} == {}
    for span in trace.find(lambda span: span.kind is SpanKind.CONSUMER):
        topic = attrs(span)["messaging.destination.name"]
        assert span.name == f"{topic} process", span.name
        assert span.parent is not None and span.parent.is_remote, span.name
    for span in trace.find(lambda span: span.kind is SpanKind.PRODUCER):
        assert span.name == f"{attrs(span)['messaging.destination.name']} publish", span.name


def assert_flow_attributes(
    span: ReadableSpan, tool: str, step: str, renewal_id: str, ehr: str
) -> None:
    found = attrs(span)
    assert (found["rxsm.tool"], found["rxsm.step"]) == (tool, step), span.name
    assert (found["rxsm.renewal_id"], found["rxsm.ehr"]) == (renewal_id, ehr), span.name


def assert_failed(span: ReadableSpan, tool: str, error_type: str, code: str | None = None) -> None:
    found = attrs(span)
    assert span.status.status_code is StatusCode.ERROR, span.name
    assert found["error.type"] == error_type, span.name
    assert found["rxsm.failed_tool"] == tool, span.name
    if code is not None:
        assert found["rxsm.error_code"] == code, span.name


async def test_a_renewal_is_one_trace_from_the_request_to_its_draft(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert accepted.status_code == 202, accepted.text
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]
    drafting = consumer(topics.CARE_TEAMS, "rxsm-messaging")
    trace = await span_in(flow, trace_id, drafting)
    trace = await span_in(flow, trace_id, producer(topics.DRAFTS))
    trace = await path_in(flow, trace_id, drafting, length=5)

    [draft_create] = trace.find(drafting)
    assert trace.path_to_root(draft_create) == [
        (f"{topics.CARE_TEAMS} process", SpanKind.CONSUMER, "rxsm-messaging"),
        (f"{topics.CARE_TEAMS} publish", SpanKind.PRODUCER, "rxsm-careteam"),
        (f"{topics.RENEWAL_REQUESTED} process", SpanKind.CONSUMER, "rxsm-careteam"),
        (f"{topics.RENEWAL_REQUESTED} publish", SpanKind.PRODUCER, "rxsm-renewal"),
        ("POST /v1/renewals", SpanKind.SERVER, "rxsm-renewal"),
    ]
    [drafts_publish] = trace.find(producer(topics.DRAFTS))
    assert trace.parent(drafts_publish) is draft_create

    [request] = trace.find(lambda span: span.kind is SpanKind.SERVER)
    [resolve] = trace.find(consumer(topics.RENEWAL_REQUESTED, "rxsm-careteam"))
    assert_flow_attributes(request, "meds", "renewal.request", renewal_id, "vista")
    assert_flow_attributes(resolve, "sm", "careteam.resolve", renewal_id, "vista")
    assert_flow_attributes(draft_create, "sm", "draft.create", renewal_id, "vista")
    assert_consumer_conventions(resolve, topics.RENEWAL_REQUESTED, "rxsm-careteam")
    assert_consumer_conventions(draft_create, topics.CARE_TEAMS, "rxsm-messaging")
    for publish, tool in (
        (trace.find(producer(topics.RENEWAL_REQUESTED))[0], "meds"),
        (trace.find(producer(topics.CARE_TEAMS))[0], "sm"),
        (drafts_publish, "sm"),
    ):
        assert attrs(publish)["messaging.system"] == "kafka"
        assert attrs(publish)["messaging.operation"] == "publish"
        assert attrs(publish)["messaging.kafka.message.key"] == renewal_id
        assert attrs(publish)["rxsm.tool"] == tool
    for span in trace.spans:
        assert span.status.status_code is not StatusCode.ERROR, span.name
    assert_one_span_per_record_per_hop(trace)
    for span in trace.find(lambda span: span.kind is SpanKind.CONSUMER):
        assert attrs(span)["rxsm.step"] and attrs(span)["rxsm.renewal_id"] == renewal_id, span.name
    elsewhere = [
        span
        for span in flow.spans.get_finished_spans()
        if about(renewal_id)(span) and span.kind is SpanKind.CONSUMER
    ]
    assert {trace_id_of(span) for span in elsewhere} == {trace_id}, "one trace per renewal"


async def test_the_veterans_later_send_joins_the_renewals_trace_by_a_link(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]
    await span_in(flow, trace_id, consumer(topics.CARE_TEAMS, "rxsm-messaging"))
    [draft_create] = spans_of_trace(flow, trace_id).find(
        consumer(topics.CARE_TEAMS, "rxsm-messaging")
    )
    draft = await flow.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=bearer(VISTA_ONLY))

    sent = await flow.messaging.post(
        f"/v1/drafts/{draft.json()['id']}/send", headers=bearer(VISTA_ONLY)
    )

    assert sent.status_code == 200, sent.text
    [send] = [
        span
        for span in flow.spans.get_finished_spans()
        if span.name == "POST /v1/drafts/{draft_id}/send" and about(renewal_id)(span)
    ]
    assert_flow_attributes(send, "sm", "message.send", renewal_id, "vista")
    assert trace_id_of(send) != trace_id, "the send is a request of its own"
    [link] = send.links
    assert link.context.trace_id == draft_create.context.trace_id
    assert link.context.span_id == draft_create.context.span_id, "it links to the draft's creation"
    published = await span_in(
        flow,
        trace_id_of(send),
        lambda span: (
            producer(topics.MESSAGES)(span)
            and span.parent is not None
            and span.parent.span_id == send.context.span_id
        ),
    )
    [publish] = published.find(producer(topics.MESSAGES))
    assert attrs(publish)["messaging.kafka.message.key"] == renewal_id
    assert_one_span_per_record_per_hop(published)


async def test_a_refused_request_fails_its_span_in_meds(flow: Flow) -> None:
    refused = await flow.renewal.post(
        "/v1/renewals",
        json=renewal_request(refillRemaining=2, isRefillable=True, isRenewable=False),
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "refillable")
    renewal_id = refused.json()["renewal_id"]

    span = await failed_span(flow, lambda s: s.kind is SpanKind.SERVER and about(renewal_id)(s))

    assert_flow_attributes(span, "meds", "renewal.request", renewal_id, "vista")
    assert_failed(span, "meds", "not_renewable", code="refillable")


async def test_no_care_team_fails_the_care_team_span_in_sm(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request(UNKNOWN_TO_SM))
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]

    trace = await span_in(flow, trace_id, consumer(topics.RENEWAL_REQUESTED, "rxsm-careteam"))

    [resolve] = trace.find(consumer(topics.RENEWAL_REQUESTED, "rxsm-careteam"))
    assert_flow_attributes(resolve, "sm", "careteam.resolve", renewal_id, "vista")
    assert_failed(resolve, "sm", "care_team_unavailable", code="no_associations")
    [unavailable] = trace.find(producer(topics.CARE_TEAMS))
    assert trace.parent(unavailable) is resolve, "the outcome is still published, in the trace"


async def test_a_dead_lettered_event_fails_the_span_of_each_consumer_in_its_own_tool(
    flow: Flow,
) -> None:
    """A malformed care-teams record in a renewal's trace: messaging (sm) and the journey service
    (neither tool: its own, journey) both read the topic; each dead-letters it under its own tool, in
    the renewal's trace."""
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    producer_client = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    await producer_client.start()
    try:
        await producer_client.send_and_wait(
            topics.CARE_TEAMS,
            b"{not json",
            key=renewal_id.encode(),
            headers=[("traceparent", traceparent.encode())],
        )
    finally:
        await producer_client.stop()

    def refused(group: str) -> Callable[[ReadableSpan], bool]:
        return lambda span: consumer(topics.CARE_TEAMS, group)(span) and "error.type" in attrs(span)

    trace = await span_in(flow, trace_id, refused("rxsm-messaging"))
    trace = await span_in(flow, trace_id, refused("rxsm-journey"))
    trace = await span_in(flow, trace_id, producer(topics.DEAD_LETTER), count=2)

    for group, tool in (("rxsm-messaging", "sm"), ("rxsm-journey", "journey")):
        [span] = trace.find(refused(group))
        assert_failed(span, tool, "ValidationError")
        assert_consumer_conventions(span, topics.CARE_TEAMS, group)
        assert [child.name for child in trace.children(span)] == [f"{topics.DEAD_LETTER} publish"]


@asynccontextmanager
async def failing_oracle_health(flow: Flow) -> AsyncIterator[FakeSm]:
    """While open, the messaging service sends through an SM whose Oracle Health upstream fails
    every message (SM98)."""
    state = flow.apps["messaging"].state
    builtin: Messaging = state.messaging
    directory = json.loads(DEMO_DIRECTORY.read_text())["veterans"]
    with FakeSm({MIXED: directory[MIXED]["allTriageTeams"]}) as sm:
        sm.behaviour.oh_teams = {COLUMBUS_PRIMARY_OH}
        sm.behaviour.oh_outcome = "FAILED"
        upstream = HttpSecureMessaging(sm.url, timeout_seconds=2)
        polling = PollSchedule(interval=0.05, timeout=2.0)
        state.messaging = replace(builtin, upstream=upstream, polling=polling)
        try:
            yield sm
        finally:
            state.messaging = builtin
            await upstream.close()


async def oracle_health_draft(flow: Flow) -> tuple[str, str, dict[str, Any]]:
    """An Oracle Health renewal through the flow: its id, trace id and prefilled draft."""
    accepted = await flow.renewal.post("/v1/renewals", json=oracle_health_request())
    assert accepted.status_code == 202, accepted.text
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]

    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(MIXED)
        )
        return response.json() if response.status_code == 200 else None

    return renewal_id, trace_id, await eventually(draft)


async def test_a_failed_oracle_health_send_fails_the_send_span_in_sm_and_links_the_renewal(
    flow: Flow,
) -> None:
    renewal_id, trace_id, draft = await oracle_health_draft(flow)
    assert (draft["recipient_id"], draft["ehr"]) == (COLUMBUS_PRIMARY_OH, "oracle_health")

    async with failing_oracle_health(flow):
        sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(MIXED))
    assert (sent.status_code, sent.json()["code"]) == (400, "SM98")

    span = await failed_span(
        flow,
        lambda s: (
            s.kind is SpanKind.SERVER
            and s.name == "POST /v1/drafts/{draft_id}/send"
            and about(renewal_id)(s)
        ),
    )
    assert_flow_attributes(span, "sm", "message.send", renewal_id, "oracle_health")
    assert_failed(span, "sm", "sm_failed", code="SM98")
    assert trace_id_of(span) != trace_id, "the send is the Veteran's own request"
    assert [format(link.context.trace_id, "032x") for link in span.links] == [trace_id]
