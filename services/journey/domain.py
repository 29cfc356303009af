"""The journey's rules, pure and without I/O.

From the steps a renewal has reached, in whatever order they arrived: its current status, the tool
(meds or sm) that failed it, and the automatic step it waits for. Which step an event records, and
whose it is: a dead letter is attributed to the consumer that refused the record and names the tool
whose topic it was on; the journey service's own refusals are its bookkeeping, never a step.

Finding renewals for SREs: which statuses a ``status=`` filter names, and the time a ``since=`` names.
"""

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from schemas import topics
from schemas.events import (
    CareTeamsResolved,
    CareTeamUnavailable,
    DeadLetter,
    DeadLetterReplayed,
    DraftCreated,
    DraftDeleted,
    DraftUpdated,
    MessageSendFailed,
    MessageSent,
    RenewalRefused,
    RenewalRequested,
)
from schemas.vocabulary import Tool

SERVICE = "journey"
"""The journey service's name: the ``service`` of the dead letters it writes itself."""

BOOKKEEPING_GROUPS = frozenset({"rxsm-renewal-ledger"})
"""Consumer groups whose refusals are a journey ledger's bookkeeping besides the journey service's
own: the ledger's group from when it ran inside the renewal service (its letters, stamped meds, stay on
the dead-letter topic for its retention)."""


class Step(StrEnum):
    """A step a renewal can reach; which tool owns it is recorded with it."""

    REQUESTED = "requested"
    REFUSED = "refused"
    CARE_TEAM_RESOLVED = "care_team_resolved"
    CARE_TEAM_UNAVAILABLE = "care_team_unavailable"
    DRAFT_CREATED = "draft_created"
    DRAFT_UPDATED = "draft_updated"
    DRAFT_DELETED = "draft_deleted"
    MESSAGE_SENT = "message_sent"
    MESSAGE_SEND_FAILED = "message_send_failed"
    DEAD_LETTERED = "dead_lettered"


class Status(StrEnum):
    UNKNOWN = "unknown"
    """No step places the renewal yet (its request is not on Kafka): never shown, as the journey
    keeps a renewal from its request (or refusal) on."""
    REFUSED = "refused"
    REQUESTED = "requested"
    CARE_TEAM_RESOLVED = "care_team_resolved"
    CARE_TEAM_UNAVAILABLE = "care_team_unavailable"
    DRAFTED = "drafted"
    SEND_FAILED = "send_failed"
    SENT = "sent"
    DRAFT_DELETED = "draft_deleted"
    DEAD_LETTERED = "dead_lettered"
    STALLED = "stalled"


@dataclass(frozen=True)
class StepRecord:
    """One step as recorded. For a dead letter: ``source_topic``, the topic of the refused record,
    ``topic_owner``, whose topic that is, and ``refused_by``, the consumer group that refused it."""

    step: Step
    tool: Tool
    at: datetime
    error_code: str | None = None
    retryable: bool | None = None
    detail: str | None = None
    source_topic: str | None = None
    topic_owner: Tool | None = None
    refused_by: str | None = None


@dataclass(frozen=True)
class Failure:
    tool: Tool
    step: Step
    error_code: str | None


@dataclass(frozen=True)
class Waiting:
    """The next automatic step and the tool that owns it."""

    step: Step
    tool: Tool


@dataclass(frozen=True)
class JourneyState:
    status: Status
    failure: Failure | None
    closed: bool
    """No further step is expected: the same prescription may be requested anew."""


PROGRESS: dict[Step, tuple[int, Status]] = {
    Step.REQUESTED: (1, Status.REQUESTED),
    Step.CARE_TEAM_RESOLVED: (2, Status.CARE_TEAM_RESOLVED),
    Step.CARE_TEAM_UNAVAILABLE: (2, Status.CARE_TEAM_UNAVAILABLE),
    Step.DRAFT_CREATED: (3, Status.DRAFTED),
    Step.DRAFT_UPDATED: (3, Status.DRAFTED),
    Step.MESSAGE_SEND_FAILED: (4, Status.SEND_FAILED),
    Step.DRAFT_DELETED: (5, Status.DRAFT_DELETED),
    Step.MESSAGE_SENT: (6, Status.SENT),
    Step.REFUSED: (7, Status.REFUSED),
}
"""How far each step takes a renewal: the furthest step reached decides the status, so a step that
arrives late never moves a renewal back (a sent message outranks the deletion of its draft)."""

