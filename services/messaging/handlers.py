"""Use cases of the messaging service: prefill the renewal draft, start a new message, edit, delete
and send drafts, and read them.

Each use case stages its event in the outbox in the same transaction as its change (``stage``), and
publishes it right after the commit (``publish``; the relay sweeps up what that missed): an event is
published if and only if its change was committed. The care-teams consumer records each event id in the inbox in the same transaction as the
draft it creates, so a redelivered event has no second effect.

Sending is idempotent end to end: one send row per draft (its primary key) says where the send stands,
and every call to SM carries the attempt's idempotency key, so a retried send, a double click or a crash
between SM's answer and the commit all end in one message, and one ``message.sent``. The draft is gone
once sent, as in SM.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, cast
from uuid import UUID, uuid4

from sqlalchemy import Table, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.batches import Within, alone
from plumbing.database import in_transaction
from plumbing.logs import get_logger
from plumbing.outbox import outbox_record, processed, record_processed, stage, stage_all
from schemas.events import (
    CareTeamsOutcome,
    CareTeamsResolved,
    CareTeamUnavailable,
    DraftCreated,
    DraftDeleted,
    DraftUpdated,
    MessageSendFailed,
    MessageSent,
    Platform,
    TeamSelection,
)
from schemas.records import CareTeam
from schemas.vocabulary import Category, Cohort, Ehr, UnavailableReason
from services.messaging import domain
from services.messaging.adapters import storage
from services.messaging.adapters.storage import DraftRow, NoCareTeamRow, SendRow
from services.messaging.adapters.tracing import current_traceparent
from services.messaging.adapters.upstream import OutgoingMessage, SecureMessaging
from services.messaging.domain import (
    DeliveryStatus,
    DraftContent,
    DraftEdit,
    DraftState,
    Polling,
    PollSchedule,
    Recipients,
    SendState,
    SmError,
)
from services.messaging.settings import IDENTITY

Sessions = async_sessionmaker[AsyncSession]

INBOX = IDENTITY.consumer_group
"""The inbox name the care-teams consumer records processed event ids under (main and retry topics)."""

log = get_logger(IDENTITY)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Cohorts(Protocol):
    """The rollout cohort a Veteran is in now (``plumbing.flags.FeatureFlags``)."""

    def cohort(self, veteran_id: str) -> str: ...


@dataclass(frozen=True)
class Messaging:
    """What the use cases need: the database, SM, how OH sends are polled, the rollout cohorts, how
    to wake the outbox relay after a commit, and the clock and sleep the polling keeps time with."""

    sessions: Sessions
    upstream: SecureMessaging
    polling: PollSchedule
    cohorts: Cohorts
    notify: Callable[[], None]
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    publish: Callable[[Sequence[dict[str, Any]]], None] | None = None
    """Publishes outbox rows right after the commit that wrote them (``OutboxRelay.publish_soon``);
    without it, the relay is woken (``notify``)."""


def _draft_fields(draft: DraftRow) -> dict[str, object]:
    content = draft.content()
    return {
        "renewal_id": UUID(draft.renewal_id) if draft.renewal_id else None,
        "draft_id": UUID(draft.id),
        "veteran_id": draft.veteran_id,
        "ehr": content.ehr,
        "category": content.category,
        "recipient_id": content.recipient_id,
        "station_number": content.station_number,
        "team_selection": content.team_selection,
        "platform": content.platform,
        "cohort": Cohort(draft.cohort),
    }


def _created(draft: DraftRow) -> DraftCreated:
    return DraftCreated.model_validate({**_draft_fields(draft), "occurred_at": draft.created_at})


def _suggested_team(event: CareTeamsResolved) -> CareTeam | None:
    for system in event.care_systems:
        for team in system.teams:
            if team.triageTeamId == event.suggested_team_id:
                return team
    return None


async def create_renewal_draft(event: CareTeamsResolved, deps: Messaging) -> DraftCreated | None:
    """The prefilled renewal draft, addressed to the suggested team (or to nobody yet), in the
    journey's cohort; once per renewal, even after the draft was sent or deleted. None when this
    event was processed already, or the renewal has its draft."""
    (created,) = await create_renewal_drafts([event], deps, alone)
    return created


async def record_no_care_team(event: CareTeamUnavailable, deps: Messaging) -> None:
    """Record why no care team could receive the renewal (once; nothing for an event seen before)."""
    await create_renewal_drafts([event], deps, alone)


async def create_renewal_drafts(
    outcomes: Sequence[CareTeamsOutcome], deps: Messaging, within: Within
) -> list[DraftCreated | None]:
    """``create_renewal_draft`` for a batch of care-team outcomes, in one transaction of three
    queries and one flush, whatever the batch's size: one result per outcome, in order. "No care
    team" gets no draft (None): its reason is recorded, so the Veteran asking for the draft is told
    why there is none. Each draft is made within ``within(i)``, so it and its event carry the trace
    of the outcome that asked for it."""
    made = await in_transaction(
        deps.sessions.kw["bind"], lambda sync: _draft_batch(sync, outcomes, deps, within)
    )
    _publish(deps, made.staged)
    return made.results


def _publish(deps: Messaging, staged: Sequence[dict[str, Any]]) -> None:
    """Publish outbox rows just committed (or wake the relay, when there is no publisher)."""
    if deps.publish is not None:
        deps.publish(staged)
    else:
        deps.notify()


@dataclass(frozen=True)
class Drafted:
    results: list[DraftCreated | None]
    staged: list[dict[str, Any]]
    """The outbox rows written (published right after the commit: ``Messaging.publish``)."""


DRAFTS = cast(Table, DraftRow.__table__)
NO_CARE_TEAM = cast(Table, NoCareTeamRow.__table__)


def _draft_batch(
    connection: Connection,
    outcomes: Sequence[CareTeamsOutcome],
    deps: Messaging,
    within: Within,
) -> Drafted:
    """The batch's reads and writes in plain SQL on one connection: three queries, then one
    multi-row insert per table."""
    renewal_ids = [str(event.renewal_id) for event in outcomes]
    event_ids = [str(event.event_id) for event in outcomes]
    seen = processed(connection, INBOX, event_ids)
    drafted = {
        renewal_id
        for renewal_id in connection.scalars(
            select(DRAFTS.c.renewal_id).where(DRAFTS.c.renewal_id.in_(renewal_ids))
        )
        if renewal_id is not None
    }
    unavailable = set(
        connection.scalars(
            select(NO_CARE_TEAM.c.renewal_id).where(NO_CARE_TEAM.c.renewal_id.in_(renewal_ids))
        )
    )
    now = datetime.now(UTC)
    results: list[DraftCreated | None] = []
    inbox: list[str] = []
    drafts: list[dict[str, Any]] = []
    no_care_team: list[dict[str, Any]] = []
    staged: list[dict[str, Any]] = []
    for index, event in enumerate(outcomes):
        event_id = str(event.event_id)
        if event_id in seen:
            results.append(None)
            continue
        seen.add(event_id)
        inbox.append(event_id)
        renewal_id = str(event.renewal_id)
        if isinstance(event, CareTeamUnavailable):
            if renewal_id not in unavailable | drafted:
                unavailable.add(renewal_id)
                row = _no_care_team(event)
                row.recorded_at = now
                no_care_team.append(_columns(row, NO_CARE_TEAM))
            results.append(None)
            continue
        if renewal_id in drafted:
            results.append(None)
            continue
        drafted.add(renewal_id)
        with within(index):
            draft = _renewal_draft(event, deps)
            created = _created(draft)
            staged.append(outbox_record(created))
        drafts.append(_columns(draft, DRAFTS))
        results.append(created)
    record_processed(connection, INBOX, inbox)
    for table, rows in ((NO_CARE_TEAM, no_care_team), (DRAFTS, drafts)):
        if rows:
            connection.execute(insert(table), rows)
    stage_all(connection, staged)
    return Drafted(results, staged)


def _columns(row: object, table: Table) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in table.columns}


def _no_care_team(event: CareTeamUnavailable) -> NoCareTeamRow:
    return NoCareTeamRow(
        renewal_id=str(event.renewal_id),
        veteran_id=event.veteran_id,
        reason=event.reason.value,
        occurred_at=event.occurred_at,
    )


def _renewal_draft(event: CareTeamsResolved, deps: Messaging) -> DraftRow:
    content = DraftContent(
        renewal=True,
        category=Category.MEDICATIONS,
        subject=domain.RENEWAL_SUBJECT,
        body=domain.renewal_body(event.prescription),
        ehr=event.ehr,
    )
    team = _suggested_team(event)
    if team is not None:
        content = domain.addressed(content, team, TeamSelection.SUGGESTED)
    cohort = event.cohort or Cohort(deps.cohorts.cohort(event.veteran_id))
    draft = DraftRow(
        id=str(uuid4()),
        veteran_id=event.veteran_id,
        renewal_id=str(event.renewal_id),
        state=DraftState.OPEN.value,
        prescription_id=event.prescription.prescriptionId,
        care_systems=[system.model_dump(mode="json") for system in event.care_systems],
        picker=event.picker.value,
        suggested_team_id=event.suggested_team_id,
        cohort=cohort.value,
        traceparent=current_traceparent(),
    )
    draft.hold(content)
    draft.created_at = draft.updated_at
    return draft


@dataclass(frozen=True)
class NewMessage:
    """A general new message, to a care team the Veteran picked."""

    recipient_id: int
    team_selection: TeamSelection
    category: Category
    subject: str
    body: str
    platform: Platform | None
    cohort: Cohort


async def start_message(veteran_id: str, request: NewMessage, deps: Messaging) -> DraftRow:
    """A draft of a general new message. SM is asked who the Veteran may message: the team must be one
    of SM's allowed teams for the Veteran (SM119 otherwise, SM151 when the Veteran is blocked)."""
    recipients = await deps.upstream.recipients(veteran_id)
    team = domain.choose_recipient(request.recipient_id, recipients.allowed, recipients.blocked)
    content = domain.new_message(
        request.category,
        request.subject,
        request.body,
        team,
        request.team_selection,
        request.platform,
    )
    async with deps.sessions.begin() as session:
        draft = DraftRow(
            id=str(uuid4()),
            veteran_id=veteran_id,
            renewal_id=None,
            state=DraftState.OPEN.value,
            care_systems=[],
            cohort=request.cohort.value,
            traceparent=current_traceparent(),
        )
        draft.hold(content)
        draft.created_at = draft.updated_at
        session.add(draft)
        staged = stage(session, _created(draft))
    _publish(deps, [staged])
    return draft


