"""The renewal service's rules, pure and without I/O.

Eligibility (domain.md section 2): may this prescription be renewed today, and if not, why not and what
to do instead. VistA and Oracle Health prescriptions follow different rules.

The journey: from the steps a renewal has reached, in whatever order they arrived, its current status,
the tool (meds or sm) that failed it, and the automatic step it waits for.

Finding renewals for SREs: which statuses a ``status=`` filter names, and the time a ``since=`` names.
"""

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
    RenewalRequested,
)
from schemas.records import Facility, Prescription, RenewalRequest
from schemas.vocabulary import Ehr, Tool

RENEWAL_WINDOW = timedelta(days=120)
"""A prescription that expired longer ago than this needs a new prescription, not a renewal."""


class Refusal(StrEnum):
    """Why a renewal request is refused: the machine-readable ``code`` of the answer. Every code but
    ``renewal_flow_off`` says why the prescription can't be renewed."""

    REFILLABLE = "refillable"
    EXPIRED_OVER_120_DAYS = "expired_over_120_days"
    NON_VA = "non_va"
    NOT_VA_PRESCRIPTION = "not_va_prescription"
    DISCONTINUED = "discontinued"
    TRANSFERRED = "transferred"
    ON_HOLD = "on_hold"
    UNKNOWN_STATUS = "unknown_status"
    COMPLETED = "completed"
    REFILL_IN_PROCESS = "refill_in_process"
    PARKED_NOT_FILLED = "parked_not_filled"
    NEVER_DISPENSED = "never_dispensed"
    NO_EXPIRATION_DATE = "no_expiration_date"
    EXPIRATION_DATE_MISMATCH = "expiration_date_mismatch"
    NOT_RENEWABLE = "not_renewable"
    MISSING_STATUS = "missing_status"
    MISSING_REFILLS_REMAINING = "missing_refills_remaining"
    MISSING_CATEGORY = "missing_category"
    MISSING_DISPENSE_COUNT = "missing_dispense_count"
    RENEWAL_FLOW_OFF = "renewal_flow_off"
    """The renewal flow's feature flag is off for this Veteran: the Medications app shows its
    fallback."""

    @property
    def message(self) -> str:
        return REFUSAL_MESSAGES[self]


REFUSAL_MESSAGES = {
    Refusal.REFILLABLE: (
        "This prescription still has refills left. Request a refill instead of a renewal."
    ),
    Refusal.EXPIRED_OVER_120_DAYS: (
        "This prescription expired more than 120 days ago. Ask your provider for a new prescription."
    ),
    Refusal.NON_VA: "This is a non-VA medication. Contact the provider who prescribed it.",
    Refusal.NOT_VA_PRESCRIPTION: (
        "This medication isn't a VA outpatient prescription, so it can't be renewed online. "
        "Contact your care team."
    ),
    Refusal.DISCONTINUED: (
        "This prescription was discontinued. Ask your provider if you need a new one."
    ),
    Refusal.TRANSFERRED: (
        "This prescription was transferred. Manage it where it was transferred to."
    ),
    Refusal.ON_HOLD: "This prescription is on hold. Contact your pharmacy.",
    Refusal.UNKNOWN_STATUS: "We can't tell this prescription's status. Contact your pharmacy.",
    Refusal.COMPLETED: (
        "This prescription is complete and can't be renewed. "
        "Ask your provider for a new prescription."
    ),
    Refusal.REFILL_IN_PROCESS: (
        "A refill of this prescription is already in process. "
        "Wait until it is filled before asking for a renewal."
    ),
    Refusal.PARKED_NOT_FILLED: (
        "This prescription hasn't been filled yet. Ask your pharmacy to fill it instead of renewing it."
    ),
    Refusal.NEVER_DISPENSED: (
        "This prescription has never been filled. Request a fill instead of a renewal."
    ),
    Refusal.NO_EXPIRATION_DATE: (
        "This prescription has no expiration date, so we can't tell whether it is within the "
        "120-day renewal window. Contact your pharmacy."
    ),
    Refusal.EXPIRATION_DATE_MISMATCH: (
        "This prescription is marked expired but its expiration date is in the future. "
        "Contact your pharmacy to correct it."
    ),
    Refusal.NOT_RENEWABLE: (
        "This prescription can't be renewed online. Send your care team a message or call your "
        "pharmacy."
    ),
    Refusal.MISSING_STATUS: (
        "Send the prescription's status (dispStatus for VistA, medicationRequestStatus for Oracle "
        "Health): renewal can't be decided without it."
    ),
    Refusal.MISSING_REFILLS_REMAINING: (
        "Send the prescription's refillRemaining (for Oracle Health, numberOfRepeatsAllowed and "
        "completedDispenseCount): renewal can't be decided without it."
    ),
    Refusal.MISSING_CATEGORY: (
        "Send the Oracle Health prescription's medicationCategory: renewal can't be decided without it."
    ),
    Refusal.MISSING_DISPENSE_COUNT: (
        "Send the Oracle Health prescription's dispenseCount: renewal can't be decided without it."
    ),
    Refusal.RENEWAL_FLOW_OFF: (
        "Renewal requests can't be sent online for you right now. Call your pharmacy or send your "
        "care team a message to renew this prescription."
    ),
}


