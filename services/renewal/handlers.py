"""Use cases of the renewal service: request a renewal, say where a request is until its event is on
Kafka, find the ones whose event never gets there, and let a prescription be requested anew once the
journey service says its renewal closed.

Requesting saves the renewal and stages its ``renewal requested`` event (a refusal: its ``renewal
refused``) in the outbox in one transaction (plumbing.outbox): both are saved or neither. The outbox
relay publishes the event; until it is on Kafka the renewal is ``accepted``, and one whose event does
not get there stalls on meds. The journey service follows the renewal from its event on. A request
repeated with the same Idempotency-Key, or for a prescription whose renewal is still open, finds the
committed renewal and stages nothing.

The renewal flow's feature flag, the flag of the prescription's EHR (and the Veteran's rollout
cohort) are evaluated once, when a request makes a new renewal: a renewal accepted while the flags
were on finishes if one is turned off, and a repeat of its request answers it.

A request whose event Kafka could never take is refused before it is accepted: staging it raises
``EventTooLarge`` and nothing is saved. One whose event Kafka refuses all the same (a broker with a
smaller limit) is set aside by the outbox relay, which has ``fail_unpublished`` fail the renewal on
meds in the same transaction: it is no longer open, and the journey service is told.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.flags import RENEWAL_FLOW, RENEWAL_FLOW_ORACLE_HEALTH, RENEWAL_FLOW_VISTA
from plumbing.outbox import SetAside, stage
from schemas.events import RenewalClosed, RenewalRefused, RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Cohort, Ehr, Tool
from services.renewal import domain
from services.renewal.adapters import ledger
from services.renewal.adapters.ledger import RenewalRow
from services.renewal.domain import Eligibility, IntakeStatus, Refusal

Sessions = async_sessionmaker[AsyncSession]
Source = Literal["http", "kafka"]

RENEWAL_FLOW_FOR = {Ehr.VISTA: RENEWAL_FLOW_VISTA, Ehr.ORACLE_HEALTH: RENEWAL_FLOW_ORACLE_HEALTH}
"""The flag that opens the renewal flow for an EHR's prescriptions."""


class Flags(Protocol):
    """Per-Veteran feature flags (plumbing.flags.FeatureFlags)."""

    def is_on(self, flag: str, veteran_id: str) -> bool: ...

    def cohort(self, veteran_id: str) -> str: ...