def _offered(draft: DraftRow, recipients: Recipients) -> list[CareTeam]:
    """A renewal may go to its resolved candidates; a general message to any team SM allows."""
    if draft.renewal_id is None:
        return list(recipients.allowed)
    return [team for system in draft.candidates() for team in system.teams]


async def edit_draft(draft_id: UUID, veteran_id: str, edit: DraftEdit, deps: Messaging) -> DraftRow:
    """Change the draft's care team, subject, body (or a general message's category)."""
    async with deps.sessions() as session:
        if await storage.open_draft(session, draft_id, veteran_id) is None:
            raise domain.draft_not_found()
    recipients = (
        await deps.upstream.recipients(veteran_id)
        if edit.recipient_id is not None
        else Recipients()
    )
    async with deps.sessions.begin() as session:
        draft = await storage.open_draft(session, draft_id, veteran_id)
        if draft is None:
            raise domain.draft_not_found()
        send = await storage.send_of(session, draft_id, veteran_id)
        domain.check_editable(SendState(send.state) if send else None)
        content, changed = domain.revise(
            draft.content(), edit, _offered(draft, recipients), recipients.blocked
        )
        draft.hold(content)
        staged = (
            [
                stage(
                    session,
                    DraftUpdated.model_validate({**_draft_fields(draft), "changed": changed}),
                )
            ]
            if changed
            else []
        )
    _publish(deps, staged)
    return draft


