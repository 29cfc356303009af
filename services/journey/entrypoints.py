"""How the journey service hears of renewals and answers for them: the events of both tools and the
dead letters (in batches), the stall sweep, and its readers over HTTP."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaRouter
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, Field, TypeAdapter

from plumbing import http as http_problems
from plumbing.auth import Caller, VeteranOrService
from plumbing.batches import Batch, Records, Within
from plumbing.broker import subscribe
from plumbing.deadletter import Settlement
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.openapi import link
from plumbing.outbox import OutboxRelay
from plumbing.telemetry import annotate, current_trace_id
from schemas import topics
from schemas.vocabulary import Cohort, Ehr, Tool
from services.journey import domain, handlers
from services.journey.domain import JourneyEvent, Status, Step
from services.journey.handlers import JOURNEY_GROUP, Sessions

IDENTITY = ServiceIdentity("journey", Tool.JOURNEY)
"""The journey service belongs to neither tool: what it fails (a record it cannot read, its own
spans) is counted under ``journey``, never meds or sm."""
assert IDENTITY.consumer_group == JOURNEY_GROUP
assert IDENTITY.name == domain.SERVICE
log = get_logger(IDENTITY)

JOURNEY_TOPICS = (
    topics.RENEWAL_REQUESTED,
    topics.RENEWAL_REFUSED,
    topics.CARE_TEAMS,
    topics.DRAFTS,
    topics.MESSAGES,
    topics.DEAD_LETTER,
)
"""Meds' requests and refusals, SM's topics, and dead letters."""

STEP = "journey.record"
"""The flow step of the spans that record a journey step (``rxsm.step``)."""


def _count(
    metrics: ServiceMetrics,
    step: str,
    outcome: domain.Outcome,
    tool: Tool,
    ehr: Ehr,
    cohort: Cohort | None,
    **labels: str,
) -> None:
    """One renewal reached ``step``: the dashboard's funnel and error rate by owning tool."""
    metrics.renewals.add(
        1,
        {
            "step": step,
            "outcome": outcome,
            "tool": str(tool),
            "ehr": str(ehr),
            "cohort": str(cohort) if cohort is not None else "unknown",
            **labels,
        },
    )


@dataclass(frozen=True)
class Bound:
    """What the journey's subscribers work with, bound once when the app is made."""

    sessions: Sessions
    metrics: ServiceMetrics
    relay: OutboxRelay
    tracing: TracerProvider
    settlement: Settlement
    """How a record of the journey's group that fails for good is settled."""


def on_journey_event(bound: Bound) -> Callable[[JourneyEvent], Awaitable[None]]:
    async def on_journey_event(event: JourneyEvent) -> None:
        """Record the journey step an event reports (a renewal requested or refused by meds, an SM
        step, a dead letter about a renewal), and count the renewal's first arrival at that step.
        Takes the records of the journey's retry topics; the topics themselves come in batches
        (``on_journey_batch``)."""
        annotate(STEP)
        recorded = await handlers.record_step(
            event, bound.sessions, current_trace_id(), bound.relay.publish_soon
        )
        _report_step(event, recorded, bound.metrics)

    return on_journey_event


JOURNEY_EVENT: TypeAdapter[JourneyEvent] = TypeAdapter(JourneyEvent)


def _traces(count: int, within: Within) -> list[str | None]:
    """The trace of each record of a batch (its span's, which continues the producer's)."""
    traces = []
    for index in range(count):
        with within(index):
            traces.append(current_trace_id())
    return traces


def on_journey_batch(bound: Bound) -> Callable[[Records], Awaitable[None]]:
    """A batch of journey events, recorded in one transaction (and one commit of offsets); each
    record keeps its own span and fate (see plumbing.batches). One that fails alone is parked on
    the group's retry topic, where ``on_journey_event`` takes it. A record the journey cannot read
    is dead-lettered under the journey service's own name and tool."""
    sessions = bound.sessions

    async def process(
        events: Sequence[JourneyEvent], within: Within
    ) -> Sequence[handlers.Recorded | None]:
        return await handlers.record_steps(
            events, sessions, _traces(len(events), within), bound.relay.publish_soon
        )

    batch: Batch[JourneyEvent, handlers.Recorded] = Batch(
        JOURNEY_EVENT,
        STEP,
        bound.tracing,
        bound.settlement,
        process=process,
        process_one=lambda event: handlers.record_step(
            event, sessions, current_trace_id(), bound.relay.publish_soon
        ),
        report=lambda event, recorded: _report_step(event, recorded, bound.metrics),
    )

    async def on_journey_batch(records: Records) -> None:
        await batch.consume(records)

    return on_journey_batch