@dataclass(frozen=True)
class Eligibility:
    """The verdict on one prescription: renewable, or the refusal and what to do instead.

    ``upstream_disagrees`` (VistA only): the upstream ``isRenewable`` flag said the opposite of the
    verdict, worth a look by the Medications team.
    """

    ehr: Ehr
    refusal: Refusal | None = None
    upstream_disagrees: bool = False

    @property
    def renewable(self) -> bool:
        return self.refusal is None


def ehr_of(prescription: Prescription, facilities: list[Facility]) -> Ehr:
    """Oracle Health when the prescription's station is one of the Veteran's OH facilities."""
    oh_stations = {f.stationNumber for f in facilities if f.ehr is Ehr.ORACLE_HEALTH}
    return Ehr.ORACLE_HEALTH if prescription.stationNumber in oh_stations else Ehr.VISTA


def check_renewal(request: RenewalRequest, today: date) -> Eligibility:
    """Whether the requested prescription may be renewed today, by the rules of its EHR."""
    ehr = ehr_of(request.prescription, request.facilities)
    if ehr is Ehr.ORACLE_HEALTH:
        return Eligibility(ehr, oracle_health_refusal(request.prescription, today))
    return vista_eligibility(request.prescription, today)


def expired(expires: date, today: date) -> bool:
    """The expiration date is the last day the prescription is valid."""
    return expires < today


def beyond_window(expires: date, today: date) -> bool:
    return expires < today - RENEWAL_WINDOW


NEVER_RENEWABLE = {
    "Discontinued": Refusal.DISCONTINUED,
    "Transferred": Refusal.TRANSFERRED,
    "Active: Non-VA": Refusal.NON_VA,
    "Active: On Hold": Refusal.ON_HOLD,
    "Unknown": Refusal.UNKNOWN_STATUS,
}
"""``dispStatus`` values never renewable, whatever the EHR."""

ACTIVE, PARKED, EXPIRED = "Active", "Active: Parked", "Expired"
IN_PROCESS = frozenset({"Active: Refill in Process", "Active: Submitted"})
NON_VA_SOURCE = "NV"


def vista_eligibility(rx: Prescription, today: date) -> Eligibility:
    """VistA: renewable only when the older backend rule and the upstream ``isRenewable`` agree.

    The older rule decides every refusal it can name (a discontinued or refillable prescription is
    refused even if the flag says renewable). When the rule passes but the flag says no, the upstream
    system knows something the record doesn't show: refused as ``not_renewable``. Without the flag the
    rule decides alone. Either disagreement is reported in ``upstream_disagrees``.
    """
    refusal = vista_rule(rx, today)
    if refusal is not None:
        return Eligibility(Ehr.VISTA, refusal, upstream_disagrees=rx.isRenewable is True)
    if rx.isRenewable is False:
        return Eligibility(Ehr.VISTA, Refusal.NOT_RENEWABLE, upstream_disagrees=True)
    return Eligibility(Ehr.VISTA)


