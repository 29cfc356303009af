"""Exactly-once effects over at-least-once delivery (SQLite, and PostgreSQL in CI): each use case stages
its event in the outbox in the transaction of its change, the care-teams consumer's inbox makes a
redelivered event a no-op, and every event of a renewal carries the cohort its care-teams event had."""

from collections.abc import Callable
from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from plumbing.outbox import ProcessedEventRow
from plumbing.outbox import stage as real_stage
from schemas.events import DraftCreated, Event
from schemas.vocabulary import Cohort
from services.messaging import handlers
from services.messaging.adapters.storage import DraftRow
from services.messaging.domain import DraftEdit
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


def failing_after_staging(staged_ids: list[str]) -> Callable[[AsyncSession, Event], None]:
    """``stage`` that stages, then fails the transaction (once), remembering the event it staged."""

    def stage(session: AsyncSession, event: Event) -> None:
        real_stage(session, event)
        if not staged_ids:
            staged_ids.append(str(event.event_id))
            raise RuntimeError("the database went away before the commit")

    return stage


async def test_a_transaction_that_fails_leaves_no_event_and_no_inbox_mark(
    builtin: Messaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolled_back: list[str] = []
    monkeypatch.setattr(handlers, "stage", failing_after_staging(rolled_back))
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
