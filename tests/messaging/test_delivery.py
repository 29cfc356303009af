"""Exactly-once effects over at-least-once delivery (SQLite, and PostgreSQL in CI): each use case stages
its event in the outbox in the transaction of its change, the care-teams consumer's inbox makes a
redelivered event a no-op, and every event of a renewal carries the cohort its care-teams event had.
Then the delivery of an Oracle Health message: how its status is polled, on a fake clock."""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from plumbing.outbox import OutboxRow, ProcessedEventRow
from plumbing.outbox import stage_all as real_stage_all
from plumbing.publishing import EVENT_TYPE_HEADER
from schemas.events import DraftCreated
from schemas.vocabulary import Cohort
from services.messaging import domain, handlers
from services.messaging.adapters.storage import DraftRow
from services.messaging.domain import DeliveryStatus, DraftEdit, PollSchedule, SmError
from services.messaging.handlers import INBOX, Messaging
from tests.messaging.conftest import OH_TEAM, VETERAN, FixedCohorts, Wakes, staged
from tests.messaging.test_use_cases import new_message, refused, resolved


async def drafts_of_renewal(deps: Messaging, renewal_id: object) -> int:
    async with deps.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(DraftRow).where(DraftRow.renewal_id == str(renewal_id))
        )
    return count or 0


async def inbox_holds(deps: Messaging, event_id: object) -> bool:
    async with deps.sessions() as session:
        return await session.get(ProcessedEventRow, (INBOX, str(event_id))) is not None


async def test_a_care_teams_event_delivered_twice_makes_one_draft_and_one_draft_created(
    builtin: Messaging,
) -> None:
    event = resolved()
    created = await handlers.create_renewal_draft(event, builtin)
    assert created is not None
    assert await handlers.create_renewal_draft(event, builtin) is None
    assert await drafts_of_renewal(builtin, event.renewal_id) == 1
    assert await staged(builtin, created.draft_id) == [created]
    assert await inbox_holds(builtin, event.event_id)


def failing_after_staging(
    staged_ids: list[str],
) -> Callable[[Connection, Sequence[dict[str, Any]]], None]:
    """``stage_all`` that stages, then fails the transaction (once), remembering the event it
    staged."""

    def stage_all(connection: Connection, records: Sequence[dict[str, Any]]) -> None:
        real_stage_all(connection, records)
        if not staged_ids and records:
            staged_ids.append(str(records[0]["event_id"]))
            raise RuntimeError("the database went away before the commit")

    return stage_all


