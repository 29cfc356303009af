"""How requests reach the renewal service: the Medications app over HTTP or on the ingress topic;
where a request is, over HTTP, until its event is on Kafka; the sweep for requests whose event does not
get there; and the journey service's word that a renewal closed."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast
from uuid import UUID

from aiokafka import ConsumerRecord
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from faststream import StreamMessage
from faststream.kafka import KafkaMessage, KafkaRouter
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from plumbing import http as http_problems
from plumbing.auth import Caller, MedicationsApp, VeteranOrService
from plumbing.batches import Batch, Group, Records, Within, alone
from plumbing.broker import subscribe
from plumbing.deadletter import PermanentError, Settlement
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.openapi import link
from plumbing.outbox import EventTooLarge, OnSetAside, OutboxRelay, SetAside
from plumbing.telemetry import annotate, current_trace_id, record_failure
from schemas import topics
from schemas.events import RenewalClosed
from schemas.records import RenewalRequest
from schemas.vocabulary import Cohort, Ehr, Tool
from services.renewal import domain, handlers
from services.renewal.domain import IntakeStatus, Refusal
from services.renewal.handlers import Flags, Sessions, Source

IDENTITY = ServiceIdentity("renewal", Tool.MEDS)
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 255
log = get_logger(IDENTITY)

FLOW_CLOSED = frozenset({Refusal.RENEWAL_FLOW_OFF, Refusal.RENEWAL_FLOW_OFF_FOR_EHR})
"""Refusals of the rollout flags rather than of the prescription."""

CLOSED_GROUP = "rxsm-renewal-closed"
"""The consumer group in which the intake hears that renewals closed (the journey service's
``renewal.closed``), apart from the ingress's group so neither rebalances the other."""


def _report_accepted(accepted: handlers.Accepted, source: Source) -> None:
    """Log the renewal (ids only); the journey service counts it once its event is on Kafka."""
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


