"""How requests reach the renewal service: the Medications app over HTTP or on the ingress topic, the
events that feed the journey ledger, the ledger's readers over HTTP, and the stall sweep."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from faststream import Context, ContextRepo
from faststream.kafka import KafkaMessage, KafkaRouter
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, Field, TypeAdapter

from plumbing import http as http_problems
from plumbing.auth import Caller, MedicationsApp, VeteranOrService
from plumbing.batches import Batch
from plumbing.broker import subscribe
from plumbing.deadletter import PermanentError, Settlement
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.outbox import OutboxRelay
from plumbing.telemetry import (
    TRACING,
    annotate,
    current_trace_id,
    record_failure,
)
from schemas import topics
from schemas.records import RenewalRequest
from schemas.vocabulary import Cohort, Ehr, Tool
from services.renewal import domain, handlers
from services.renewal.domain import LedgerEvent, Refusal, Status, Step
from services.renewal.handlers import LEDGER_GROUP, Flags, Sessions, Source

IDENTITY = ServiceIdentity("renewal", Tool.MEDS)
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 255
log = get_logger(IDENTITY)

FLOW_CLOSED = frozenset({Refusal.RENEWAL_FLOW_OFF, Refusal.RENEWAL_FLOW_OFF_FOR_EHR})
"""Refusals of the rollout flags rather than of the prescription."""

LEDGER_TOPICS = (
    topics.RENEWAL_REQUESTED,
    topics.CARE_TEAMS,
    topics.DRAFTS,
    topics.MESSAGES,
    topics.DEAD_LETTER,
)
"""The ledger reads the service's own ``renewal requested`` back (the renewal is then on Kafka), SM's
topics, and dead letters."""


def _count(
    metrics: ServiceMetrics,
    step: str,
    outcome: domain.Outcome,
    tool: Tool,
    ehr: Ehr,
    cohort: Cohort,
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
            "cohort": str(cohort),
            **labels,
        },
    )


def _report_accepted(accepted: handlers.Accepted, source: Source) -> None:
    """Log the renewal (ids only); the ledger counts it once its event is on Kafka."""
    annotate("renewal.request", renewal_id=accepted.renewal_id, ehr=accepted.ehr)
    log.info(
        "renewal requested",
        step="renewal.request",
        renewal_id=str(accepted.renewal_id),
        source=source,
        cohort=str(accepted.cohort),
        duplicate=accepted.duplicate,
    )
    if accepted.upstream_disagrees:
        _report_disagreement(accepted.renewal_id, accepted.ehr, None)


def _report_disagreement(renewal_id: UUID, ehr: Ehr, refusal: Refusal | None) -> None:
    """The record's isRenewable and rxsm's check of it disagree (ids, EHR and verdict only)."""
    log.warning(
        "isRenewable disagrees with the renewal rule",
        step="renewal.request",
        renewal_id=str(renewal_id),
        ehr=str(ehr),
        verdict="renewable" if refusal is None else "refused",
        code=refusal.value if refusal is not None else None,
    )


def _report_refused(
    refused: handlers.NotRenewable, source: Source, metrics: ServiceMetrics
) -> None:
    """Fail the request's span in meds, log the refusal (ids and code only), and count a new one."""
    annotate("renewal.request", renewal_id=refused.renewal_id, ehr=refused.ehr)
    flow_closed = refused.refusal in FLOW_CLOSED
    record_failure(
        refused.refusal.value if flow_closed else "not_renewable",
        Tool.MEDS,
        code=refused.refusal.value,
    )
    if not refused.duplicate:
        _count(
            metrics,
            Step.REFUSED.value,
            "failure",
            Tool.MEDS,
            refused.ehr,
            refused.cohort,
            reason=refused.refusal.value,
        )
    log.info(
        "renewal refused",
        step="renewal.request",
        renewal_id=str(refused.renewal_id),
        source=source,
        code=refused.refusal.value,
        duplicate=refused.duplicate,
    )
    if refused.upstream_disagrees:
        _report_disagreement(refused.renewal_id, refused.ehr, refused.refusal)


