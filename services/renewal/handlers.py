"""Use cases of the renewal service: request a renewal, record the journey's steps, find stalls, list
renewals for SREs.

Requesting saves the renewal and stages its ``renewal requested`` event in the outbox in one
transaction (plumbing.outbox): both are saved or neither. The outbox relay publishes the event, and the
ledger reads it back from Kafka like every other step, so a renewal whose event is not on Kafka yet is
``accepted`` (and stalls on meds). A request repeated with the same Idempotency-Key, or for a
prescription whose renewal is still open, finds the committed renewal and stages nothing.

The renewal flow's feature flag, the flag of the prescription's EHR (and the Veteran's rollout
cohort) are evaluated once, when a request makes a new renewal: a renewal accepted while the flags
were on finishes if one is turned off, and a repeat of its request answers it.

Recording a step records the event's id in the inbox in the same transaction, so a redelivered event
has no second effect.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.flags import RENEWAL_FLOW, RENEWAL_FLOW_ORACLE_HEALTH, RENEWAL_FLOW_VISTA
from plumbing.outbox import mark_processed, processed, stage
from schemas.events import RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Cohort, Ehr, Tool
from services.renewal import domain
from services.renewal.adapters import ledger
from services.renewal.adapters.ledger import RenewalRow, StepRow
from services.renewal.domain import Eligibility, Refusal, Status, Step, StepRecord

Sessions = async_sessionmaker[AsyncSession]
Source = Literal["http", "kafka"]

RENEWAL_FLOW_FOR = {Ehr.VISTA: RENEWAL_FLOW_VISTA, Ehr.ORACLE_HEALTH: RENEWAL_FLOW_ORACLE_HEALTH}
"""The flag that opens the renewal flow for an EHR's prescriptions."""

LEDGER_GROUP = "rxsm-renewal-ledger"
"""The consumer group the journey ledger reads its topics in, and the name of its inbox."""


class Flags(Protocol):
    """Per-Veteran feature flags (plumbing.flags.FeatureFlags)."""

    def is_on(self, flag: str, veteran_id: str) -> bool: ...

    def cohort(self, veteran_id: str) -> str: ...


class NotRenewable(Exception):
    """The request is refused; the refusal is recorded under ``renewal_id``.

    ``duplicate``: a repeat of a refused request (same Idempotency-Key), refused before.
    ``upstream_disagrees``: the record's ``isRenewable`` and rxsm's check of it disagree.
    """

    def __init__(
        self,
        renewal_id: UUID,
        refusal: Refusal,
        ehr: Ehr,
        cohort: Cohort,
        *,
        duplicate: bool,
        upstream_disagrees: bool,
    ) -> None:
        super().__init__(refusal.value)
        self.renewal_id = renewal_id
        self.refusal = refusal
        self.ehr = ehr
        self.cohort = cohort
        self.duplicate = duplicate
        self.upstream_disagrees = upstream_disagrees


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key already names a request for another Veteran or prescription."""


@dataclass(frozen=True)
class Accepted:
    renewal_id: UUID
    ehr: Ehr
    cohort: Cohort
    status: Status
    """Where the renewal is: ``accepted`` for a new one, maybe further on for a repeat."""
    duplicate: bool
    upstream_disagrees: bool = False
    """A new renewal whose record's ``isRenewable`` and rxsm's check of it disagree."""


@dataclass(frozen=True)
class Intake:
    """What is decided about a request that makes a new renewal, once, when it comes in."""

    eligibility: Eligibility
    flow_on: bool
    cohort: Cohort
    ehr_open: bool = True

    @property
    def refusal(self) -> Refusal | None:
        """The renewal flow being off for the Veteran, or closed for the prescription's EHR, refuses
        whatever the prescription."""
        if not self.flow_on:
            return Refusal.RENEWAL_FLOW_OFF
        if not self.ehr_open:
            return Refusal.RENEWAL_FLOW_OFF_FOR_EHR
        return self.eligibility.refusal

    @property
    def upstream_disagrees(self) -> bool:
        """Reported only for a request the flags let through to the eligibility rules."""
        return self.flow_on and self.ehr_open and self.eligibility.upstream_disagrees


def _now() -> datetime:
    return datetime.now(UTC)


async def request_renewal(
    request: RenewalRequest,
    sessions: Sessions,
    flags: Flags,
    *,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
    today: date,
) -> Accepted:
    """Accept a renewal once, with its ``renewal requested`` event staged for Kafka; record and raise
    the refusal of a request the flag or the eligibility rules refuse."""
    verdict = domain.check_renewal(request, today)
    row, intake = await _find_or_add(
        request, verdict, sessions, flags, source, idempotency_key, trace_id
    )
    if row.refusal is not None:
        raise NotRenewable(
            UUID(row.id),
            Refusal(row.refusal),
            Ehr(row.ehr),
            Cohort(row.cohort),
            duplicate=intake is None,
            upstream_disagrees=intake is not None and intake.upstream_disagrees,
        )
    return Accepted(
        UUID(row.id),
        Ehr(row.ehr),
        Cohort(row.cohort),
        Status(row.status),
        duplicate=intake is None,
        upstream_disagrees=intake is not None and intake.upstream_disagrees,
    )


async def _find_or_add(
    request: RenewalRequest,
    verdict: Eligibility,
    sessions: Sessions,
    flags: Flags,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
) -> tuple[RenewalRow, Intake | None]:
    """The committed renewal this request repeats (and None), or a new one (and its intake)."""
    try:
        async with sessions.begin() as session:
            existing = await _existing(session, request, verdict, idempotency_key)
            if existing is not None:
                return existing, None
            intake = Intake(
                verdict,
                flags.is_on(RENEWAL_FLOW, request.veteranId),
                Cohort(flags.cohort(request.veteranId)),
                flags.is_on(RENEWAL_FLOW_FOR[verdict.ehr], request.veteranId),
            )
            row = _new_renewal(request, intake, source, idempotency_key, trace_id)
            session.add(row)
            refusal = intake.refusal
            if refusal is not None:
                session.add(_refusal_step(row, refusal))
            else:
                stage(session, _requested(row, request, intake))
        return row, intake
    except IntegrityError:  # an identical request committed first
        async with sessions.begin() as session:
            existing = await _existing(session, request, verdict, idempotency_key)
        if existing is None:
            raise
        return existing, None


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
    intake: Intake,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
) -> RenewalRow:
    now = _now()
    refusal = intake.refusal
    return RenewalRow(
        id=str(uuid4()),
        veteran_id=request.veteranId,
        prescription_id=request.prescription.prescriptionId,
        ehr=intake.eligibility.ehr.value,
        cohort=intake.cohort.value,
        source=source,
        idempotency_key=idempotency_key,
        open_key=None
        if refusal
        else ledger.open_key(request.veteranId, request.prescription.prescriptionId),
        refusal=refusal.value if refusal else None,
        trace_id=trace_id,
        status=(Status.REFUSED if refusal else Status.ACCEPTED).value,
        status_since=now,
        created_at=now,
    )


def _requested(row: RenewalRow, request: RenewalRequest, intake: Intake) -> RenewalRequested:
    facilities = request.facilities
    return RenewalRequested(
        renewal_id=UUID(row.id),
        occurred_at=row.created_at,
        cohort=intake.cohort,
        veteran_id=request.veteranId,
        ehr=intake.eligibility.ehr,
        prescription=request.prescription,
        oh_stations=[f.stationNumber for f in facilities if f.ehr is Ehr.ORACLE_HEALTH],
        vista_stations=[f.stationNumber for f in facilities if f.ehr is Ehr.VISTA],
    )


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


@dataclass(frozen=True)
class Recorded:
    renewal_id: UUID
    record: StepRecord
    status: Status
    ehr: Ehr
    cohort: Cohort
    first_of_step: bool
    """The renewal reached this step for the first time (the funnel counts it once)."""


async def record_step(event: domain.LedgerEvent, sessions: Sessions) -> Recorded | None:
    """Record the step an event reports, with its id in the inbox, in one transaction; None when it
    is about no renewal of ours or was processed before."""
    (recorded,) = await record_steps([event], sessions)
    return recorded


async def record_steps(
    events: Sequence[domain.LedgerEvent], sessions: Sessions
) -> list[Recorded | None]:
    """``record_step`` for a batch of events, in one transaction of a few queries, whatever the
    batch's size: one result per event, in order."""
    observed = [domain.observed_step(event) for event in events]
    async with sessions.begin() as session:
        batch = await LedgerBatch.load(session, [o for o in observed if o is not None])
        return [batch.record(session, o) if o is not None else None for o in observed]


