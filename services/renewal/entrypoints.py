"""How requests reach the renewal service: the Medications app over HTTP or on the ingress topic, the
downstream events that feed the journey ledger, the ledger's readers over HTTP, and the stall sweep."""

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from faststream import Context
from faststream.kafka import KafkaMessage, KafkaRouter
from pydantic import BaseModel, Field

from plumbing.broker import subscribe
from plumbing.deadletter import PermanentError
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.publishing import Publish
from plumbing.telemetry import annotate, current_trace_id
from schemas import topics
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr, Tool
from services.renewal import handlers
from services.renewal.domain import Eligibility, LedgerEvent, Status, Step
from services.renewal.handlers import Sessions, Source

IDENTITY = ServiceIdentity("renewal", Tool.MEDS)
LEDGER_GROUP = "rxsm-renewal-ledger"
"""The journey ledger reads downstream topics in a consumer group of its own."""
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 255
log = get_logger(IDENTITY)

LEDGER_TOPICS = (topics.CARE_TEAMS, topics.DRAFTS, topics.MESSAGES, topics.DEAD_LETTER)


def _report_accepted(accepted: handlers.Accepted, source: Source, metrics: ServiceMetrics) -> None:
    """Log the renewal (ids only) and count a new one for the dashboard."""
    annotate("renewal.request", renewal_id=accepted.renewal_id, ehr=accepted.ehr)
    if not accepted.duplicate:
        metrics.renewals.add(
            1,
            {
                "tool": str(Tool.MEDS),
                "ehr": str(accepted.ehr),
                "step": "requested",
                "outcome": "success",
                "source": source,
            },
        )
    log.info(
        "renewal requested",
        step="renewal.request",
        renewal_id=str(accepted.renewal_id),
        source=source,
        duplicate=accepted.duplicate,
    )


def _report_refused(
    refused: handlers.NotRenewable, source: Source, metrics: ServiceMetrics
) -> None:
    ehr = refused.eligibility.ehr
    annotate("renewal.request", renewal_id=refused.renewal_id, ehr=ehr)
    metrics.renewals.add(
        1,
        {
            "tool": str(Tool.MEDS),
            "ehr": str(ehr),
            "step": "refused",
            "outcome": "failure",
            "reason": refused.refusal.value,
            "source": source,
        },
    )
    log.info(
        "renewal refused",
        step="renewal.request",
        renewal_id=str(refused.renewal_id),
        source=source,
        code=refused.refusal.value,
    )
    _report_disagreement(refused.renewal_id, refused.eligibility)


def _report_disagreement(renewal_id: UUID, eligibility: Eligibility) -> None:
    """VistA's ``isRenewable`` and the older rule disagreed (the request was refused either way):
    the Medications app shows the renewal link by that flag, so this is worth its team's look."""
    if eligibility.upstream_disagrees:
        log.warning(
            "isRenewable disagrees with the renewal rule",
            step="renewal.request",
            renewal_id=str(renewal_id),
            code=eligibility.refusal.value if eligibility.refusal else None,
        )


async def on_renewal_request(
    body: RenewalRequest,
    message: KafkaMessage,
    sessions: Annotated[Sessions, Context("sessions")],
    publish: Annotated[Publish, Context("publish")],
    metrics: Annotated[ServiceMetrics, Context("metrics")],
) -> None:
    """A request from the ingress topic, handled as over HTTP. A refusal publishes nothing and is
    recorded in the ledger: look it up by the record's Idempotency-Key header (or by the renewal id
    logged with "renewal refused"). A redelivered request finds its open renewal and publishes nothing
    new; a redelivered refusal is recorded again unless the record has an Idempotency-Key."""
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
            publish,
            source="kafka",
            idempotency_key=key,
            trace_id=current_trace_id(),
            today=date.today(),
        )
    except handlers.NotRenewable as refused:
        _report_refused(refused, "kafka", metrics)
        return
    except handlers.IdempotencyKeyReused as error:
        raise PermanentError(
            "the Idempotency-Key was already used for another Veteran or prescription"
        ) from error
    _report_accepted(accepted, "kafka", metrics)


def _header(headers: dict[str, Any], name: str) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return str(value) if value else None


async def on_downstream_event(
    event: LedgerEvent, sessions: Annotated[Sessions, Context("sessions")]
) -> None:
    """Record the journey step an SM event (or a dead letter about a renewal) reports."""
    recorded = await handlers.record_step(event, sessions)
    if recorded is not None:
        log.info(
            "journey step recorded",
            step="renewal.ledger",
            renewal_id=str(recorded.renewal_id),
            journey_step=recorded.step.value,
            status=recorded.status.value,
        )