def _report_step(
    event: JourneyEvent,
    recorded: handlers.Recorded | None,
    metrics: ServiceMetrics,
) -> None:
    """Label the current span with the renewal the event is about (even one seen before, or one
    whose request has not arrived yet: topics are not ordered among themselves), then count each
    step the renewal reached for the first time and log it (ids only)."""
    if recorded is None:
        observed = domain.observed_step(event)
        annotate(STEP, renewal_id=None if observed is None else observed.renewal_id)
        return
    annotate(STEP, renewal_id=recorded.renewal_id, ehr=recorded.ehr)
    for step in recorded.counted:
        reason = {"reason": step.error_code} if step.error_code else {}
        _count(
            metrics,
            step.step.value,
            domain.outcome_of(step.step),
            step.tool,
            recorded.ehr,
            recorded.cohort,
            **reason,
        )
    step = recorded.record
    log.info(
        "journey step recorded",
        step=STEP,
        renewal_id=str(recorded.renewal_id),
        journey_step=step.step.value,
        tool=step.tool.value,
        status=recorded.status.value,
    )


def subscribers(bound: Bound | None = None) -> KafkaRouter:
    """The service's Kafka subscribers, for one broker, with what they work with bound once
    (without it, for listing the topics only)."""
    bound = bound or Bound(
        cast(Sessions, None),
        cast(ServiceMetrics, None),
        cast(OutboxRelay, None),
        TracerProvider(),
        cast(Settlement, None),
    )
    router = KafkaRouter()
    subscribe(
        router,
        JOURNEY_TOPICS,
        on_journey_event(bound),
        IDENTITY,
        group=JOURNEY_GROUP,
        batch_handler=on_journey_batch(bound),
    )
    return router


async def sweep_stalls(
    sessions: Sessions, metrics: ServiceMetrics, after: timedelta, every: float
) -> None:
    """Mark stalled renewals every ``every`` seconds until cancelled (a task of the app's lifespan);
    each is logged and counted under the tool that owns the missing step."""
    while True:
        try:
            stalls = await handlers.mark_stalled(sessions, datetime.now(UTC), after)
        except Exception:
            log.exception("stall sweep failed", step="journey.stall")
            stalls = []
        for stall in stalls:
            _count(
                metrics,
                Status.STALLED.value,
                "failure",
                stall.waiting.tool,
                stall.ehr,
                stall.cohort,
                waiting_for=stall.waiting.step.value,
            )
            log.warning(
                "renewal stalled",
                step="journey.stall",
                renewal_id=str(stall.renewal_id),
                waiting_for=stall.waiting.step.value,
                owner=stall.waiting.tool.value,
                since=stall.since.isoformat(),
            )
        await asyncio.sleep(every)


async def drain_outbox(relay: OutboxRelay) -> None:
    """On shutdown, publish what is staged while the producer is still open; what Kafka refuses
    stays staged and is published after the next start."""
    try:
        while await relay.relay_once():
            pass
    except Exception:
        log.exception("outbox not drained", step=STEP)


http = APIRouter(prefix="/v1", tags=["journeys"], responses=http_problems.API_ERRORS)


class JourneyStep(BaseModel):
    step: Step
    tool: Tool = Field(
        description="The tool that owns the step: meds or sm. A dead letter is the failure of the "
        "tool whose consumer refused the record."
    )
    at: datetime
    error_code: str | None = None
    retryable: bool | None = Field(
        default=None, description="A failed send: whether SM may succeed sending the same attempt."
    )
    detail: str | None = Field(default=None, description="A dead letter's service and reason.")
    topic: str | None = Field(
        default=None, description="A dead letter: the refused record's topic."
    )
    topic_owner: Tool | None = Field(
        default=None, description="A dead letter: the tool whose topic the record was on."
    )
    refused_by: str | None = Field(
        default=None, description="A dead letter: the consumer group that refused the record."
    )


class Failure(BaseModel):
    tool: Tool = Field(description="The tool that failed the renewal.")
    step: Step
    error_code: str | None


class Stalled(BaseModel):
    waiting_for: Step
    tool: Tool = Field(description="The tool that owns the missing step.")
    since: datetime = Field(description="When the ledger saw the renewal reach its last step.")
    detected_at: datetime


class RenewalSummary(BaseModel):
    """Where a renewal is, and whose tool failed it or holds it up."""

    renewal_id: UUID
    status: Status
    ehr: Ehr
    cohort: Cohort | None = Field(
        description="The rollout cohort, decided when the request came in."
    )
    trace_id: str | None = Field(description="The trace of the request that started the renewal.")
    requested_at: datetime
    updated_at: datetime = Field(
        description="When the ledger saw the renewal reach its status (a stall: when it was found)."
    )
    failure: Failure | None
    stalled: Stalled | None


class Journey(RenewalSummary):
    """A renewal's journey: its summary, and every step with its time and owning tool."""

    open: bool = Field(description="Further steps are expected.")
    source: str | None = Field(description="http or kafka: how the Medications app asked.")
    steps: list[JourneyStep]


class RenewalList(BaseModel):
    renewals: list[RenewalSummary] = Field(description="Most recently updated first.")


async def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


SessionsDep = Annotated[Sessions, Depends(sessions_of)]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": http_problems.Problem,
        "description": "The journey has no such renewal (one accepted a moment ago may not be on "
        "Kafka yet: the renewal service answers for its intake).",
    }
}