async def delete_draft(draft_id: UUID, veteran_id: str, deps: Messaging) -> None:
    async with deps.sessions.begin() as session:
        draft = await storage.open_draft(session, draft_id, veteran_id)
        if draft is None:
            raise domain.draft_not_found()
        staged = stage(session, DraftDeleted.model_validate(_draft_fields(draft)))
        draft.close(DraftState.DELETED)
    _publish(deps, [staged])


async def get_draft(draft_id: UUID, veteran_id: str, deps: Messaging) -> DraftRow:
    async with deps.sessions() as session:
        draft = await storage.open_draft(session, draft_id, veteran_id)
    if draft is None:
        raise domain.draft_not_found()
    return draft


async def find_draft(draft_id: UUID, veteran_id: str, deps: Messaging) -> DraftRow | None:
    """The Veteran's draft in any state, for what a request on it is about (its journey)."""
    async with deps.sessions() as session:
        return await storage.owned_draft(session, draft_id, veteran_id)


async def get_renewal_draft(renewal_id: UUID, veteran_id: str, deps: Messaging) -> DraftRow:
    """The renewal's open draft, with its candidate care teams, picker kind and suggestion; when no
    care team could receive the renewal, ``care_team_unavailable`` with SM's reason."""
    async with deps.sessions() as session:
        draft = await storage.draft_for_renewal(session, renewal_id)
        none = await storage.no_care_team(session, renewal_id) if draft is None else None
    if none is not None and none.veteran_id == veteran_id:
        raise domain.care_team_unavailable(UnavailableReason(none.reason))
    if draft is None or draft.veteran_id != veteran_id or draft.state != DraftState.OPEN:
        raise domain.draft_not_found()
    return draft