def _report_refused(refused: handlers.NotRenewable, source: Source) -> None:
    """Fail the request's span in meds and log the refusal (ids and code only); a new one's
    ``renewal refused`` is published, and the journey service counts it once it is on Kafka."""
    annotate("renewal.request", renewal_id=refused.renewal_id, ehr=refused.ehr)
    flow_closed = refused.refusal in FLOW_CLOSED
    record_failure(
        refused.refusal.value if flow_closed else "not_renewable",
        Tool.MEDS,
        code=refused.refusal.value,
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


@dataclass(frozen=True)
class Intake:
    """What the intake's entrypoints work with, bound once when the app is made."""

    sessions: Sessions
    flags: Flags
    relay: OutboxRelay
    tracing: TracerProvider
    settlement: Settlement
    """How a record of the ingress that cannot be taken is settled (dead-lettered)."""
    closing: Settlement
    """How a closing the intake cannot take is settled (in the closings' own group)."""

    async def take(
        self, asks: Sequence[handlers.Ask], within: Within
    ) -> Sequence[handlers.Outcome]:
        """Requests of one moment in one transaction; their events published right after it (in a
        task of their own: the relay's sweep publishes what this does not)."""
        intakes = await handlers.request_renewals(
            asks, self.sessions, self.flags, datetime.now(UTC).date(), within
        )
        self.relay.publish_soon(intakes.staged)
        return intakes.outcomes


@dataclass(frozen=True)
class Ingress:
    """A request read from the ingress topic, with the record's Idempotency-Key header."""

    request: RenewalRequest
    idempotency_key: str | None


RENEWAL_REQUEST: TypeAdapter[RenewalRequest] = TypeAdapter(RenewalRequest)


def read_ingress(record: ConsumerRecord) -> Ingress:
    """A record of the ingress topic: over ``INGRESS_RECORD_MAX_BYTES`` it is refused unread, as
    is an Idempotency-Key header over ``MAX_KEY_LENGTH`` characters (both dead-lettered)."""
    value = record.value or b""
    if len(value) > INGRESS_RECORD_MAX_BYTES:
        raise PermanentError(_too_large(len(value)))
    headers = {name: raw.decode("utf-8", "replace") for name, raw in record.headers or ()}
    key = _header(headers, IDEMPOTENCY_KEY)
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise PermanentError(
            f"the Idempotency-Key header is longer than {MAX_KEY_LENGTH} characters"
        )
    return Ingress(RENEWAL_REQUEST.validate_json(value), key)


def _ingress_outcome(outcome: handlers.Outcome) -> handlers.Outcome | PermanentError:
    """A request of the ingress that can never be taken is dead-lettered (its record alone)."""
    if isinstance(outcome, handlers.IdempotencyKeyReused):
        return PermanentError(
            "the Idempotency-Key was already used for another Veteran or prescription"
        )
    if isinstance(outcome, EventTooLarge):
        return PermanentError(f"{EVENT_TOO_LARGE}: {outcome}")
    return outcome


def _report_ingress(_: Ingress, outcome: handlers.Outcome | PermanentError | None) -> None:
    if isinstance(outcome, handlers.Accepted):
        _report_accepted(outcome, "kafka")
    elif isinstance(outcome, handlers.NotRenewable):
        _report_refused(outcome, "kafka")


def ingress(intake: Intake) -> Callable[[Records], Awaitable[None]]:
    """The ingress topic's batch subscriber: a batch of requests in one transaction (and one
    commit of offsets), each record with its own span and fate (plumbing.batches)."""

    async def process(
        items: Sequence[Ingress], within: Within
    ) -> Sequence[handlers.Outcome | PermanentError]:
        asks = []
        for index, item in enumerate(items):
            with within(index):
                annotate("renewal.request")
                asks.append(
                    handlers.Ask(item.request, "kafka", item.idempotency_key, current_trace_id())
                )
        return [_ingress_outcome(outcome) for outcome in await intake.take(asks, within)]

    async def process_one(item: Ingress) -> handlers.Outcome | PermanentError:
        [outcome] = await process([item], alone)
        if isinstance(outcome, PermanentError):
            raise outcome
        return outcome

    batch: Batch[Ingress, handlers.Outcome | PermanentError] = Batch(
        TypeAdapter(Ingress),
        "renewal.request",
        intake.tracing,
        intake.settlement,
        process=process,
        process_one=process_one,
        report=_report_ingress,
        read=read_ingress,
    )

    async def on_renewal_requests(records: Records) -> None:
        """A batch of renewal requests from the ingress topic (see ``on_renewal_request``)."""
        await batch.consume(records)

    return on_renewal_requests


def on_renewal_request(intake: Intake) -> Callable[..., Awaitable[None]]:
    """The subscriber of the ingress's retry topic, a record at a time."""

    async def on_renewal_request(body: RenewalRequest, message: KafkaMessage) -> None:
        """A request from the ingress topic, handled as over HTTP. A refusal (the renewal flow off
        for the Veteran, or not renewable) sends nothing to SM: it is saved and published as
        ``renewal refused`` for the journey service; look it up by the record's Idempotency-Key
        header (or by the renewal id logged with "renewal refused"). A redelivered request finds
        its open renewal and stages nothing new; a redelivered refusal is saved again unless the
        record has an Idempotency-Key. A record over ``INGRESS_RECORD_MAX_BYTES`` is dead-lettered
        unread (``bounded``), as is a request whose event Kafka could never take."""
        annotate("renewal.request")
        key = _header(message.headers, IDEMPOTENCY_KEY)
        if key is not None and len(key) > MAX_KEY_LENGTH:
            raise PermanentError(
                f"the Idempotency-Key header is longer than {MAX_KEY_LENGTH} characters"
            )
        [outcome] = await intake.take([handlers.Ask(body, "kafka", key, current_trace_id())], alone)
        settled = _ingress_outcome(outcome)
        if isinstance(settled, PermanentError):
            raise settled
        _report_ingress(Ingress(body, key), settled)

    return on_renewal_request


INGRESS_RECORD_MAX_BYTES = 512 * 1024
"""The largest record the ingress topic's consumer reads: twice the HTTP body limit (256 KiB,
plumbing/http.py), since on the ingress the request's PHI travels sealed (base64, a third larger).
rxsm's own; Kafka's own default (``message.max.bytes``, 1,048,588) is twice as large again."""
RECORD_TOO_LARGE = "record_too_large"
EVENT_TOO_LARGE = "event_too_large"


def _too_large(size: int) -> str:
    return (
        f"{RECORD_TOO_LARGE}: the record is {size} bytes; the ingress takes at most "
        f"{INGRESS_RECORD_MAX_BYTES}"
    )


async def bounded(message: StreamMessage[Any], decode: Callable[..., Awaitable[Any]]) -> Any:
    """The ingress's decoder: a record over ``INGRESS_RECORD_MAX_BYTES`` is refused before it is
    parsed (dead-lettered with the reason), whatever it holds."""
    size = len(message.body)
    if size > INGRESS_RECORD_MAX_BYTES:
        raise PermanentError(_too_large(size))
    return await decode(message)


def _header(headers: dict[str, Any], name: str) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return str(value) if value else None


CLOSED_STEP = "renewal.closed"


def on_renewal_closed(sessions: Sessions) -> Callable[[RenewalClosed], Awaitable[None]]:
    async def on_renewal_closed(event: RenewalClosed) -> None:
        """The journey service says a renewal closed: its prescription may be requested anew.
        Takes the records of the closings' retry topic; the topic itself comes in batches
        (``closings``)."""
        annotate(CLOSED_STEP, renewal_id=event.renewal_id)
        [here] = await handlers.close_renewals([event], sessions)
        _report_closed(event, here)

    return on_renewal_closed


def closings(intake: Intake) -> Callable[[Records], Awaitable[None]]:
    """The journey service's closings in batches: one transaction and one commit of offsets per
    batch, each record with its own span and fate (plumbing.batches)."""

    async def close_one(event: RenewalClosed) -> bool:
        [here] = await handlers.close_renewals([event], intake.sessions)
        return here

    batch: Batch[RenewalClosed, bool] = Batch(
        TypeAdapter(RenewalClosed),
        CLOSED_STEP,
        intake.tracing,
        intake.closing,
        process=lambda events, _: handlers.close_renewals(events, intake.sessions),
        process_one=close_one,
        report=_report_closed,
    )

    async def on_renewals_closed(records: Records) -> None:
        await batch.consume(records)

    return on_renewals_closed


def _report_closed(event: RenewalClosed, here: bool | None) -> None:
    annotate(CLOSED_STEP, renewal_id=event.renewal_id)
    if here:
        log.info(
            "renewal closed",
            step=CLOSED_STEP,
            renewal_id=str(event.renewal_id),
            status=event.status,
        )


def subscribers(intake: Intake | None = None) -> KafkaRouter:
    """The service's Kafka subscribers, for one broker, with what they work with bound once
    (without it, for listing the topics only): the ingress's in batches (its retry topic's records
    bounded), and the journey service's closings."""
    router = KafkaRouter()
    ingress_router = KafkaRouter(decoder=bounded)
    bound = intake if intake is not None else _unbound()
    subscribe(
        ingress_router,
        topics.RENEWAL_REQUESTS,
        on_renewal_request(bound),
        IDENTITY,
        batch_handler=ingress(bound),
    )
    router.include_router(ingress_router)
    subscribe(
        router,
        topics.RENEWALS_CLOSED,
        on_renewal_closed(bound.sessions),
        IDENTITY,
        group=CLOSED_GROUP,
        batch_handler=closings(bound),
    )
    return router


def _unbound() -> Intake:
    """An intake that cannot work: the subscribers' topics and groups only (docs, tools)."""
    return Intake(
        cast(Sessions, None),
        cast(Flags, None),
        cast(OutboxRelay, None),
        TracerProvider(),
        cast(Settlement, None),
        cast(Settlement, None),
    )


async def sweep_stalls(
    sessions: Sessions, metrics: ServiceMetrics, after: timedelta, every: float
) -> None:
    """Every ``every`` seconds until cancelled (a task of the app's lifespan), mark the accepted
    renewals whose event has not reached Kafka within ``after`` stalled: each is logged and counted
    once, on meds, whose step (publishing the request) is missing."""
    while True:
        try:
            stalls = await handlers.mark_stalled(sessions, datetime.now(UTC), after)
        except Exception:
            log.exception("stall sweep failed", step="renewal.stall")
            stalls = []
        for stall in stalls:
            metrics.renewals.add(
                1,
                {
                    "step": IntakeStatus.STALLED.value,
                    "outcome": "failure",
                    "tool": str(Tool.MEDS),
                    "ehr": str(stall.ehr),
                    "cohort": str(stall.cohort),
                    "waiting_for": domain.AWAITED,
                },
            )
            log.warning(
                "renewal stalled",
                step="renewal.stall",
                renewal_id=str(stall.renewal_id),
                waiting_for=domain.AWAITED,
                owner=Tool.MEDS.value,
                since=stall.since.isoformat(),
            )
        await asyncio.sleep(every)


def fail_unpublished(metrics: ServiceMetrics) -> OnSetAside:
    """What the outbox relay does, in its transaction, with events Kafka refused for good: a
    renewal whose request event it was fails on meds (``handlers.fail_unpublished``), is logged and
    counted."""

    async def fail(session: AsyncSession, set_aside: Sequence[SetAside]) -> None:
        for failed in await handlers.fail_unpublished(session, set_aside):
            metrics.renewals.add(
                1,
                {
                    "step": IntakeStatus.FAILED.value,
                    "outcome": "failure",
                    "tool": str(Tool.MEDS),
                    "ehr": str(failed.ehr),
                    "cohort": str(failed.cohort),
                    "reason": failed.reason,
                },
            )
            log.error(
                "renewal failed: Kafka can never take its event",
                step="renewal.request",
                renewal_id=str(failed.renewal_id),
                reason=failed.reason,
                owner=Tool.MEDS.value,
            )

    return fail


async def drain_outbox(relay: OutboxRelay) -> None:
    """On shutdown, publish what is staged while the producer is still open; what Kafka refuses
    stays staged and is published after the next start."""
    try:
        await relay.flush()
        while await relay.relay_once(everything=True):
            pass
    except Exception:
        log.exception("outbox not drained", step="renewal.request")


http = APIRouter(prefix="/v1", tags=["renewals"], responses=http_problems.API_ERRORS)


class RenewalAccepted(BaseModel):
    renewal_id: UUID
    trace_id: str | None = Field(description="The trace of this request.")
    status: IntakeStatus = Field(
        description="``accepted`` for a new renewal (its event reaches Kafka within moments), or "
        "where a repeated request's renewal is as the intake knows it (``requested`` once its "
        "event is on Kafka: the journey service says where it is; how it closed, once it has)."
    )


class RenewalProblem(http_problems.Problem):
    renewal_id: UUID | None = None


class Failure(BaseModel):
    tool: Tool = Field(description="meds: the intake refused the request, or failed it.")
    step: str = Field(
        description="refused; or requested, when Kafka can never take the request's event (its "
        "error_code: event_too_large, topic_invalid, record_invalid)."
    )
    error_code: str | None


class Stalled(BaseModel):
    waiting_for: str = Field(description="requested: the request's event on Kafka.")
    tool: Tool = Field(description="meds, which publishes it.")
    since: datetime = Field(description="When the renewal was accepted.")
    detected_at: datetime


class RenewalIntake(BaseModel):
    """A renewal request as the intake (Medications) knows it: accepted or refused, and whether its
    event is on Kafka. From there on the journey service follows it (``rxsm journey``)."""

    renewal_id: UUID
    status: IntakeStatus
    open: bool = Field(
        description="A request for the same prescription answers this renewal (until the journey "
        "service says it closed)."
    )
    source: Source
    ehr: Ehr
    cohort: Cohort = Field(description="The rollout cohort, decided when the request came in.")
    trace_id: str | None = Field(description="The trace of the request.")
    requested_at: datetime
    updated_at: datetime = Field(description="When the request reached its status.")
    failure: Failure | None = Field(
        description="The refusal, for a refused request; why it failed, for a failed one."
    )
    stalled: Stalled | None = Field(
        description="Accepted, and its event still not on Kafka after the stall timeout."
    )


async def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def group_of(request: Request) -> Group[handlers.Ask, handlers.Outcome]:
    group: Group[handlers.Ask, handlers.Outcome] = request.app.state.intake
    return group


SessionsDep = Annotated[Sessions, Depends(sessions_of)]


def _problem(status: int, code: str, message: str, renewal_id: UUID | None = None) -> JSONResponse:
    problem = RenewalProblem(code=code, message=message, renewal_id=renewal_id)
    return JSONResponse(status_code=status, content=problem.model_dump(mode="json"))


REFUSAL_STATUS = {refusal: 403 for refusal in FLOW_CLOSED}
"""The HTTP status of a refusal: 403 when the renewal flow is off for the Veteran or closed for the
prescription's EHR, else 422."""


ACCEPTED_LINKS = {
    "GetRenewal": link(
        "GET",
        "/v1/renewals/{renewal_id}",
        "The renewal as the intake knows it.",
        renewal_id="$response.body#/renewal_id",
    ),
    "GetRenewalByKey": link(
        "GET",
        "/v1/renewals/by-idempotency-key/{idempotency_key}",
        "The same renewal, found by the request's Idempotency-Key (when it had one).",
        idempotency_key="$request.header.Idempotency-Key",
    ),
}
"""OpenAPI links of an accepted renewal: where the Medications app reads it next."""


@http.post(
    "/renewals",
    status_code=202,
    response_model=RenewalAccepted,
    responses={
        202: {"links": ACCEPTED_LINKS},
        401: {"model": RenewalProblem, "description": "No valid service token."},
        413: {
            "model": RenewalProblem,
            "description": "``too_large``: the body is over 256 KiB; ``event_too_large``: its "
            "event would be over what Kafka takes (nothing is saved).",
        },
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
    intake: Annotated[Group[handlers.Ask, handlers.Outcome], Depends(group_of)],
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
    the same renewal id and publishes nothing new. Requests of the same moment share one
    transaction (group commit); each is answered once it is committed."""
    annotate("renewal.request")
    outcome = await intake(handlers.Ask(body, "http", idempotency_key, current_trace_id()))
    if isinstance(outcome, handlers.NotRenewable):
        _report_refused(outcome, "http")
        refusal = outcome.refusal
        return _problem(
            REFUSAL_STATUS.get(refusal, 422), refusal.value, refusal.message, outcome.renewal_id
        )
    if isinstance(outcome, handlers.IdempotencyKeyReused):
        return _problem(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for another prescription; send a new key.",
        )
    if isinstance(outcome, EventTooLarge):
        record_failure(EVENT_TOO_LARGE, Tool.MEDS, code=EVENT_TOO_LARGE)
        log.warning(
            "renewal request too large for Kafka", step="renewal.request", size=outcome.size
        )
        return _problem(
            413,
            EVENT_TOO_LARGE,
            f"This request's event would be {outcome.size} bytes, over the {outcome.limit} Kafka "
            "takes: nothing was saved. Send the prescription with fewer or shorter fields.",
        )
    _report_accepted(outcome, "http")
    return RenewalAccepted(
        renewal_id=outcome.renewal_id, trace_id=current_trace_id(), status=outcome.status
    )


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": RenewalProblem, "description": "No such renewal request."}
}


def _intake(found: handlers.Request) -> RenewalIntake:
    row, status = found.renewal, found.status
    stalled = (
        Stalled(
            waiting_for=row.stalled_step or domain.AWAITED,
            tool=Tool.MEDS,
            since=row.created_at,
            detected_at=row.stalled_at,
        )
        if status is IntakeStatus.STALLED and row.stalled_at is not None
        else None
    )
    failure = (
        Failure(tool=Tool.MEDS, step="refused", error_code=row.refusal)
        if row.refusal is not None
        else Failure(tool=Tool.MEDS, step=domain.AWAITED, error_code=row.failure)
        if row.failure is not None
        else None
    )
    return RenewalIntake(
        renewal_id=UUID(row.id),
        status=status,
        open=row.open_key is not None,
        source="kafka" if row.source == "kafka" else "http",
        ehr=Ehr(row.ehr),
        cohort=Cohort(row.cohort),
        trace_id=row.trace_id,
        requested_at=row.created_at,
        updated_at=row.stalled_at or row.status_since,
        failure=failure,
        stalled=stalled,
    )


def _not_found(what: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail={
            "code": "renewal_not_found",
            "message": f"No renewal request has this {what}; check it.",
        },
    )


def _may_read(caller: Caller, found: handlers.Request) -> bool:
    return caller.veteran_id is None or caller.veteran_id == found.renewal.veteran_id


@http.get("/renewals/{renewal_id}", response_model=RenewalIntake, responses=NOT_FOUND)
async def get_renewal(
    renewal_id: UUID, caller: VeteranOrService, sessions: SessionsDep
) -> RenewalIntake:
    """The renewal request as the intake knows it: accepted (stalled on meds when its event has not
    reached Kafka within the stall timeout), refused and why, or requested once its event is on
    Kafka. Where the renewal is from there is the journey service's (``GET /v1/renewals/{id}``
    there).

    For a service token (the Medications app, SRE tools) any renewal; for a Veteran's token only
    their own (another Veteran's renewal is not found)."""
    found = await handlers.renewal(sessions, renewal_id)
    if found is None or not _may_read(caller, found):
        raise _not_found("renewal_id")
    return _intake(found)


@http.get(
    "/renewals/by-idempotency-key/{idempotency_key}",
    response_model=RenewalIntake,
    responses=NOT_FOUND,
)
async def get_renewal_by_key(
    idempotency_key: str, caller: VeteranOrService, sessions: SessionsDep
) -> RenewalIntake:
    """The renewal request made with this Idempotency-Key (over HTTP or Kafka), as the intake
    knows it."""
    found = await handlers.renewal_for_key(sessions, idempotency_key)
    if found is None or not _may_read(caller, found):
        raise _not_found("Idempotency-Key")
    return _intake(found)