def _summary(found: handlers.Journey) -> RenewalSummary:
    row, failure = found.renewal, found.state.failure
    stalled = (
        Stalled(
            waiting_for=Step(row.stalled_step),
            tool=Tool(row.stalled_tool),
            since=row.status_since,
            detected_at=row.stalled_at,
        )
        if row.stalled_at is not None and row.stalled_step and row.stalled_tool
        else None
    )
    return RenewalSummary(
        renewal_id=UUID(row.id),
        status=Status.STALLED if stalled else found.state.status,
        ehr=Ehr(row.ehr),
        cohort=Cohort(row.cohort) if row.cohort else None,
        trace_id=row.trace_id,
        requested_at=row.requested_at,
        updated_at=row.stalled_at or row.status_since,
        failure=Failure(tool=failure.tool, step=failure.step, error_code=failure.error_code)
        if failure
        else None,
        stalled=stalled,
    )


def _journey(found: handlers.Journey) -> Journey:
    return Journey(
        **dict(_summary(found)),
        open=not found.state.closed,
        source=found.renewal.source,
        steps=[
            JourneyStep(
                step=Step(step.step),
                tool=Tool(step.tool),
                at=step.occurred_at,
                error_code=step.error_code,
                retryable=step.retryable,
                detail=step.detail,
                topic=step.source_topic,
                topic_owner=Tool(step.topic_owner) if step.topic_owner else None,
                refused_by=step.refused_by,
            )
            for step in found.steps
        ],
    )


def _not_found(what: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail={
            "code": "renewal_not_found",
            "message": f"The journey has no renewal with this {what}; check it. A renewal accepted "
            "a moment ago may not be on Kafka yet: the renewal service answers for its intake.",
        },
    )


def _may_read(caller: Caller, found: handlers.Journey) -> bool:
    return caller.veteran_id is None or caller.veteran_id == found.renewal.veteran_id


@http.get("/renewals/{renewal_id}", response_model=Journey, responses=NOT_FOUND)
async def get_renewal(renewal_id: UUID, caller: VeteranOrService, sessions: SessionsDep) -> Journey:
    """The renewal's journey: status, each step with its time and owning tool, the failing tool and
    error code, a stall and the tool that owns the missing step, and the request's trace id.

    For a service token (the Medications app, SRE tools) any renewal; for a Veteran's token only
    their own (another Veteran's renewal is not found)."""
    found = await handlers.journey(sessions, renewal_id)
    if found is None or not _may_read(caller, found):
        raise _not_found("renewal_id")
    return _journey(found)


@http.get(
    "/renewals/by-idempotency-key/{idempotency_key}", response_model=Journey, responses=NOT_FOUND
)
async def get_renewal_by_key(
    idempotency_key: str, caller: VeteranOrService, sessions: SessionsDep
) -> Journey:
    """The journey of the renewal requested with this Idempotency-Key (over HTTP or Kafka)."""
    found = await handlers.journey_for_key(sessions, idempotency_key)
    if found is None or not _may_read(caller, found):
        raise _not_found("Idempotency-Key")
    return _journey(found)


@http.get(
    "/renewals",
    response_model=RenewalList,
    responses={
        200: {
            "links": {
                "GetFirstRenewal": link(
                    "GET",
                    "/v1/renewals/{renewal_id}",
                    "The journey of the first renewal listed (the most recently updated).",
                    renewal_id="$response.body#/renewals/0/renewal_id",
                )
            }
        },
        403: {"model": http_problems.Problem, "description": "A Veteran's token (service_only)."},
        422: {
            "model": http_problems.Problem,
            "description": "An unknown status or an unreadable since.",
        },
    },
)
async def list_renewals(
    caller: VeteranOrService,
    sessions: SessionsDep,
    status: Annotated[
        str | None,
        Query(
            description="Comma-separated statuses; ``failed`` names every status in which a tool "
            "failed the renewal (refused, care_team_unavailable, send_failed, dead_lettered). "
            "All statuses when absent.",
            examples=["failed,stalled"],
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="Only renewals that reached their status since then: a duration back from "
            "now (30m, 1h, 7d) or an ISO 8601 time (UTC unless it says otherwise).",
            examples=["1h"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RenewalList | JSONResponse:
    """Renewals for SREs (a service token), most recently updated first: each one's status, failing
    tool, step and error code, the step and tool a stalled one waits for, its EHR, cohort and trace
    id."""
    if caller.veteran_id is not None:
        return http_problems.problem(403, "service_only", "Only a service token may list renewals.")
    try:
        statuses = domain.statuses_named(status) if status else frozenset()
        after = domain.since_named(since, datetime.now(UTC)) if since else None
    except ValueError as error:
        return http_problems.problem(422, "invalid_request", f"Fix the request: {error}.")
    found = await handlers.renewals(sessions, statuses, after, limit)
    return RenewalList(renewals=[_summary(renewal) for renewal in found])