def subscribers() -> KafkaRouter:
    """The service's Kafka subscribers, for one broker."""
    router = KafkaRouter()
    subscribe(router, topics.RENEWAL_REQUESTS, on_renewal_request, IDENTITY)
    subscribe(router, LEDGER_TOPICS, on_downstream_event, IDENTITY, group=LEDGER_GROUP)
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
            metrics.renewals.add(
                1,
                {
                    "tool": stall.waiting.tool.value,
                    "ehr": str(stall.ehr),
                    "step": "stalled",
                    "outcome": "failure",
                    "waiting_for": stall.waiting.step.value,
                },
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


http = APIRouter(prefix="/v1", tags=["renewals"])


class RenewalAccepted(BaseModel):
    renewal_id: UUID
    trace_id: str | None = Field(description="The trace of this request.")
    status: Status = Field(description="``requested``, or where a repeated request's renewal is.")


class Problem(BaseModel):
    code: str
    message: str
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


class Journey(BaseModel):
    """Where a renewal is in the flow, and whose tool it is at or failed in."""

    renewal_id: UUID
    status: Status
    open: bool = Field(description="Further steps are expected.")
    source: Source
    ehr: Ehr
    trace_id: str | None = Field(description="The trace of the request that started the renewal.")
    requested_at: datetime
    steps: list[JourneyStep]
    failure: Failure | None
    stalled: Stalled | None


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def publisher(request: Request) -> Publish:
    publish: Publish = request.app.state.publish
    return publish


def metrics_of(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


SessionsDep = Annotated[Sessions, Depends(sessions_of)]


def _problem(status: int, code: str, message: str, renewal_id: UUID | None = None) -> JSONResponse:
    problem = Problem(code=code, message=message, renewal_id=renewal_id)
    return JSONResponse(status_code=status, content=problem.model_dump(mode="json"))


@http.post(
    "/renewals",
    status_code=202,
    response_model=RenewalAccepted,
    responses={
        422: {"model": Problem, "description": "Not renewable (code says why), or invalid."},
        503: {"model": Problem, "description": "Saved but not queued: retry the same request."},
    },
)
async def post_renewal(
    body: RenewalRequest,
    sessions: SessionsDep,
    publish: Annotated[Publish, Depends(publisher)],
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
    """Ask to renew a prescription: 202 with the renewal id once the request is on Kafka. The same
    request again (same Idempotency-Key, or while the prescription's renewal is open) answers the
    same renewal id and publishes nothing new."""
    annotate("renewal.request")
    try:
        accepted = await handlers.request_renewal(
            body,
            sessions,
            publish,
            source="http",
            idempotency_key=idempotency_key,
            trace_id=current_trace_id(),
            today=date.today(),
        )
    except handlers.NotRenewable as refused:
        _report_refused(refused, "http", metrics)
        return _problem(422, refused.refusal.value, refused.refusal.message, refused.renewal_id)
    except handlers.IdempotencyKeyReused:
        return _problem(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for another prescription; send a new key.",
        )
    except handlers.NotQueued as error:
        log.warning("renewal not queued", step="renewal.request", renewal_id=str(error.renewal_id))
        return _problem(
            503,
            "not_queued",
            "The request is saved but couldn't be queued. Send the same request again.",
            error.renewal_id,
        )
    _report_accepted(accepted, "http", metrics)
    return RenewalAccepted(
        renewal_id=accepted.renewal_id, trace_id=current_trace_id(), status=accepted.status
    )


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such renewal."}
}


def _journey(found: handlers.Journey) -> Journey:
    row, state = found.renewal, found.state
    failure = state.failure
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
    return Journey(
        renewal_id=UUID(row.id),
        status=Status.STALLED if stalled else state.status,
        open=not state.closed,
        source="kafka" if row.source == "kafka" else "http",
        ehr=Ehr(row.ehr),
        trace_id=row.trace_id,
        requested_at=row.created_at,
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
        failure=Failure(tool=failure.tool, step=failure.step, error_code=failure.error_code)
        if failure
        else None,
        stalled=stalled,
    )


def _not_found(what: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail={"code": "renewal_not_found", "message": f"No renewal has this {what}; check it."},
    )


@http.get(
    "/renewals/{renewal_id}", response_model=Journey, responses=NOT_FOUND, tags=["operations"]
)
async def get_renewal(renewal_id: UUID, sessions: SessionsDep) -> Journey:
    """The renewal's journey: status, each step with its time and owning tool, the failing tool and
    error code, a stall and the tool that owns the missing step, and the request's trace id."""
    found = await handlers.journey(sessions, renewal_id)
    if found is None:
        raise _not_found("renewal_id")
    return _journey(found)


@http.get(
    "/renewals/by-idempotency-key/{idempotency_key}",
    response_model=Journey,
    responses=NOT_FOUND,
    tags=["operations"],
)
async def get_renewal_by_key(idempotency_key: str, sessions: SessionsDep) -> Journey:
    """The journey of the renewal requested with this Idempotency-Key (over HTTP or Kafka)."""
    found = await handlers.journey_for_key(sessions, idempotency_key)
    if found is None:
        raise _not_found("Idempotency-Key")
    return _journey(found)