@dataclass
class LedgerBatch:
    """What a batch of events needs from the ledger, read in three queries: the renewals (locked,
    on PostgreSQL, in the order of their ids, so instances recording overlapping batches take turns
    without deadlock), their steps so far, and which events the inbox has seen."""

    renewals: dict[str, RenewalRow]
    steps: dict[str, list[StepRecord]]
    seen: set[str]

    @classmethod
    async def load(cls, session: AsyncSession, observed: list[domain.Observed]) -> "LedgerBatch":
        renewal_ids = sorted({str(o.renewal_id) for o in observed})
        renewals = {row.id: row for row in await ledger.renewals_locked(session, renewal_ids)}
        steps = await ledger.steps_of_each(session, list(renewals))
        seen = await processed(session, LEDGER_GROUP, [str(o.event_id) for o in observed])
        return cls(
            renewals,
            {renewal_id: [step.record for step in rows] for renewal_id, rows in steps.items()},
            seen,
        )

    def record(self, session: AsyncSession, observed: domain.Observed) -> Recorded | None:
        """Add the step and its inbox entry, and bring the renewal's status up to date."""
        row = self.renewals.get(str(observed.renewal_id))
        if row is None or str(observed.event_id) in self.seen:
            return None
        self.seen.add(str(observed.event_id))
        mark_processed(session, LEDGER_GROUP, observed.event_id)
        step = observed.record
        history = self.steps[row.id]
        first_of_step = all(earlier.step is not step.step for earlier in history)
        history.append(step)
        session.add(
            StepRow(
                event_id=str(observed.event_id),
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
        state = domain.journey(history)
        if state.status.value != row.status:
            row.status = state.status.value
            row.status_since = _now()
            row.stalled_at = row.stalled_step = row.stalled_tool = None
        if state.closed:
            row.open_key = None
        return Recorded(
            observed.renewal_id,
            step,
            state.status,
            Ehr(row.ehr),
            Cohort(row.cohort),
            first_of_step,
        )


@dataclass(frozen=True)
class Stall:
    renewal_id: UUID
    ehr: Ehr
    cohort: Cohort
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
            stalls.append(
                Stall(UUID(row.id), Ehr(row.ehr), Cohort(row.cohort), waiting, row.status_since)
            )
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


async def renewals(
    sessions: Sessions, statuses: frozenset[Status], since: datetime | None, limit: int
) -> list[Journey]:
    """Renewals shown in one of ``statuses`` (all when empty) since ``since``, most recent first."""
    async with sessions() as session:
        rows = await ledger.listed(session, statuses, since, limit)
        steps = await ledger.steps_of_each(session, [row.id for row in rows])
    return [
        Journey(row, steps[row.id], domain.journey([step.record for step in steps[row.id]]))
        for row in rows
    ]
