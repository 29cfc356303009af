"""Use cases of the journey service: record the steps events report, find stalls, answer where a
renewal is.

Recording a step records the event's id in the inbox in the same transaction, so a redelivered event
has no second effect. A renewal's journey starts at its request (or its refusal) as meds published it;
a step that arrives before it is kept and counts once the renewal is there. When a journey closes,
``renewal.closed`` is staged in the outbox in the same transaction, so meds learns it exactly when the
ledger does.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from plumbing.database import in_transaction
from plumbing.outbox import outbox_record, processed, record_processed, stage_all
from schemas.events import RenewalClosed
from schemas.vocabulary import Cohort, Ehr
from services.journey import domain
from services.journey.adapters import ledger
from services.journey.adapters.ledger import RenewalRow, StepRow, step_record
from services.journey.domain import Status, StepRecord

Sessions = async_sessionmaker[AsyncSession]

JOURNEY_GROUP = "rxsm-journey"
"""The consumer group the journey service reads its topics in, and the name of its inbox."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Recorded:
    renewal_id: UUID
    record: StepRecord
    status: Status
    ehr: Ehr
    cohort: Cohort | None
    counted: tuple[StepRecord, ...]
    """Steps this event makes the renewal reach for the first time (the funnel counts each once): the
    step itself, or, when the event opens the renewal, every step that came before it too."""
    closed: bool = False
    """The journey closed with this step: ``renewal.closed`` is staged for meds."""


Publish = Callable[[Sequence[dict[str, Any]]], None]
"""Publishes outbox rows right after the commit that wrote them (``OutboxRelay.publish_soon``)."""


async def record_step(
    event: domain.JourneyEvent,
    sessions: Sessions,
    trace_id: str | None = None,
    publish: Publish | None = None,
) -> Recorded | None:
    """Record the step an event reports, with its id in the inbox, in one transaction; None when it
    is about no renewal the journey knows yet, or was processed before."""
    (recorded,) = await record_steps([event], sessions, [trace_id], publish)
    return recorded


async def record_steps(
    events: Sequence[domain.JourneyEvent],
    sessions: Sessions,
    trace_ids: Sequence[str | None] | None = None,
    publish: Publish | None = None,
) -> list[Recorded | None]:
    """``record_step`` for a batch of events, in one transaction of a few queries, whatever the
    batch's size: one result per event, in order. ``trace_ids``: each event's trace (the request's,
    for the event that opens a renewal). The ``renewal.closed`` events the batch stages go to
    ``publish`` right after the commit (without it, to the relay's next sweep)."""
    traces = list(trace_ids) if trace_ids is not None else [None] * len(events)
    observed = [domain.observed_step(event) for event in events]
    engine: AsyncEngine = sessions.kw["bind"]

    writes = Writes()

    def work(connection: Connection) -> list[Recorded | None]:
        batch = LedgerBatch.load(connection, [o for o in observed if o is not None])
        recorded = [
            batch.record(writes, o, trace) if o is not None else None
            for o, trace in zip(observed, traces, strict=True)
        ]
        writes.save(connection, batch.renewals)
        return recorded

    results = await in_transaction(engine, work)
    if publish is not None:
        publish(writes.staged)
    return results


RENEWALS = cast(Table, RenewalRow.__table__)
STEPS = cast(Table, StepRow.__table__)
CHANGING = ("status", "status_since", "stalled_at", "stalled_step", "stalled_tool", "closed_at")
"""What recording a step changes of a renewal already in the ledger."""


Columns = dict[str, Any]
"""A row as plain columns (the batch path reads and writes rows without the ORM's instances)."""


@dataclass
class Writes:
    """What a batch writes, gathered while its events are recorded and saved together (plain SQL,
    one multi-row statement per table)."""

    processed: list[str] = field(default_factory=list)
    """The ids of the events recorded (the inbox)."""
    steps: list[Columns] = field(default_factory=list)
    opened: list[Columns] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    staged: list[Columns] = field(default_factory=list)

    def save(self, connection: Connection, renewals: dict[str, Columns]) -> None:
        record_processed(connection, JOURNEY_GROUP, self.processed)
        if self.opened:
            connection.execute(insert(RENEWALS), self.opened)
        if self.steps:
            connection.execute(insert(STEPS), self.steps)
        opened = {row["id"] for row in self.opened}
        changed = [renewals[renewal_id] for renewal_id in sorted(self.changed - opened)]
        if changed:
            connection.execute(
                update(RENEWALS)
                .where(RENEWALS.c.id == bindparam("renewal_id"))
                .values(
                    {
                        name: bindparam(f"new_{name}", type_=RENEWALS.c[name].type)
                        for name in CHANGING
                    }
                ),
                [
                    {"renewal_id": row["id"], **{f"new_{name}": row[name] for name in CHANGING}}
                    for row in changed
                ],
            )
        stage_all(connection, self.staged)