class NotRenewable(Exception):
    """The request is refused; the refusal is saved under ``renewal_id``, its event staged.

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
    status: IntakeStatus
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
    """Accept a renewal once, with its ``renewal requested`` event staged for Kafka; save the refusal
    of a request the flag or the eligibility rules refuse, with its ``renewal refused`` staged, and
    raise it."""
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
    status = IntakeStatus.ACCEPTED if intake is not None else await _status_of(sessions, row)
    return Accepted(
        UUID(row.id),
        Ehr(row.ehr),
        Cohort(row.cohort),
        status,
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
                stage(session, _refused(row, request, refusal))
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
        status=(IntakeStatus.REFUSED if refusal else IntakeStatus.ACCEPTED).value,
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
        source="kafka" if row.source == "kafka" else "http",
        idempotency_key=row.idempotency_key,
    )


def _refused(row: RenewalRow, request: RenewalRequest, refusal: Refusal) -> RenewalRefused:
    """The refusal for the journey service: its code, never the prescription."""
    return RenewalRefused(
        renewal_id=UUID(row.id),
        occurred_at=row.created_at,
        cohort=Cohort(row.cohort),
        veteran_id=request.veteranId,
        ehr=Ehr(row.ehr),
        code=refusal.value,
        source="kafka" if row.source == "kafka" else "http",
        idempotency_key=row.idempotency_key,
    )


INTAKE_STATUSES = frozenset(status.value for status in IntakeStatus)


async def _status_of(sessions: Sessions, row: RenewalRow) -> IntakeStatus:
    async with sessions() as session:
        return await _status(session, row)


async def _status(session: AsyncSession, row: RenewalRow) -> IntakeStatus:
    """Where a renewal is as the intake knows it: refused, or closed as the journey service said;
    else accepted (stalled, once found so) while its event waits in the outbox, and requested once
    it is on Kafka."""
    if row.status not in INTAKE_STATUSES:
        return (
            IntakeStatus.REQUESTED
        )  # a status of the ledger that ran here before the journey service
    if row.status != IntakeStatus.ACCEPTED.value:
        return IntakeStatus(row.status)
    match await ledger.delivery(session, row.id):
        case "pending":
            return IntakeStatus.STALLED if row.stalled_at is not None else IntakeStatus.ACCEPTED
        case "set_aside":
            return IntakeStatus.FAILED
        case "published":
            return IntakeStatus.REQUESTED


@dataclass(frozen=True)
class Stall:
    renewal_id: UUID
    ehr: Ehr
    cohort: Cohort
    since: datetime


async def mark_stalled(sessions: Sessions, now: datetime, after: timedelta) -> list[Stall]:
    """Mark every accepted renewal whose event has waited in the outbox longer than ``after`` as
    stalled on meds (once: a stall is reported when found)."""
    stalls = []
    async with sessions.begin() as session:
        for row in await ledger.unpublished_since_before(session, now - after):
            if not domain.stalled(row.created_at, now, after):
                continue
            row.stalled_at = now
            row.stalled_step = domain.AWAITED
            row.stalled_tool = Tool.MEDS.value
            stalls.append(Stall(UUID(row.id), Ehr(row.ehr), Cohort(row.cohort), row.created_at))
    return stalls


@dataclass(frozen=True)
class Unpublished:
    """A renewal failed on meds because Kafka can never take its ``renewal requested``."""

    renewal_id: UUID
    ehr: Ehr
    cohort: Cohort
    reason: str


async def fail_unpublished(
    session: AsyncSession, set_aside: Sequence[SetAside]
) -> list[Unpublished]:
    """In the outbox relay's transaction, for each ``renewal requested`` Kafka refused for good: the
    renewal fails on meds with the outbox's reason (``failure``), and is no longer open, so a new
    request for the prescription starts a new renewal; its ``renewal refused`` (ids and the reason
    as its code, small enough for any Kafka) tells the journey service it failed on meds."""
    failed = []
    for event in set_aside:
        if event.event_type != "renewal.requested":
            continue
        row = await session.get(RenewalRow, event.key, with_for_update=True)
        if row is None or row.status != IntakeStatus.ACCEPTED.value:
            continue
        now = _now()
        row.open_key = None
        row.status, row.status_since, row.failure = IntakeStatus.FAILED.value, now, event.reason
        stage(
            session,
            RenewalRefused(
                renewal_id=UUID(row.id),
                occurred_at=now,
                cohort=Cohort(row.cohort),
                veteran_id=row.veteran_id,
                ehr=Ehr(row.ehr),
                code=event.reason,
                source="kafka" if row.source == "kafka" else "http",
                idempotency_key=row.idempotency_key,
            ),
        )
        failed.append(Unpublished(UUID(row.id), Ehr(row.ehr), Cohort(row.cohort), event.reason))
    return failed


async def close_renewal(event: RenewalClosed, sessions: Sessions) -> bool:
    """The journey service says the renewal closed: its prescription may be requested anew (a
    redelivered event changes nothing more). False for a renewal this intake does not have."""
    async with sessions.begin() as session:
        return await ledger.close(session, str(event.renewal_id), event.status, _now())


@dataclass(frozen=True)
class Request:
    """A renewal request as the intake answers for it."""

    renewal: RenewalRow
    status: IntakeStatus


async def renewal(sessions: Sessions, renewal_id: UUID) -> Request | None:
    """The renewal request with this id, and where it is."""
    async with sessions() as session:
        row = await session.get(RenewalRow, str(renewal_id))
        return None if row is None else Request(row, await _status(session, row))


async def renewal_for_key(sessions: Sessions, idempotency_key: str) -> Request | None:
    """The renewal requested with this Idempotency-Key (a Kafka request's outcome, for instance)."""
    async with sessions() as session:
        row = await ledger.by_idempotency_key(session, idempotency_key)
        return None if row is None else Request(row, await _status(session, row))
