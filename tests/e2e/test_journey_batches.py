"""The journey service reads its topics in batches, on the real broker: one transaction per batch,
yet each record keeps its own trace (stamped with the journey's own tool, neither meds nor sm), and a
record that fails alone is retried alone."""

import secrets
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind

from schemas import topics
from schemas.events import DraftUpdated
from schemas.vocabulary import Category, Ehr
from services.journey import handlers
from services.journey.handlers import JOURNEY_GROUP
from tests.e2e.conftest import Flow
from tests.e2e.test_renewal_journey import journey, reached, records_on, renewal_request
from tests.support import eventually


def draft_edit(renewal_id: str, draft_id: str) -> DraftUpdated:
    return DraftUpdated(
        renewal_id=UUID(renewal_id),
        draft_id=UUID(draft_id),
        veteran_id="1012845331V153043",
        ehr=Ehr.VISTA,
        category=Category.MEDICATIONS,
        recipient_id=1013155,
        changed=["body"],
    )


async def drafted_renewal(flow: Flow) -> tuple[str, str]:
    """A renewal whose draft exists: (renewal id, draft id)."""
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    await eventually(reached(flow, renewal_id, "drafted"))
    [created] = await records_on(
        flow.bootstrap,
        topics.DRAFTS,
        lambda e: e.get("renewal_id") == renewal_id and e["event_type"] == "draft.created",
    )
    return renewal_id, created["draft_id"]


async def publish_together(flow: Flow, edits: list[tuple[DraftUpdated, str]]) -> None:
    """Publish the edits in one go (one producer batch), each with its own ``traceparent``."""
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topics.DRAFTS,
                edit.model_dump_json().encode(),
                key=edit.key,
                headers=[("traceparent", traceparent.encode())],
            )
            for edit, traceparent in edits
        ]
        for delivery in sent:
            await delivery
    finally:
        await producer.stop()


async def ledger_spans(flow: Flow, producers: list[tuple[str, str]]) -> list[Any] | None:
    """The journey's spans of the records published from these (trace id, span id) parents, once
    there is one for each."""
    found = [
        span
        for span in flow.spans.get_finished_spans()
        if span.kind is SpanKind.CONSUMER
        and span.name == f"{topics.DRAFTS} process"
        and (span.attributes or {}).get("messaging.consumer.group.name") == JOURNEY_GROUP
        and span.parent is not None
        and (format(span.context.trace_id, "032x"), format(span.parent.span_id, "016x"))
        in producers
    ]
    return found if len(found) == len(producers) else None


def steps_named(found: dict[str, Any], name: str) -> int:
    return sum(step["step"] == name for step in found["steps"])


async def test_each_record_of_a_batch_is_processed_in_its_own_producers_trace(
    flow: Flow,
) -> None:
    renewal_id, draft_id = await drafted_renewal(flow)
    producers = [(secrets.token_hex(16), secrets.token_hex(8)) for _ in range(3)]
    edits = [
        (draft_edit(renewal_id, draft_id), f"00-{trace}-{span}-01") for trace, span in producers
    ]

    await publish_together(flow, edits)

    spans = await eventually(lambda: ledger_spans(flow, producers))
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes["rxsm.step"] == "journey.record"
        assert attributes["rxsm.renewal_id"] == renewal_id
        assert attributes["rxsm.tool"] == "journey"
        assert span.parent is not None and span.parent.is_remote
    found = await eventually(lambda: _with_steps(flow, renewal_id, "draft_updated", len(producers)))
    assert found["status"] == "drafted"


async def test_a_step_before_its_request_and_a_replayed_one_still_name_their_renewal(
    flow: Flow,
) -> None:
    """Topics are not ordered among themselves: an SM step may reach the journey before the
    renewal's request does, and a record may come twice. The span still says which renewal."""
    renewal_id = str(uuid4())
    edit = draft_edit(renewal_id, str(uuid4()))
    producers = [(secrets.token_hex(16), secrets.token_hex(8)) for _ in range(2)]

    await publish_together(flow, [(edit, f"00-{trace}-{span}-01") for trace, span in producers])

    spans = await eventually(lambda: ledger_spans(flow, producers))
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes["rxsm.step"] == "journey.record"
        assert attributes["rxsm.renewal_id"] == renewal_id


async def test_an_event_that_fails_alone_is_retried_alone_and_the_rest_are_recorded(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewal_id, draft_id = await drafted_renewal(flow)
    edits = [draft_edit(renewal_id, draft_id) for _ in range(3)]
    troubled = edits[1].event_id
    failures_left = {"count": 2}
    record = handlers.LedgerBatch.record

    def failing_twice(
        batch: handlers.LedgerBatch, session: Any, observed: Any, trace_id: Any
    ) -> Any:
        if observed.event_id == troubled and failures_left["count"]:
            failures_left["count"] -= 1
            raise RuntimeError("the ledger's database hiccupped")
        return record(batch, session, observed, trace_id)

    monkeypatch.setattr(handlers.LedgerBatch, "record", failing_twice)
    await publish_together(
        flow, [(edit, f"00-{secrets.token_hex(16)}-{'1' * 16}-01") for edit in edits]
    )

    found = await eventually(
        lambda: _with_steps(flow, renewal_id, "draft_updated", len(edits)), within=60
    )
    assert failures_left["count"] == 0, "tried in its batch, then alone"
    parked = await records_on(
        flow.bootstrap,
        topics.retry_topic(topics.DRAFTS, JOURNEY_GROUP),
        lambda e: e.get("event_id") == str(troubled),
    )
    assert len(parked) == 1, "only the event that failed alone went to the retry topic"
    assert steps_named(found, "draft_updated") == len(edits), "each recorded once"


async def _with_steps(flow: Flow, renewal_id: str, name: str, count: int) -> dict[str, Any] | None:
    found = await journey(flow, renewal_id)
    return found if steps_named(found, name) >= count else None