@dataclass
class LedgerBatch:
    """What a batch of events needs from the ledger, read in three queries: the renewals (locked,
    on PostgreSQL, in the order of their ids, so instances recording overlapping batches take turns
    without deadlock), their steps so far, and which events the inbox has seen."""

    renewals: dict[str, Columns]
    steps: dict[str, list[StepRecord]]
    seen: set[str]

    @classmethod
    def load(cls, connection: Connection, observed: list[domain.Observed]) -> "LedgerBatch":
        renewal_ids = sorted({str(o.renewal_id) for o in observed})
        event_ids = [str(o.event_id) for o in observed]
        renewals: dict[str, Columns] = {}
        steps: dict[str, list[StepRecord]] = {renewal_id: [] for renewal_id in renewal_ids}
        seen: set[str] = set()
        if renewal_ids:
            for row in connection.execute(
                select(RENEWALS)
                .where(RENEWALS.c.id.in_(renewal_ids))
                .order_by(RENEWALS.c.id)
                .with_for_update()
            ):
                renewals[row.id] = row._asdict()
            for row in connection.execute(
                select(STEPS)
                .where(STEPS.c.renewal_id.in_(renewal_ids))
                .order_by(STEPS.c.occurred_at, STEPS.c.recorded_at)
            ):
                steps[row.renewal_id].append(step_record(row))
            seen = processed(connection, JOURNEY_GROUP, event_ids)
        return cls(renewals, steps, seen)

    def record(
        self, writes: Writes, observed: domain.Observed, trace_id: str | None
    ) -> Recorded | None:
        """Add the step and its inbox entry, open the renewal if the event is its request, and
        bring its status up to date."""
        renewal_id = str(observed.renewal_id)
        if str(observed.event_id) in self.seen:
            return None
        self.seen.add(str(observed.event_id))
        writes.processed.append(str(observed.event_id))
        step = observed.record
        history = self.steps.setdefault(renewal_id, [])
        first_of_step = all(earlier.step is not step.step for earlier in history)
        closed_before = domain.journey(history).closed
        history.append(step)
        writes.steps.append(_step_row(renewal_id, observed.event_id, step))
        row = self.renewals.get(renewal_id)
        if row is None and observed.opening is not None:
            row = _new_renewal(renewal_id, observed.opening, trace_id)
            writes.opened.append(row)
            self.renewals[renewal_id] = row
            counted = tuple({s.step: s for s in reversed(history)}.values())
        elif row is not None:
            counted = (step,) if first_of_step else ()
        else:
            self._close_unopened(writes, observed, closed_before, history)
            return None
        state = domain.journey(history)
        if state.status.value != row["status"]:
            row.update(
                status=state.status.value,
                status_since=_now(),
                stalled_at=None,
                stalled_step=None,
                stalled_tool=None,
            )
            writes.changed.add(renewal_id)
        closes = state.closed and row["closed_at"] is None
        if closes:
            row["closed_at"] = _now()
            writes.changed.add(renewal_id)
            if state.status is not Status.REFUSED:  # meds refused it itself: nothing is open
                writes.staged.append(
                    outbox_record(_closed_event(observed.renewal_id, state.status, row["cohort"]))
                )
        return Recorded(
            observed.renewal_id,
            step,
            state.status,
            Ehr(row["ehr"]),
            Cohort(row["cohort"]) if row["cohort"] else None,
            counted,
            closed=closes,
        )

    @staticmethod
    def _close_unopened(
        writes: Writes,
        observed: domain.Observed,
        closed_before: bool,
        history: list[StepRecord],
    ) -> None:
        """A step that closes a renewal whose request the journey has not seen (it comes later, or
        it is no longer on Kafka: a renewal from before the journey service): meds is told all the
        same, so the prescription is never held open for good."""
        state = domain.journey(history)
        if state.closed and not closed_before and state.status is not Status.REFUSED:
            writes.staged.append(
                outbox_record(_closed_event(observed.renewal_id, state.status, None))
            )


def _step_row(renewal_id: str, event_id: UUID, step: StepRecord) -> Columns:
    return {
        "event_id": str(event_id),
        "renewal_id": renewal_id,
        "step": step.step.value,
        "tool": step.tool.value,
        "occurred_at": step.at,
        "recorded_at": _now(),
        "error_code": step.error_code,
        "retryable": step.retryable,
        "detail": step.detail,
        "source_topic": step.source_topic,
        "topic_owner": step.topic_owner.value if step.topic_owner else None,
        "refused_by": step.refused_by,
    }


def _new_renewal(renewal_id: str, opening: domain.Opening, trace_id: str | None) -> Columns:
    return {
        "id": renewal_id,
        "veteran_id": opening.veteran_id,
        "ehr": opening.ehr,
        "cohort": opening.cohort,
        "source": opening.source,
        "idempotency_key": opening.idempotency_key,
        "trace_id": trace_id,
        "requested_at": opening.requested_at,
        "status": Status.UNKNOWN.value,
        "status_since": _now(),
        "closed_at": None,
        "stalled_at": None,
        "stalled_step": None,
        "stalled_tool": None,
    }


def _closed_event(renewal_id: UUID, status: Status, cohort: str | None) -> RenewalClosed:
    return RenewalClosed.model_validate(
        {"renewal_id": renewal_id, "status": status.value, "cohort": cohort}
    )


@dataclass(frozen=True)
class Stall:
    renewal_id: UUID
    ehr: Ehr
    cohort: Cohort | None
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
                Stall(
                    UUID(row.id),
                    Ehr(row.ehr),
                    Cohort(row.cohort) if row.cohort else None,
                    waiting,
                    row.status_since,
                )
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