FAILING_STEPS = frozenset({Step.REFUSED, Step.CARE_TEAM_UNAVAILABLE, Step.MESSAGE_SEND_FAILED})
CLOSED = frozenset(
    {
        Status.REFUSED,
        Status.CARE_TEAM_UNAVAILABLE,
        Status.SENT,
        Status.DRAFT_DELETED,
        Status.DEAD_LETTERED,
    }
)
"""Statuses after which no step comes. A failed send is not one of them: the draft stays in SM and the
Veteran may send it again, so asking anew answers this renewal (and its draft)."""

FAILED = frozenset(
    {Status.REFUSED, Status.CARE_TEAM_UNAVAILABLE, Status.SEND_FAILED, Status.DEAD_LETTERED}
)
"""Statuses in which a tool failed the renewal (what ``status=failed`` names)."""

NEXT_AUTOMATIC_STEP = {
    Status.REQUESTED: Waiting(Step.CARE_TEAM_RESOLVED, Tool.SM),
    Status.CARE_TEAM_RESOLVED: Waiting(Step.DRAFT_CREATED, Tool.SM),
}
"""Steps no person has to take. A drafted renewal waits for the Veteran to send it: never stalled.
(A renewal whose request never reaches Kafka is the renewal service's to report: the journey starts
at the request.)"""

INPUT_OF_NEXT_STEP = {
    topics.RENEWAL_REQUESTED: Status.REQUESTED,
    topics.CARE_TEAMS: Status.CARE_TEAM_RESOLVED,
}
"""A record dead-lettered on one of these topics blocks a renewal waiting in that status."""


def journey(steps: Iterable[StepRecord]) -> JourneyState:
    """A renewal's state from its steps, whatever order they arrived in (duplicates change nothing)."""
    steps = list(steps)
    reached = [s for s in steps if s.step in PROGRESS]
    if not reached:
        return JourneyState(Status.UNKNOWN, None, closed=False)
    furthest = max(reached, key=lambda s: (PROGRESS[s.step][0], s.at))
    status = PROGRESS[furthest.step][1]
    blocking = [
        s
        for s in steps
        if s.step is Step.DEAD_LETTERED and INPUT_OF_NEXT_STEP.get(s.source_topic or "") is status
    ]
    if blocking:
        letter = max(blocking, key=lambda s: s.at)
        blocked = Failure(letter.tool, letter.step, letter.error_code)
        return JourneyState(Status.DEAD_LETTERED, blocked, closed=True)
    failure = (
        Failure(furthest.tool, furthest.step, furthest.error_code)
        if furthest.step in FAILING_STEPS
        else None
    )
    return JourneyState(status, failure, closed=status in CLOSED)


def stalled(status: Status, since: datetime, now: datetime, after: timedelta) -> Waiting | None:
    """The automatic step a renewal has waited for longer than ``after``, if any."""
    waiting = NEXT_AUTOMATIC_STEP.get(status)
    return waiting if waiting is not None and now - since > after else None


Outcome = Literal["success", "failure"]


def outcome_of(step: Step) -> Outcome:
    """A step that fails the renewal, or a dead letter about it, is a failure of the tool owning it."""
    return "failure" if step in FAILING_STEPS or step is Step.DEAD_LETTERED else "success"


FAILED_FILTER = "failed"


def statuses_named(names: str) -> frozenset[Status]:
    """The statuses a comma-separated ``status=`` filter names: status names, and ``failed`` for
    every status in which a tool failed the renewal. ValueError names an unknown one."""
    named: set[Status] = set()
    shown = [status for status in Status if status is not Status.UNKNOWN]
    for name in (part.strip() for part in names.split(",")):
        if name == FAILED_FILTER:
            named |= FAILED
            continue
        try:
            status = Status(name)
        except ValueError:
            status = Status.UNKNOWN
        if status is Status.UNKNOWN:
            known = ", ".join([FAILED_FILTER, *shown])
            raise ValueError(f"unknown status {name!r}; use one or more of {known}")
        named.add(status)
    return frozenset(named)