async def on_renewal_request(
    body: RenewalRequest,
    message: KafkaMessage,
    sessions: Annotated[Sessions, Context("sessions")],
    flags: Annotated[Flags, Context("flags")],
    relay: Annotated[OutboxRelay, Context("relay")],
    metrics: Annotated[ServiceMetrics, Context("metrics")],
) -> None:
    """A request from the ingress topic, handled as over HTTP. A refusal (the renewal flow off for
    the Veteran, or not renewable) publishes nothing and is recorded in the ledger: look it up by the
    record's Idempotency-Key header (or by the renewal id logged with "renewal refused"). A
    redelivered request finds its open renewal and stages nothing new; a redelivered refusal is
    recorded again unless the record has an Idempotency-Key."""
    annotate("renewal.request")
    key = _header(message.headers, IDEMPOTENCY_KEY)
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise PermanentError(
            f"the Idempotency-Key header is longer than {MAX_KEY_LENGTH} characters"
        )
    try:
        accepted = await handlers.request_renewal(
            body,
            sessions,
            flags,
            source="kafka",
            idempotency_key=key,
            trace_id=current_trace_id(),
            today=datetime.now(UTC).date(),
        )
    except handlers.NotRenewable as refused:
        _report_refused(refused, "kafka", metrics)
        return
    except handlers.IdempotencyKeyReused as error:
        raise PermanentError(
            "the Idempotency-Key was already used for another Veteran or prescription"
        ) from error
    relay.notify()
    _report_accepted(accepted, "kafka")


def _header(headers: dict[str, Any], name: str) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return str(value) if value else None


async def on_ledger_event(
    event: LedgerEvent,
    sessions: Annotated[Sessions, Context("sessions")],
    metrics: Annotated[ServiceMetrics, Context("metrics")],
) -> None:
    """Record the journey step an event reports (a renewal on Kafka, an SM step, a dead letter about
    a renewal), and count the renewal's first arrival at that step. Takes the records of the
    ledger's retry topics; the topics themselves come in batches (``on_ledger_batch``)."""
    annotate("renewal.ledger")
    _report_step(await handlers.record_step(event, sessions), metrics)


LEDGER_EVENT: TypeAdapter[LedgerEvent] = TypeAdapter(LedgerEvent)


async def on_ledger_batch(
    message: KafkaMessage,
    context: ContextRepo,
    sessions: Annotated[Sessions, Context("sessions")],
    metrics: Annotated[ServiceMetrics, Context("metrics")],
    tracing: Annotated[TracerProvider, Context(TRACING)],
) -> None:
    """A batch of ledger events, recorded in one transaction (and one commit of offsets); each
    record keeps its own span and fate (see plumbing.batches). One that fails alone is parked on
    the group's retry topic, where ``on_ledger_event`` takes it."""
    batch: Batch[LedgerEvent, handlers.Recorded] = Batch(
        LEDGER_EVENT,
        "renewal.ledger",
        tracing,
        Settlement.of(context, IDENTITY, LEDGER_GROUP),
        process=lambda events, _: handlers.record_steps(events, sessions),
        process_one=lambda event: handlers.record_step(event, sessions),
        report=lambda _, recorded: _report_step(recorded, metrics),
    )
    await batch.consume(message.raw_message)


def _report_step(recorded: handlers.Recorded | None, metrics: ServiceMetrics) -> None:
    """Label the current span, count the renewal's first arrival at the step, log it (ids only);
    nothing for an event about no renewal of ours, or seen before."""
    if recorded is None:
        return
    annotate("renewal.ledger", renewal_id=recorded.renewal_id, ehr=recorded.ehr)
    step = recorded.record
    if recorded.first_of_step:
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
    log.info(
        "journey step recorded",
        step="renewal.ledger",
        renewal_id=str(recorded.renewal_id),
        journey_step=step.step.value,
        status=recorded.status.value,
    )


