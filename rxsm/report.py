"""Answers to the release plan's post-launch questions, from the flow's events on Kafka.

Messages sent per platform and per EHR, messages per Veteran, how the care team of each sent message was
chosen (suggested, recent list, care-system picker), how many sends failed and which step and tool
failed journeys, and the new flow (OH pilot) against the base. Counts only: no Veteran id is reported.
Refusals at intake (``renewal.refused``) are not read here; the journey service has them
(``rxsm failures``).
"""

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rxsm.kafka_reads import kept_from, read_json
from schemas import topics
from schemas.events import (
    AnyEvent,
    CareTeamsResolved,
    CareTeamUnavailable,
    DeadLetter,
    MessageSendFailed,
    MessageSent,
    RenewalRequested,
    TeamSelection,
    any_event,
)

REPORTED_TOPICS = (
    topics.RENEWAL_REQUESTED,
    topics.CARE_TEAMS,
    topics.MESSAGES,
    topics.DEAD_LETTER,
)
UNKNOWN = "unknown"
"""The label of events that don't say (e.g. a platform the front end did not send)."""

Reported = AnyEvent | DeadLetter


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)


class MessagesSent(Summary):
    total: int
    by_platform: dict[str, int]
    by_ehr: dict[str, int]
    veterans: int
    """Distinct Veterans who sent at least one message."""
    per_veteran: float | None


class TeamSelectionShares(Summary):
    """How the care team of each sent message was chosen."""

    messages: int
    counts: dict[str, int]
    shares: dict[str, float]


class Sends(Summary):
    attempts: int
    failed: int
    failure_rate: float | None
    by_error_code: dict[str, int]


class FailureCount(Summary):
    """Failures at one journey step, with the tool that owns them and their error."""

    step: str
    tool: str
    error: str
    count: int
    share: float
    """Of all the failures in the window."""


class CohortSummary(Summary):
    renewals_requested: int
    care_team_unavailable: int
    unavailable_rate: float | None
    """Of the renewals whose care teams were looked up."""
    messages_sent: int
    send_failures: int
    send_failure_rate: float | None
    team_selection: TeamSelectionShares


class Report(Summary):
    since: datetime
    until: datetime
    renewals_requested: int
    messages_sent: MessagesSent
    team_selection: TeamSelectionShares
    sends: Sends
    failures: list[FailureCount]
    cohorts: dict[str, CohortSummary]
    unseen: dict[str, datetime] = {}
    """Topics whose records before this time Kafka no longer keeps (its retention), where that falls
    inside the window: the report saw those topics from then only."""


def parse(values: Iterable[Mapping[str, Any]]) -> list[Reported]:
    """The events (and dead letters) among ``values``; records of other shapes are skipped."""
    parsed: list[Reported] = []
    for value in values:
        try:
            if value.get("event_type") == "dead_letter":
                parsed.append(DeadLetter.model_validate(value))
            else:
                parsed.append(any_event.validate_python(value))
        except ValidationError:
            continue
    return parsed


async def read_events(bootstrap: str) -> list[Reported]:
    """Every event on the reported topics, from the beginning."""
    found = await asyncio.gather(*(read_json(bootstrap, topic) for topic in REPORTED_TOPICS))
    return parse(value for values in found for value in values)


async def unseen_before(bootstrap: str, since: datetime) -> dict[str, datetime]:
    """The reported topics Kafka keeps only from after ``since`` (older records deleted by its
    retention), with the time each is kept from."""
    kept = await asyncio.gather(*(kept_from(bootstrap, topic) for topic in REPORTED_TOPICS))
    return {topic: at for topic, at in zip(REPORTED_TOPICS, kept, strict=True) if at and at > since}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _label(value: object) -> str:
    return UNKNOWN if value is None else str(value)


def _team_selection(sent: list[MessageSent]) -> TeamSelectionShares:
    chosen = Counter(str(message.team_selection) for message in sent if message.team_selection)
    counts = {str(kind): chosen[str(kind)] for kind in TeamSelection}
    total = sum(counts.values())
    return TeamSelectionShares(
        messages=total,
        counts=counts,
        shares={kind: count / total for kind, count in counts.items()} if total else {},
    )


def _failure(event: Reported) -> tuple[str, str, str] | None:
    """The (step, tool, error) of an event that fails a journey; steps as the journey ledger names
    them."""
    if isinstance(event, CareTeamUnavailable):
        return "care_team_unavailable", str(event.tool), str(event.reason)
    if isinstance(event, MessageSendFailed):
        return "message_send_failed", str(event.tool), event.error_code
    if isinstance(event, DeadLetter):
        return "dead_lettered", str(event.tool), f"{event.service}: {event.error_type}"
    return None


def _cohort(events: list[Reported]) -> CohortSummary:
    requested = sum(isinstance(event, RenewalRequested) for event in events)
    resolved = sum(isinstance(event, CareTeamsResolved) for event in events)
    unavailable = sum(isinstance(event, CareTeamUnavailable) for event in events)
    sent = [event for event in events if isinstance(event, MessageSent)]
    failed = sum(isinstance(event, MessageSendFailed) for event in events)
    return CohortSummary(
        renewals_requested=requested,
        care_team_unavailable=unavailable,
        unavailable_rate=_rate(unavailable, resolved + unavailable),
        messages_sent=len(sent),
        send_failures=failed,
        send_failure_rate=_rate(failed, len(sent) + failed),
        team_selection=_team_selection(sent),
    )


def summarize(
    events: Iterable[Reported],
    since: datetime,
    until: datetime,
    unseen: Mapping[str, datetime] | None = None,
) -> Report:
    """The report over the events that occurred in [since, until]; each event counts once.
    ``unseen``: topics the report could see only from a later time (``unseen_before``)."""
    unique = {event.event_id: event for event in events if since <= event.occurred_at <= until}
    window = list(unique.values())
    sent = [event for event in window if isinstance(event, MessageSent)]
    send_failed = [event for event in window if isinstance(event, MessageSendFailed)]
    veterans = len({message.veteran_id for message in sent})
    failures = Counter(failure for event in window if (failure := _failure(event)))
    all_failures = sum(failures.values())
    by_cohort: dict[str, list[Reported]] = {}
    for event in window:
        if not isinstance(event, DeadLetter):
            by_cohort.setdefault(_label(event.cohort), []).append(event)
    return Report(
        since=since,
        until=until,
        renewals_requested=sum(isinstance(event, RenewalRequested) for event in window),
        messages_sent=MessagesSent(
            total=len(sent),
            by_platform=dict(Counter(_label(message.platform) for message in sent)),
            by_ehr=dict(Counter(str(message.ehr) for message in sent)),
            veterans=veterans,
            per_veteran=_rate(len(sent), veterans),
        ),
        team_selection=_team_selection(sent),
        sends=Sends(
            attempts=len(sent) + len(send_failed),
            failed=len(send_failed),
            failure_rate=_rate(len(send_failed), len(sent) + len(send_failed)),
            by_error_code=dict(Counter(event.error_code for event in send_failed)),
        ),
        failures=[
            FailureCount(step=step, tool=tool, error=error, count=count, share=count / all_failures)
            for (step, tool, error), count in sorted(
                failures.items(), key=lambda item: (-item[1], item[0])
            )
        ],
        cohorts={cohort: _cohort(events) for cohort, events in sorted(by_cohort.items())},
        unseen=dict(unseen or {}),
    )