DURATION = re.compile(r"(\d+)([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_named(text: str, now: datetime) -> datetime:
    """The time a ``since=`` value names: a duration back from ``now`` (``90s``, ``30m``, ``1h``,
    ``7d``, ``2w``) or an ISO 8601 time (UTC unless it says otherwise). ValueError otherwise."""
    duration = DURATION.fullmatch(text.strip())
    if duration is not None:
        amount, unit = duration.groups()
        return now - timedelta(**{UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 1h, 7d) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


JourneyEvent = Annotated[
    RenewalRequested
    | RenewalRefused
    | CareTeamsResolved
    | CareTeamUnavailable
    | DraftCreated
    | DraftUpdated
    | DraftDeleted
    | MessageSent
    | MessageSendFailed
    | DeadLetter
    | DeadLetterReplayed,
    Field(discriminator="event_type"),
]
"""What the journey service reads: meds' requests and refusals once they are on Kafka, SM's topics,
and dead letters (with the marks of their replays, which are no step)."""


@dataclass(frozen=True)
class Opening:
    """What a renewal's request (or refusal) tells about the renewal itself: the journey keeps a
    renewal from then on."""

    veteran_id: str
    ehr: str
    cohort: str | None
    source: str | None
    idempotency_key: str | None
    requested_at: datetime


@dataclass(frozen=True)
class Observed:
    """A step read from an event: the renewal it belongs to, the event's id, and, for the request or
    its refusal, the renewal it opens."""

    renewal_id: UUID
    event_id: UUID
    record: StepRecord
    opening: Opening | None = None


DRAFT_STEPS = {
    "draft.created": Step.DRAFT_CREATED,
    "draft.updated": Step.DRAFT_UPDATED,
    "draft.deleted": Step.DRAFT_DELETED,
}


def bookkeeping(letter: DeadLetter) -> bool:
    """A record the journey ledger itself could not read: its own affair (it is still on the
    dead-letter topic, attributed to the journey service), never a step of anyone's journey."""
    return (
        letter.service == SERVICE
        or letter.tool is Tool.JOURNEY
        or letter.consumer_group.removesuffix(".retry") in BOOKKEEPING_GROUPS
    )


def letter_step(letter: DeadLetter) -> StepRecord:
    """A dead letter as a journey step: the failure of the tool whose consumer refused the record
    (that team reads the letter, fixes the cause and replays it), naming the topic's owner beside."""
    return StepRecord(
        Step.DEAD_LETTERED,
        letter.tool,
        letter.occurred_at,
        error_code=letter.error_type,
        detail=f"{letter.service}: {letter.reason}",
        source_topic=letter.topic,
        topic_owner=topics.owner_of(letter.topic),
        refused_by=letter.consumer_group,
    )


def observed_step(event: JourneyEvent) -> Observed | None:
    """The journey step an event records, or None when it is about no renewal (or is the journey's
    own bookkeeping)."""
    if isinstance(event, DeadLetterReplayed):
        return None
    if isinstance(event, DeadLetter):
        renewal_id = _renewal_of_key(event.key)
        if renewal_id is None or bookkeeping(event):
            return None
        return Observed(renewal_id, event.event_id, letter_step(event))
    if event.renewal_id is None:
        return None
    opening = None
    match event:
        case RenewalRequested():
            record = StepRecord(Step.REQUESTED, event.tool, event.occurred_at)
            opening = _opening(event, event.source, event.idempotency_key)
        case RenewalRefused():
            record = StepRecord(Step.REFUSED, event.tool, event.occurred_at, error_code=event.code)
            opening = _opening(event, event.source, event.idempotency_key)
        case CareTeamsResolved():
            record = StepRecord(Step.CARE_TEAM_RESOLVED, event.tool, event.occurred_at)
        case CareTeamUnavailable():
            record = StepRecord(
                Step.CARE_TEAM_UNAVAILABLE, event.tool, event.occurred_at, event.reason.value
            )
        case DraftCreated() | DraftUpdated() | DraftDeleted():
            record = StepRecord(DRAFT_STEPS[event.event_type], event.tool, event.occurred_at)
        case MessageSent():
            record = StepRecord(Step.MESSAGE_SENT, event.tool, event.occurred_at)
        case MessageSendFailed():
            record = StepRecord(
                Step.MESSAGE_SEND_FAILED,
                event.tool,
                event.occurred_at,
                error_code=event.error_code,
                retryable=event.retryable,
            )
    return Observed(event.renewal_id, event.event_id, record, opening)


def _opening(
    event: RenewalRequested | RenewalRefused, source: str | None, key: str | None
) -> Opening:
    return Opening(
        veteran_id=event.veteran_id,
        ehr=event.ehr.value,
        cohort=event.cohort.value if event.cohort is not None else None,
        source=source,
        idempotency_key=key,
        requested_at=event.occurred_at,
    )


def _renewal_of_key(key: str | None) -> UUID | None:
    """A dead letter's original Kafka key (base64) is the renewal id for journey events."""
    if key is None:
        return None
    try:
        return UUID(base64.b64decode(key, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