def _sent_event(send: SendRow) -> MessageSent:
    assert send.message_id is not None and send.sent_event_id is not None
    return MessageSent(
        event_id=UUID(send.sent_event_id),
        occurred_at=send.sent_at,
        renewal_id=UUID(send.renewal_id) if send.renewal_id else None,
        message_id=send.message_id,
        draft_id=UUID(send.draft_id),
        veteran_id=send.veteran_id,
        recipient_id=send.recipient_id,
        station_number=send.station_number,
        ehr=Ehr(send.ehr),
        category=Category(send.category),
        team_selection=TeamSelection(send.team_selection) if send.team_selection else None,
        platform=Platform(send.platform) if send.platform else None,
        cohort=Cohort(send.cohort),
    )


def _failed_event(send: SendRow, error: SmError) -> MessageSendFailed:
    return MessageSendFailed(
        renewal_id=UUID(send.renewal_id) if send.renewal_id else None,
        draft_id=UUID(send.draft_id),
        veteran_id=send.veteran_id,
        recipient_id=send.recipient_id,
        ehr=Ehr(send.ehr),
        error_code=error.code,
        retryable=error.retryable,
        station_number=send.station_number,
        message_id=send.message_id,
        team_selection=TeamSelection(send.team_selection) if send.team_selection else None,
        platform=Platform(send.platform) if send.platform else None,
        cohort=Cohort(send.cohort),
    )


@dataclass(frozen=True)
class _Attempt:
    """One try at sending a draft: the payload, and SM's id when Oracle Health already accepted it."""

    message: OutgoingMessage
    accepted_id: str | None


async def _claim_once(
    deps: Messaging, draft_id: UUID, veteran_id: str, platform: Platform | None
) -> MessageSent | _Attempt:
    async with deps.sessions.begin() as session:
        send = await storage.send_of(session, draft_id, veteran_id)
        if send is not None and send.state == SendState.SENT:
            return _sent_event(send)
        draft = await storage.open_draft(session, draft_id, veteran_id)
        if draft is None:
            raise domain.draft_not_found()
        if platform is not None:
            draft.platform = platform.value
        domain.check_sendable(draft.content())
        if send is None:
            send = SendRow(
                draft_id=draft.id,
                veteran_id=veteran_id,
                renewal_id=draft.renewal_id,
                attempt=1,
                state=SendState.SUBMITTING.value,
            )
            send.address(draft)
            session.add(send)
        elif send.state == SendState.FAILED:
            send.attempt += 1
            send.state = SendState.SUBMITTING.value
            send.message_id = None
            send.address(draft)
        message = OutgoingMessage(
            idempotency_key=domain.idempotency_key(draft.id, send.attempt),
            veteran_id=veteran_id,
            draft_id=draft.id,
            recipient_id=send.recipient_id,
            ehr=Ehr(send.ehr),
            category=draft.category,
            subject=draft.subject,
            body=draft.body,
            prescription_id=draft.prescription_id,
        )
        accepted = send.message_id if send.state == SendState.ACCEPTED else None
        return _Attempt(message, accepted)


async def _claim(
    deps: Messaging, draft_id: UUID, veteran_id: str, platform: Platform | None
) -> MessageSent | _Attempt:
    """Start (or resume) sending the draft, or the message it was already sent as."""
    try:
        return await _claim_once(deps, draft_id, veteran_id, platform)
    except IntegrityError:  # a concurrent send of the same draft claimed it first: join that one
        return await _claim_once(deps, draft_id, veteran_id, platform)


