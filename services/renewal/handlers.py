"""Use cases of the renewal service: request a renewal, record the journey's steps, find stalls.

Requesting commits the renewal first and publishes ``renewal requested`` after. A request repeated with
the same Idempotency-Key, or for a prescription whose renewal is still open, finds the committed
renewal: it publishes the same event only if an earlier publish failed (or crashed and its lease ran
out), never while another publish of it is in flight, and never once one succeeded.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.publishing import Publish
from schemas.events import RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr, Tool
from services.renewal import domain
from services.renewal.adapters import ledger
from services.renewal.adapters.ledger import RenewalRow, StepRow
from services.renewal.domain import Eligibility, Refusal, Status, Step, StepRecord

Sessions = async_sessionmaker[AsyncSession]
Source = Literal["http", "kafka"]

PUBLISH_LEASE = timedelta(seconds=60)
"""How long a publish in flight keeps repeats of its request from publishing; longer than a publish
may take, so only a request that crashed mid-publish is taken over."""


class NotRenewable(Exception):
    """The prescription can't be renewed; the refusal is recorded under ``renewal_id``."""

    def __init__(self, renewal_id: UUID, refusal: Refusal, eligibility: Eligibility) -> None:
        super().__init__(refusal.value)
        self.renewal_id = renewal_id
        self.refusal = refusal
        self.eligibility = eligibility


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key already names a request for another Veteran or prescription."""


class NotQueued(Exception):
    """The renewal is saved but its event could not be published; the same request retries it."""

    def __init__(self, renewal_id: UUID) -> None:
        super().__init__(str(renewal_id))
        self.renewal_id = renewal_id


@dataclass(frozen=True)
class Accepted:
    renewal_id: UUID
    ehr: Ehr
    status: Status
    """Where the renewal is: ``requested`` for a new one, further on for a repeat."""
    duplicate: bool


def _now() -> datetime:
    return datetime.now(UTC)


async def request_renewal(
    request: RenewalRequest,
    sessions: Sessions,
    publish: Publish,
    *,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
    today: date,
) -> Accepted:
    """Accept a renewable prescription's renewal once and publish ``renewal requested``; record and
    raise the refusal of one that isn't renewable."""
    verdict = domain.check_renewal(request, today)
    row, created = await _find_or_add(request, verdict, sessions, source, idempotency_key, trace_id)
    if row.refusal is not None:
        raise NotRenewable(UUID(row.id), Refusal(row.refusal), verdict)
    status = Status(row.status)
    if row.requested_event is not None and (created or await _claim_publish(sessions, row)):
        await _publish(sessions, publish, RenewalRequested.model_validate(row.requested_event))
        status = Status.REQUESTED
    return Accepted(UUID(row.id), Ehr(row.ehr), status, duplicate=not created)


async def _claim_publish(sessions: Sessions, row: RenewalRow) -> bool:
    """Whether this repeat should publish: the renewal isn't published and no one else is on it."""
    if row.published_at is not None:
        return False
    async with sessions.begin() as session:
        return await ledger.claim_publish(session, row.id, _now(), PUBLISH_LEASE)


async def _publish(sessions: Sessions, publish: Publish, event: RenewalRequested) -> None:
    try:
        await publish(event)
    except Exception as error:
        async with sessions.begin() as session:
            row = await session.get(RenewalRow, str(event.renewal_id))
            if row is not None:
                row.publishing_since = None
        raise NotQueued(event.renewal_id) from error
    await _mark_published(sessions, event)


async def _find_or_add(
    request: RenewalRequest,
    verdict: Eligibility,
    sessions: Sessions,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
) -> tuple[RenewalRow, bool]:
    """The committed renewal this request repeats, or a new one (and whether it is new)."""
    try:
        async with sessions.begin() as session:
            existing = await _existing(session, request, verdict, idempotency_key)
            if existing is not None:
                return existing, False
            row = _new_renewal(request, verdict, source, idempotency_key, trace_id)
            session.add(row)
            if verdict.refusal is not None:
                session.add(_refusal_step(row, verdict.refusal))
        return row, True
    except IntegrityError:  # an identical request committed first
        async with sessions.begin() as session:
            existing = await _existing(session, request, verdict, idempotency_key)
        if existing is None:
            raise
        return existing, False


async def _existing(
    session: AsyncSession, request: RenewalRequest, verdict: Eligibility, key: str | None
) -> RenewalRow | None:
    if key is not None:
        row = await ledger.by_idempotency_key(session, key)
        if row is not None:
            same = (row.veteran_id, row.prescription_id) == (
                request.veteranId,
                request.prescription.prescriptionId,
            )
            if not same:
                raise IdempotencyKeyReused()
            return row
    if not verdict.renewable:
        return None
    return await ledger.open_renewal(
        session, ledger.open_key(request.veteranId, request.prescription.prescriptionId)
    )