async def test_a_transaction_that_fails_leaves_no_event_and_no_inbox_mark(
    builtin: Messaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolled_back: list[str] = []
    monkeypatch.setattr(handlers, "stage_all", failing_after_staging(rolled_back))
    event = resolved()
    with pytest.raises(RuntimeError):
        await handlers.create_renewal_draft(event, builtin)
    assert await drafts_of_renewal(builtin, event.renewal_id) == 0
    assert not await inbox_holds(builtin, event.event_id), "the redelivery will do the work"

    created = await handlers.create_renewal_draft(event, builtin)
    assert created is not None
    [only] = await staged(builtin, created.draft_id)
    assert str(only.event_id) != rolled_back[0], "the rolled-back event was never staged"


async def test_refused_changes_stage_nothing_and_the_relay_is_woken_after_commits(
    builtin: Messaging,
) -> None:
    wakes = builtin.notify
    assert isinstance(wakes, Wakes)
    draft_id = await new_message(builtin, OH_TEAM)
    assert wakes.count == 1
    for edit in (DraftEdit(subject="x" * 51), DraftEdit(recipient_id=4242, team_selection=None)):
        await refused(handlers.edit_draft(draft_id, VETERAN, edit, builtin))
    await refused(handlers.delete_draft(uuid4(), VETERAN, builtin))
    assert [event.event_type for event in await staged(builtin, draft_id)] == ["draft.created"]
    assert wakes.count == 1, "nothing committed, nothing to relay"

    await handlers.send_draft(draft_id, VETERAN, None, builtin)
    assert [event.event_type for event in await staged(builtin, draft_id)] == [
        "draft.created",
        "message.sent",
    ]
    assert wakes.count == 2


async def test_each_change_a_veteran_makes_is_published_right_after_its_commit(
    builtin: Messaging,
) -> None:
    handed: list[dict[str, Any]] = []
    deps = replace(builtin, publish=handed.extend)
    draft_id = await new_message(deps, OH_TEAM)
    await handlers.edit_draft(draft_id, VETERAN, DraftEdit(body="Please renew"), deps)
    await handlers.edit_draft(draft_id, VETERAN, DraftEdit(body="Please renew"), deps)
    await refused(handlers.edit_draft(draft_id, VETERAN, DraftEdit(subject="x" * 51), deps))
    await handlers.send_draft(draft_id, VETERAN, None, deps)
    await handlers.send_draft(draft_id, VETERAN, None, deps)
    other = await new_message(deps, OH_TEAM)
    await handlers.delete_draft(other, VETERAN, deps)

    async with deps.sessions() as session:
        committed = {
            row.event_id: row.headers[EVENT_TYPE_HEADER]
            for row in await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        }
    assert [committed.get(record["event_id"]) for record in handed] == [
        "draft.created",
        "draft.updated",
        "message.sent",
        "draft.created",
        "draft.deleted",
    ], "each committed change handed over once; an unchanged edit, a refused one, a resend: none"
    assert isinstance(builtin.notify, Wakes) and builtin.notify.count == 0, "the relay sleeps on"


@pytest.mark.parametrize("cohort", list(Cohort))
async def test_every_event_of_a_renewal_carries_its_care_teams_events_cohort(
    builtin: Messaging, cohort: Cohort
) -> None:
    assert isinstance(builtin.cohorts, FixedCohorts)
    builtin.cohorts.cohort_of_everyone = Cohort.NEW if cohort is Cohort.BASE else Cohort.BASE
    event = resolved().model_copy(update={"cohort": cohort})
    created = await handlers.create_renewal_draft(event, builtin)
    assert created is not None
    await handlers.edit_draft(created.draft_id, VETERAN, DraftEdit(body="Please renew"), builtin)
    await handlers.send_draft(created.draft_id, VETERAN, None, builtin)
    events = await staged(builtin, created.draft_id)
    assert [e.event_type for e in events] == ["draft.created", "draft.updated", "message.sent"]
    assert {e.cohort for e in events} == {cohort}, "the flags now say otherwise: not re-checked"


async def test_a_renewal_whose_event_has_no_cohort_takes_the_veterans_cohort(
    builtin: Messaging,
) -> None:
    assert isinstance(builtin.cohorts, FixedCohorts)
    builtin.cohorts.cohort_of_everyone = Cohort.BASE
    created = await handlers.create_renewal_draft(resolved(), builtin)
    assert created is not None and created.cohort is Cohort.BASE


async def test_a_draft_keeps_the_trace_context_of_the_span_that_created_it(
    builtin: Messaging,
) -> None:
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    with tracing.get_tracer("test").start_as_current_span("care teams process") as creating:
        created = await handlers.create_renewal_draft(resolved(), builtin)
    assert isinstance(created, DraftCreated)
    draft = await handlers.get_draft(created.draft_id, VETERAN, builtin)
    context = creating.get_span_context()
    assert draft.traceparent is not None
    assert draft.traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


MESSAGE_STATUS = (
    "vets-api lib/sm/client/message_status.rb (04f2427ade4b67fdaa53c6d8049c715d882b1f11)"
)


@dataclass
class FakeTime:
    """The polling's clock and sleep: no real waiting. Each status call takes ``call_seconds``."""

    call_seconds: float = 0.0
    now: float = 0.0
    polls: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


Poll = DeliveryStatus | str
"""A status SM answers, or the code of the error a poll fails with."""


def scripted(polls: list[Poll], time: FakeTime) -> Callable[[], Awaitable[DeliveryStatus]]:
    """SM's status calls answering ``polls`` in order, then PENDING for ever."""
    answers = iter(polls)

    async def status() -> DeliveryStatus:
        time.polls.append(time.now)
        time.now += time.call_seconds
        answer = next(answers, DeliveryStatus.PENDING)
        if isinstance(answer, DeliveryStatus):
            return answer
        raise domain.sm_error(answer)

    return status


VA_SCHEDULE = PollSchedule()
PENDING, SENT = DeliveryStatus.PENDING, DeliveryStatus.SENT


async def poll(
    polls: list[Poll], schedule: PollSchedule = VA_SCHEDULE, call_seconds: float = 0.0
) -> tuple[DeliveryStatus | str, list[float]]:
    """What the polling ends with (a final status, or an error's code), and when each poll began."""
    time = FakeTime(call_seconds)
    try:
        outcome: DeliveryStatus | str = await handlers.poll_until_final(
            scripted(polls, time), schedule, time.clock, time.sleep
        )
    except SmError as error:
        outcome = error.code
    return outcome, time.polls


@pytest.mark.parametrize(
    ("polls", "outcome", "count"),
    [
        ([SENT], SENT, 1),
        ([PENDING, DeliveryStatus.FAILED], DeliveryStatus.FAILED, 2),
        ([PENDING, DeliveryStatus.INVALID], DeliveryStatus.INVALID, 2),
        ([PENDING, PENDING, DeliveryStatus.UNKNOWN], DeliveryStatus.UNKNOWN, 3),
        ([DeliveryStatus.NOT_SUPPORTED], DeliveryStatus.NOT_SUPPORTED, 1),
        (["SM99", "SM904", SENT], SENT, 3),
        (["SM99", "SM99", "SM901"], "SM901", 3),
        (["SM99", "SM99", PENDING, "SM99", "SM99", SENT], SENT, 6),
        (["SM99", PENDING, "SM99", PENDING, "SM99", "SM99", "SM904"], "SM904", 7),
    ],
    ids=[
        "sent",
        "failed",
        "invalid",
        "unknown",
        "not supported",
        "two errors in a row, then sent",
        "three errors in a row",
        "a status resets the count",
        "three in a row after resets",
    ],
)
async def test_polling_ends_at_a_final_status_or_the_third_error_in_a_row(
    polls: list[Poll], outcome: DeliveryStatus | str, count: int
) -> None:
    """MESSAGE_STATUS ``poll_message_status``: returns at a terminal status (SENT FAILED INVALID
    UNKNOWN NOT_SUPPORTED; what each means for the send is ``delivery_failure``'s); an error in a
    poll is tolerated while ``consecutive_errors <= max_errors`` (2), the third in a row is raised
    (VA's recorded sequence 404, 404, SENT ends SENT); a poll answering a status resets the count."""
    assert await poll(polls) == (outcome, [float(n) for n in range(count)])


async def test_polling_gives_up_after_60_seconds_of_polls_every_second() -> None:
    """MESSAGE_STATUS: the first poll at once, then ``sleep interval_seconds`` (1) between polls,
    and ``GatewayTimeout`` once ``Time.zone.now >= deadline`` (60 s after the start)."""
    outcome, polls = await poll([])
    assert outcome == "oh_send_timeout"
    assert polls == [float(second) for second in range(60)]


async def test_the_time_status_calls_take_counts_against_the_bound() -> None:
    """The deadline is wall time from the start: polls that take 0.5 s start every 1.5 s."""
    outcome, polls = await poll([], call_seconds=0.5)
    assert outcome == "oh_send_timeout"
    assert polls == [1.5 * n for n in range(40)]


async def test_the_schedule_is_configurable() -> None:
    schedule = PollSchedule(interval=2.0, timeout=9.0, max_errors=0)
    assert await poll([], schedule) == ("oh_send_timeout", [0.0, 2.0, 4.0, 6.0, 8.0])
    assert await poll(["SM99"], schedule) == ("SM99", [0.0]), "no error tolerated"