def vista_rule(rx: Prescription, today: date) -> Refusal | None:
    """The older backend rule: not refillable, and either Active (or Parked with fill history) with 0
    refills left, or Expired within the last 120 days.

    An Active prescription past its expiration date counts as expired: refills left no longer make it
    refillable, and it is renewable within the window.
    """
    status = rx.dispStatus
    if rx.prescriptionSource == NON_VA_SOURCE:
        return Refusal.NON_VA
    if status is None:
        return Refusal.MISSING_STATUS
    if status in NEVER_RENEWABLE:
        return NEVER_RENEWABLE[status]
    if status in IN_PROCESS:
        return Refusal.REFILL_IN_PROCESS
    if status not in (ACTIVE, PARKED, EXPIRED):
        return Refusal.UNKNOWN_STATUS
    expires = rx.expirationDate
    if status == EXPIRED and expires is None:
        return Refusal.NO_EXPIRATION_DATE
    if status == EXPIRED and expires is not None and not expired(expires, today):
        return Refusal.EXPIRATION_DATE_MISMATCH
    if expires is not None and beyond_window(expires, today):
        return Refusal.EXPIRED_OVER_120_DAYS
    if rx.isRefillable:
        return Refusal.REFILLABLE
    if status == PARKED and rx.sortedDispensedDate is None and rx.dispensedDate is None:
        return Refusal.PARKED_NOT_FILLED
    if status == EXPIRED or (expires is not None and expired(expires, today)):
        return None
    if rx.refillRemaining is None:
        return Refusal.MISSING_REFILLS_REMAINING
    return Refusal.REFILLABLE if rx.refillRemaining > 0 else None


OH_RENEWABLE_CATEGORIES = frozenset({"va_prescription", "clinic_administered"})
OH_STATUS_REFUSALS = {
    "completed": Refusal.COMPLETED,
    "on-hold": Refusal.ON_HOLD,
    "stopped": Refusal.DISCONTINUED,
    "cancelled": Refusal.DISCONTINUED,
    "entered-in-error": Refusal.DISCONTINUED,
}


def oh_refills_remaining(rx: Prescription) -> int | None:
    """numberOfRepeatsAllowed - max(completed dispenses - 1, 0), floored at 0: the first fill is not a
    refill. Falls back to ``refillRemaining`` when the FHIR counts are absent."""
    if rx.numberOfRepeatsAllowed is None or rx.completedDispenseCount is None:
        return rx.refillRemaining
    return max(rx.numberOfRepeatsAllowed - max(rx.completedDispenseCount - 1, 0), 0)