def subscribers() -> KafkaRouter:
    """The service's Kafka subscribers, for one broker."""
    router = KafkaRouter()
    subscribe(router, topics.RENEWAL_REQUESTS, on_renewal_request, IDENTITY)
    subscribe(
        router,
        LEDGER_TOPICS,
        on_ledger_event,
        IDENTITY,
        group=LEDGER_GROUP,
        batch_handler=on_ledger_batch,
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
            log.exception("stall sweep failed", step="renewal.stall")
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
                step="renewal.stall",
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
        log.exception("outbox not drained", step="renewal.request")


http = APIRouter(prefix="/v1", tags=["renewals"], responses=http_problems.API_ERRORS)


class RenewalAccepted(BaseModel):
    renewal_id: UUID
    trace_id: str | None = Field(description="The trace of this request.")
    status: Status = Field(
        description="``accepted`` for a new renewal (its event reaches Kafka within moments), or "
        "where a repeated request's renewal is."
    )


class RenewalProblem(http_problems.Problem):
    renewal_id: UUID | None = None


class JourneyStep(BaseModel):
    step: Step
    tool: Tool = Field(description="The tool that owns the step: meds or sm.")
    at: datetime
    error_code: str | None = None
    retryable: bool | None = Field(
        default=None, description="A failed send: whether SM may succeed sending the same attempt."
    )
    detail: str | None = Field(default=None, description="A dead letter's service and reason.")


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
    cohort: Cohort = Field(description="The rollout cohort, decided when the request came in.")
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
    source: Source
    steps: list[JourneyStep]


class RenewalList(BaseModel):
    renewals: list[RenewalSummary] = Field(description="Most recently updated first.")


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def flags_of(request: Request) -> Flags:
    flags: Flags = request.app.state.flags
    return flags


def relay_of(request: Request) -> OutboxRelay:
    relay: OutboxRelay = request.app.state.relay
    return relay


def metrics_of(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


SessionsDep = Annotated[Sessions, Depends(sessions_of)]


def _problem(status: int, code: str, message: str, renewal_id: UUID | None = None) -> JSONResponse:
    problem = RenewalProblem(code=code, message=message, renewal_id=renewal_id)
    return JSONResponse(status_code=status, content=problem.model_dump(mode="json"))


REFUSAL_STATUS = {refusal: 403 for refusal in FLOW_CLOSED}
"""The HTTP status of a refusal: 403 when the renewal flow is off for the Veteran or closed for the
prescription's EHR, else 422."""


@http.post(
    "/renewals",
    status_code=202,
    response_model=RenewalAccepted,
    responses={
        401: {"model": RenewalProblem, "description": "No valid service token."},
        403: {
            "model": RenewalProblem,
            "description": "``renewal_flow_off``: the renewal flow is off for this Veteran (the "
            "Medications app shows its fallback); ``renewal_flow_off_for_ehr``: it is not open "
            "for the prescription's EHR; or a service token of another caller.",
        },
        422: {"model": RenewalProblem, "description": "Not renewable (code says why), or invalid."},
    },
)
async def post_renewal(
    body: RenewalRequest,
    _: MedicationsApp,
    sessions: SessionsDep,
    flags: Annotated[Flags, Depends(flags_of)],
    relay: Annotated[OutboxRelay, Depends(relay_of)],
    metrics: Annotated[ServiceMetrics, Depends(metrics_of)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY,
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="Repeating a request with the same key returns the same renewal.",
        ),
    ] = None,
) -> RenewalAccepted | JSONResponse:
    """Ask to renew a prescription (the Medications app, with its service token): 202 with the
    renewal id once the renewal and its event are saved; the event reaches Kafka within moments. The
    same request again (same Idempotency-Key, or while the prescription's renewal is open) answers
    the same renewal id and publishes nothing new."""
    annotate("renewal.request")
    try:
        accepted = await handlers.request_renewal(
            body,
            sessions,
            flags,
            source="http",
            idempotency_key=idempotency_key,
            trace_id=current_trace_id(),
            today=datetime.now(UTC).date(),
        )
    except handlers.NotRenewable as refused:
        _report_refused(refused, "http", metrics)
        refusal = refused.refusal
        return _problem(
            REFUSAL_STATUS.get(refusal, 422), refusal.value, refusal.message, refused.renewal_id
        )
    except handlers.IdempotencyKeyReused:
        return _problem(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for another prescription; send a new key.",
        )
    relay.notify()
    _report_accepted(accepted, "http")
    return RenewalAccepted(
        renewal_id=accepted.renewal_id, trace_id=current_trace_id(), status=accepted.status
    )


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": RenewalProblem, "description": "No such renewal."}
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
        cohort=Cohort(row.cohort),
        trace_id=row.trace_id,
        requested_at=row.created_at,
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
        source="kafka" if found.renewal.source == "kafka" else "http",
        steps=[
            JourneyStep(
                step=Step(step.step),
                tool=Tool(step.tool),
                at=step.occurred_at,
                error_code=step.error_code,
                retryable=step.retryable,
                detail=step.detail,
            )
            for step in found.steps
        ],
    )


def _not_found(what: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail={"code": "renewal_not_found", "message": f"No renewal has this {what}; check it."},
    )


def _may_read(caller: Caller, found: handlers.Journey) -> bool:
    return caller.veteran_id is None or caller.veteran_id == found.renewal.veteran_id


@http.get(
    "/renewals/{renewal_id}", response_model=Journey, responses=NOT_FOUND, tags=["operations"]
)
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
    "/renewals/by-idempotency-key/{idempotency_key}",
    response_model=Journey,
    responses=NOT_FOUND,
    tags=["operations"],
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
        422: {"model": RenewalProblem, "description": "An unknown status or an unreadable since."}
    },
    tags=["operations"],
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
        return _problem(403, "service_only", "Only a service token may list renewals.")
    try:
        statuses = domain.statuses_named(status) if status else frozenset()
        after = domain.since_named(since, datetime.now(UTC)) if since else None
    except ValueError as error:
        return _problem(422, "invalid_request", f"Fix the request: {error}.")
    found = await handlers.renewals(sessions, statuses, after, limit)
    return RenewalList(renewals=[_summary(renewal) for renewal in found])