def _new_renewal(
    request: RenewalRequest,
    verdict: Eligibility,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
) -> RenewalRow:
    now = _now()
    renewal_id = uuid4()
    rx = request.prescription
    row = RenewalRow(
        id=str(renewal_id),
        veteran_id=request.veteranId,
        prescription_id=rx.prescriptionId,
        ehr=verdict.ehr.value,
        source=source,
        idempotency_key=idempotency_key,
        trace_id=trace_id,
        created_at=now,
    )
    if verdict.refusal is not None:
        row.refusal = verdict.refusal.value
        row.status = Status.REFUSED.value
        row.status_since = now
        return row
    event = RenewalRequested(
        renewal_id=renewal_id,
        occurred_at=now,
        veteran_id=request.veteranId,
        ehr=verdict.ehr,
        prescription=rx,
        oh_stations=[f.stationNumber for f in request.facilities if f.ehr is Ehr.ORACLE_HEALTH],
        vista_stations=[f.stationNumber for f in request.facilities if f.ehr is Ehr.VISTA],
    )
    row.requested_event = event.model_dump(mode="json")
    row.open_key = ledger.open_key(request.veteranId, rx.prescriptionId)
    row.publishing_since = now
    row.status = Status.ACCEPTED.value
    row.status_since = now
    return row


def _refusal_step(row: RenewalRow, refusal: Refusal) -> StepRow:
    return StepRow(
        event_id=str(uuid4()),
        renewal_id=row.id,
        step=Step.REFUSED.value,
        tool=Tool.MEDS.value,
        occurred_at=row.created_at,
        recorded_at=row.created_at,
        error_code=refusal.value,
    )


async def _mark_published(sessions: Sessions, event: RenewalRequested) -> None:
    async with sessions.begin() as session:
        row = await session.get(RenewalRow, str(event.renewal_id))
        if row is None:
            return
        row.published_at = row.published_at or _now()
        await _record(
            session, row, event.event_id, StepRecord(Step.REQUESTED, Tool.MEDS, event.occurred_at)
        )


async def _record(
    session: AsyncSession, row: RenewalRow, event_id: UUID, step: StepRecord
) -> domain.JourneyState | None:
    """Add the step (once per event id) and bring the renewal's status up to date."""
    if await session.get(StepRow, str(event_id)) is not None:
        return None
    session.add(
        StepRow(
            event_id=str(event_id),
            renewal_id=row.id,
            step=step.step.value,
            tool=step.tool.value,
            occurred_at=step.at,
            recorded_at=_now(),
            error_code=step.error_code,
            retryable=step.retryable,
            detail=step.detail,
            source_topic=step.source_topic,
        )
    )
    await session.flush()
    state = domain.journey([s.record for s in await ledger.steps_of(session, row.id)])
    if state.status.value != row.status:
        row.status = state.status.value
        row.status_since = _now()
        row.stalled_at = row.stalled_step = row.stalled_tool = None
    if state.closed:
        row.open_key = None
    return state


@dataclass(frozen=True)
class Recorded:
    renewal_id: UUID
    step: Step
    status: Status


async def record_step(event: domain.LedgerEvent, sessions: Sessions) -> Recorded | None:
    """Record the step a downstream event reports; None when it is about no renewal of ours or was
    recorded before."""
    observed = domain.observed_step(event)
    if observed is None:
        return None
    async with sessions.begin() as session:
        row = await session.get(RenewalRow, str(observed.renewal_id))
        if row is None:
            return None
        state = await _record(session, row, observed.event_id, observed.record)
    if state is None:
        return None
    return Recorded(observed.renewal_id, observed.record.step, state.status)


@dataclass(frozen=True)
class Stall:
    renewal_id: UUID
    ehr: Ehr
    waiting: domain.Waiting
    since: datetime


async def mark_stalled(sessions: Sessions, now: datetime, after: timedelta) -> list[Stall]:
    """Mark every renewal that has waited longer than ``after`` for an automatic step as stalled."""
    stalls = []
    async with sessions.begin() as session:
        candidates = await ledger.waiting_since_before(
            session, list(domain.NEXT_AUTOMATIC_STEP), now - after
        )
        for row in candidates:
            waiting = domain.stalled(Status(row.status), row.status_since, now, after)
            if waiting is None:
                continue
            row.stalled_at = now
            row.stalled_step = waiting.step.value
            row.stalled_tool = waiting.tool.value
            stalls.append(Stall(UUID(row.id), Ehr(row.ehr), waiting, row.status_since))
    return stalls


@dataclass(frozen=True)
class Journey:
    renewal: RenewalRow
    steps: Sequence[StepRow]
    state: domain.JourneyState


async def journey(sessions: Sessions, renewal_id: UUID) -> Journey | None:
    """A renewal with its steps and its state."""
    async with sessions() as session:
        row = await session.get(RenewalRow, str(renewal_id))
        if row is None:
            return None
        steps = await ledger.steps_of(session, row.id)
    return Journey(row, steps, domain.journey([step.record for step in steps]))


async def journey_for_key(sessions: Sessions, idempotency_key: str) -> Journey | None:
    """The renewal requested with this Idempotency-Key (a Kafka request's outcome, for instance)."""
    async with sessions() as session:
        row = await ledger.by_idempotency_key(session, idempotency_key)
    return None if row is None else await journey(sessions, UUID(row.id))