async def _accepted(deps: Messaging, draft_id: str, message_id: str) -> None:
    async with deps.sessions.begin() as session:
        send = await session.get(SendRow, draft_id)
        if send is not None and send.state == SendState.SUBMITTING:
            send.state = SendState.ACCEPTED.value
            send.message_id = message_id


async def poll_until_final(
    status: Callable[[], Awaitable[DeliveryStatus]],
    schedule: PollSchedule,
    clock: Clock,
    sleep: Sleep,
) -> DeliveryStatus:
    """Poll an accepted Oracle Health message until SM gives it a final status, as vets-api's
    ``poll_message_status`` does (``lib/sm/client/message_status.rb``): out of time before a poll is
    ``oh_send_timeout``; a failed poll is tolerated up to ``schedule.max_errors`` in a row, the next
    one ends the polling with its error."""
    polling = Polling.start(schedule, clock())
    while True:
        polling.check_time(clock())
        try:
            found = await status()
        except SmError as error:
            polling = polling.after_error(error, schedule)
        else:
            if found in domain.FINAL_STATUSES:
                return found
            polling = polling.after_status()
        await sleep(schedule.interval)


async def _deliver(deps: Messaging, attempt: _Attempt) -> str:
    """SM's message id once the message has a final status other than FAILED or INVALID (SM98).
    A message Oracle Health accepted is polled, and polled again when the send is resumed."""
    message_id = attempt.accepted_id
    status = DeliveryStatus.PENDING
    if message_id is None:
        receipt = await deps.upstream.send(attempt.message)
        message_id, status = receipt.message_id, receipt.status
        if status not in domain.FINAL_STATUSES:
            await _accepted(deps, attempt.message.draft_id, message_id)
    if status not in domain.FINAL_STATUSES:
        status = await poll_until_final(
            partial(deps.upstream.status, message_id), deps.polling, deps.clock, deps.sleep
        )
    failure = domain.delivery_failure(status)
    if failure is not None:
        raise failure
    if status is not DeliveryStatus.SENT:
        log.warning(
            "message counted as sent on a final status other than SENT",
            message_id=message_id,
            status=status.value,
        )
    return message_id


async def _record_sent(deps: Messaging, draft_id: str, message_id: str) -> MessageSent:
    """The send is SENT and the draft gone, with ``message.sent`` staged and published after the
    commit, unless a concurrent send of the same draft recorded it first."""
    staged = []
    async with deps.sessions.begin() as session:
        first = await storage.mark_sent(session, draft_id, message_id, uuid4())
        if first:
            draft = await session.get(DraftRow, draft_id)
            if draft is not None:
                draft.close(DraftState.SENT)
        send = await session.get(SendRow, draft_id, populate_existing=True)
        assert send is not None
        sent = _sent_event(send)
        if first:
            staged.append(stage(session, sent))
    _publish(deps, staged)
    return sent


async def _record_failure(
    deps: Messaging, draft_id: str, error: SmError
) -> MessageSent | MessageSendFailed:
    """The failure, with ``message.send_failed`` staged and published after the commit, unless a
    concurrent send of the same draft has meanwhile sent it."""
    async with deps.sessions.begin() as session:
        send = await session.get(SendRow, draft_id, populate_existing=True)
        assert send is not None
        if send.state == SendState.SENT:
            return _sent_event(send)
        send.state = domain.state_after(error, SendState(send.state)).value
        send.error_code = error.code
        send.retryable = error.retryable
        failed = _failed_event(send, error)
        staged = stage(session, failed)
    _publish(deps, [staged])
    return failed


async def send_draft(
    draft_id: UUID, veteran_id: str, platform: Platform | None, deps: Messaging
) -> MessageSent:
    """Send the Veteran's draft once. Sending again returns the first message; after a retryable
    failure it retries the same attempt, after any other failure it makes a new one."""
    attempt = await _claim(deps, draft_id, veteran_id, platform)
    if isinstance(attempt, MessageSent):
        return attempt
    try:
        message_id = await _deliver(deps, attempt)
    except SmError as error:
        outcome = await _record_failure(deps, attempt.message.draft_id, error)
        if isinstance(outcome, MessageSendFailed):
            raise
        return outcome
    return await _record_sent(deps, attempt.message.draft_id, message_id)
