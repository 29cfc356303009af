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
from typing import Any, Literal, Protocol
from uuid import UUID, uuid4

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from plumbing.batches import Within, alone
from plumbing.database import in_transaction
from plumbing.flags import RENEWAL_FLOW, RENEWAL_FLOW_ORACLE_HEALTH, RENEWAL_FLOW_VISTA
from plumbing.outbox import EventTooLarge, SetAside, outbox_record, stage, stage_all
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


@dataclass(frozen=True)
class Ask:
    """One renewal request as it came in: over HTTP or from the ingress topic."""

    request: RenewalRequest
    source: Source
    idempotency_key: str | None
    trace_id: str | None


Outcome = Accepted | NotRenewable | IdempotencyKeyReused | EventTooLarge
"""What became of one request of a batch: accepted (new or a repeat), or why not (as a value; the
caller raises or reports it)."""


@dataclass(frozen=True)
class Intakes:
    """A batch's outcomes, one per request in order, and the outbox rows its transaction wrote
    (published right after it by the caller: ``OutboxRelay.publish``)."""

    outcomes: list[Outcome]
    staged: list[dict[str, Any]]


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
    raise it (as ``request_renewals`` for a batch of one)."""
    intakes = await request_renewals(
        [Ask(request, source, idempotency_key, trace_id)], sessions, flags, today
    )
    [outcome] = intakes.outcomes
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


INTEGRITY_RETRIES = 3
"""How often a batch is run again after an identical request committed first (found then)."""


async def request_renewals(
    asks: Sequence[Ask],
    sessions: Sessions,
    flags: Flags,
    today: date,
    within: Within = alone,
) -> Intakes:
    """Requests of one moment (an ingress batch, HTTP requests grouped) in one transaction of plain
    SQL: each repeat (same Idempotency-Key, or an open renewal of the prescription, in the database
    or earlier in the batch) finds its renewal and stages nothing; each new request saves its
    renewal or refusal with its event staged in the outbox (in ``within(i)``, so the event carries
    the i-th request's trace). A request whose event Kafka could never take is refused before
    anything of it is saved (``EventTooLarge``), one reusing another request's Idempotency-Key
    too; the rest of the batch is not held up by either. An identical request committed by
    another transaction first (``IntegrityError``) has the batch run again, and found."""
    verdicts = [domain.check_renewal(ask.request, today) for ask in asks]
    engine: AsyncEngine = sessions.kw["bind"]
    for attempt in range(INTEGRITY_RETRIES + 1):
        try:
            return await in_transaction(
                engine, lambda sync: _intake_batch(sync, asks, verdicts, flags, within)
            )
        except IntegrityError:
            if attempt == INTEGRITY_RETRIES:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Found:
    """A renewal row as the batch reads or writes it."""

    id: str
    veteran_id: str
    prescription_id: str
    ehr: str
    cohort: str
    idempotency_key: str | None
    open_key: str | None
    refusal: str | None
    status: str
    stalled_at: datetime | None
    new: bool


RENEWALS = RenewalRow.__table__
FOUND_COLUMNS = [RENEWALS.c[name] for name in _Found.__dataclass_fields__ if name != "new"]


def _intake_batch(
    connection: Connection,
    asks: Sequence[Ask],
    verdicts: Sequence[Eligibility],
    flags: Flags,
    within: Within,
) -> Intakes:
    keys = {ask.idempotency_key for ask in asks if ask.idempotency_key is not None}
    open_keys = {
        ledger.open_key(ask.request.veteranId, ask.request.prescription.prescriptionId)
        for ask, verdict in zip(asks, verdicts, strict=True)
        if verdict.renewable
    }
    by_key = _read(connection, RENEWALS.c.idempotency_key, keys)
    by_open = _read(connection, RENEWALS.c.open_key, open_keys)
    found: list[_Found | Outcome | tuple[_Found, Intake]] = []
    rows: list[dict[str, Any]] = []
    staged: list[dict[str, Any]] = []
    for index, (ask, verdict) in enumerate(zip(asks, verdicts, strict=True)):
        request, key = ask.request, ask.idempotency_key
        same = (request.veteranId, request.prescription.prescriptionId)
        existing = by_key.get(key) if key is not None else None
        if existing is not None and (existing.veteran_id, existing.prescription_id) != same:
            found.append(IdempotencyKeyReused())
            continue
        if existing is None and verdict.renewable:
            existing = by_open.get(ledger.open_key(*same))
        if existing is not None:
            found.append(existing)
            continue
        intake = Intake(
            verdict,
            flags.is_on(RENEWAL_FLOW, request.veteranId),
            Cohort(flags.cohort(request.veteranId)),
            flags.is_on(RENEWAL_FLOW_FOR[verdict.ehr], request.veteranId),
        )
        row = _new_renewal(request, intake, ask.source, key, ask.trace_id)
        refusal = intake.refusal
        event = (
            _refused(row, request, refusal)
            if refusal is not None
            else _requested(row, request, intake)
        )
        try:
            with within(index):
                staged.append(outbox_record(event))
        except EventTooLarge as error:
            found.append(error)
            continue
        rows.append(row)
        made = _found(row, new=True)
        if key is not None:
            by_key[key] = made
        if made.open_key is not None:
            by_open[made.open_key] = made
        found.append((made, intake))
    if rows:
        connection.execute(insert(RenewalRow), rows)
        stage_all(connection, staged)
    pending = [f.id for f in found if isinstance(f, _Found) and f.status == ACCEPTED]
    deliveries = ledger.deliveries(connection, pending)
    return Intakes([_outcome(f, deliveries) for f in found], staged)


ACCEPTED = IntakeStatus.ACCEPTED.value


def _read(connection: Connection, column: Any, values: set[str]) -> dict[str, _Found]:
    if not values:
        return {}
    result = connection.execute(select(*FOUND_COLUMNS).where(column.in_(values)))
    return {getattr(row, column.name): _Found(**row._asdict(), new=False) for row in result}


def _found(row: dict[str, Any], *, new: bool) -> _Found:
    return _Found(
        **{name: row[name] for name in _Found.__dataclass_fields__ if name != "new"}, new=new
    )


def _outcome(
    found: _Found | Outcome | tuple[_Found, Intake], deliveries: dict[str, ledger.Delivery]
) -> Outcome:
    if isinstance(found, tuple):
        row, intake = found
        return _answer(row, intake, IntakeStatus.ACCEPTED)
    if not isinstance(found, _Found):
        return found
    return _answer(found, None, _status_found(found, deliveries))


def _answer(row: _Found, intake: Intake | None, status: IntakeStatus) -> Outcome:
    disagrees = intake is not None and intake.upstream_disagrees
    if row.refusal is not None:
        return NotRenewable(
            UUID(row.id),
            Refusal(row.refusal),
            Ehr(row.ehr),
            Cohort(row.cohort),
            duplicate=intake is None,
            upstream_disagrees=disagrees,
        )
    return Accepted(
        UUID(row.id),
        Ehr(row.ehr),
        Cohort(row.cohort),
        status,
        duplicate=intake is None,
        upstream_disagrees=disagrees,
    )


def _status_found(row: _Found, deliveries: dict[str, ledger.Delivery]) -> IntakeStatus:
    """``_status`` of a row the batch found (its delivery read with the batch's)."""
    if row.status not in INTAKE_STATUSES:
        return IntakeStatus.REQUESTED
    if row.status != ACCEPTED:
        return IntakeStatus(row.status)
    if row.new:
        return IntakeStatus.ACCEPTED
    match deliveries.get(row.id, "published"):
        case "pending":
            return IntakeStatus.STALLED if row.stalled_at is not None else IntakeStatus.ACCEPTED
        case "set_aside":
            return IntakeStatus.FAILED
        case _:
            return IntakeStatus.REQUESTED


def _new_renewal(
    request: RenewalRequest,
    intake: Intake,
    source: Source,
    idempotency_key: str | None,
    trace_id: str | None,
) -> dict[str, Any]:
    now = _now()
    refusal = intake.refusal
    return {
        "id": str(uuid4()),
        "veteran_id": request.veteranId,
        "prescription_id": request.prescription.prescriptionId,
        "ehr": intake.eligibility.ehr.value,
        "cohort": intake.cohort.value,
        "source": source,
        "idempotency_key": idempotency_key,
        "open_key": None
        if refusal
        else ledger.open_key(request.veteranId, request.prescription.prescriptionId),
        "refusal": refusal.value if refusal else None,
        "failure": None,
        "trace_id": trace_id,
        "status": (IntakeStatus.REFUSED if refusal else IntakeStatus.ACCEPTED).value,
        "status_since": now,
        "created_at": now,
        "stalled_at": None,
        "stalled_step": None,
        "stalled_tool": None,
    }


def _requested(row: dict[str, Any], request: RenewalRequest, intake: Intake) -> RenewalRequested:
    facilities = request.facilities
    return RenewalRequested(
        renewal_id=UUID(row["id"]),
        occurred_at=row["created_at"],
        cohort=intake.cohort,
        veteran_id=request.veteranId,
        ehr=intake.eligibility.ehr,
        prescription=request.prescription,
        oh_stations=[f.stationNumber for f in facilities if f.ehr is Ehr.ORACLE_HEALTH],
        vista_stations=[f.stationNumber for f in facilities if f.ehr is Ehr.VISTA],
        source="kafka" if row["source"] == "kafka" else "http",
        idempotency_key=row["idempotency_key"],
    )


def _refused(row: dict[str, Any], request: RenewalRequest, refusal: Refusal) -> RenewalRefused:
    """The refusal for the journey service: its code, never the prescription."""
    return RenewalRefused(
        renewal_id=UUID(row["id"]),
        occurred_at=row["created_at"],
        cohort=Cohort(row["cohort"]),
        veteran_id=request.veteranId,
        ehr=Ehr(row["ehr"]),
        code=refusal.value,
        source="kafka" if row["source"] == "kafka" else "http",
        idempotency_key=row["idempotency_key"],
    )


INTAKE_STATUSES = frozenset(status.value for status in IntakeStatus)


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


async def close_renewals(events: Sequence[RenewalClosed], sessions: Sessions) -> list[bool]:
    """The journey service says these renewals closed: their prescriptions may be requested anew
    (a redelivered event changes nothing more), in one transaction. One answer per event: False
    for a renewal this intake does not have."""
    closings = [(str(event.renewal_id), event.status) for event in events]
    at = _now()
    here = await in_transaction(sessions.kw["bind"], lambda sync: ledger.close(sync, closings, at))
    return [renewal_id in here for renewal_id, _ in closings]


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