def oracle_health_refusal(rx: Prescription, today: date) -> Refusal | None:
    """Oracle Health gates, all of which must hold; the upstream ``isRenewable`` is not consulted.

    Active; a VA or clinic-administered prescription; dispensed at least once; a validity-period end
    (``expirationDate``) no more than 120 days ago (future ends pass); expired or no refills left; no
    refill request or dispense in progress. "completed" is never renewable.
    """
    if rx.prescriptionSource == NON_VA_SOURCE or rx.medicationCategory == "documented_non_va":
        return Refusal.NON_VA
    if rx.dispStatus in NEVER_RENEWABLE:
        return NEVER_RENEWABLE[rx.dispStatus]
    if rx.medicationRequestStatus is None:
        return Refusal.MISSING_STATUS
    if rx.medicationRequestStatus != "active":
        return OH_STATUS_REFUSALS.get(rx.medicationRequestStatus, Refusal.UNKNOWN_STATUS)
    if rx.medicationCategory is None:
        return Refusal.MISSING_CATEGORY
    if rx.medicationCategory not in OH_RENEWABLE_CATEGORIES:
        return Refusal.NOT_VA_PRESCRIPTION
    if rx.dispenseCount is None:
        return Refusal.MISSING_DISPENSE_COUNT
    if rx.dispenseCount == 0:
        return Refusal.NEVER_DISPENSED
    expires = rx.expirationDate
    if expires is None:
        return Refusal.NO_EXPIRATION_DATE
    if beyond_window(expires, today):
        return Refusal.EXPIRED_OVER_120_DAYS
    if not expired(expires, today):
        remaining = oh_refills_remaining(rx)
        if remaining is None:
            return Refusal.MISSING_REFILLS_REMAINING
        if remaining > 0:
            return Refusal.REFILLABLE
    if rx.refillRequested or rx.dispenseInProgress:
        return Refusal.REFILL_IN_PROCESS
    return None


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
    ACCEPTED = "accepted"
    """Saved by meds with its ``renewal requested`` event, which the ledger has not yet read back
    from Kafka."""
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
    """One step as recorded. ``source_topic``: for a dead letter, the topic of the refused record."""

    step: Step
    tool: Tool
    at: datetime
    error_code: str | None = None
    retryable: bool | None = None
    detail: str | None = None
    source_topic: str | None = None


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
    Status.ACCEPTED: Waiting(Step.REQUESTED, Tool.MEDS),
    Status.REQUESTED: Waiting(Step.CARE_TEAM_RESOLVED, Tool.SM),
    Status.CARE_TEAM_RESOLVED: Waiting(Step.DRAFT_CREATED, Tool.SM),
}
"""Steps no person has to take. A drafted renewal waits for the Veteran to send it: never stalled."""

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
        return JourneyState(Status.ACCEPTED, None, closed=False)
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
    for name in (part.strip() for part in names.split(",")):
        if name == FAILED_FILTER:
            named |= FAILED
            continue
        try:
            named.add(Status(name))
        except ValueError:
            known = ", ".join([FAILED_FILTER, *Status])
            raise ValueError(f"unknown status {name!r}; use one or more of {known}") from None
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


LedgerEvent = Annotated[
    RenewalRequested
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
"""What the journey ledger reads: its own ``renewal requested`` once it is on Kafka, the downstream
topics, and dead letters (with the marks of their replays, which are no step)."""


@dataclass(frozen=True)
class Observed:
    """A step read from a downstream event: the renewal it belongs to and the event's id."""

    renewal_id: UUID
    event_id: UUID
    record: StepRecord


DRAFT_STEPS = {
    "draft.created": Step.DRAFT_CREATED,
    "draft.updated": Step.DRAFT_UPDATED,
    "draft.deleted": Step.DRAFT_DELETED,
}


def observed_step(event: LedgerEvent) -> Observed | None:
    """The journey step an event records, or None when it is about no renewal."""
    if isinstance(event, DeadLetterReplayed):
        return None
    if isinstance(event, DeadLetter):
        renewal_id = _renewal_of_key(event.key)
        if renewal_id is None:
            return None
        detail = f"{event.service}: {event.reason}"
        record = StepRecord(
            Step.DEAD_LETTERED,
            event.tool,
            event.occurred_at,
            error_code=event.error_type,
            detail=detail,
            source_topic=event.topic,
        )
        return Observed(renewal_id, event.event_id, record)
    if event.renewal_id is None:
        return None
    match event:
        case RenewalRequested():
            record = StepRecord(Step.REQUESTED, event.tool, event.occurred_at)
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
    return Observed(event.renewal_id, event.event_id, record)


def _renewal_of_key(key: str | None) -> UUID | None:
    """A dead letter's original Kafka key (base64) is the renewal id for journey events."""
    if key is None:
        return None
    try:
        return UUID(base64.b64decode(key, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
