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
    """Why a renewal request is refused: the machine-readable ``code`` of the answer. The flow codes
    (``renewal_flow_off``, ``renewal_flow_off_for_ehr``) say the flow is closed; every other code
    says why the prescription can't be renewed online."""

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
    NOT_RENEWABLE = "not_renewable"
    RENEWABILITY_UNKNOWN = "renewability_unknown"
    """Oracle Health: the record has no ``isRenewable``, so VA's front end would not offer the
    renewal link."""
    RENEWAL_FLOW_OFF = "renewal_flow_off"
    """The renewal flow's feature flag is off for this Veteran: the Medications app shows its
    fallback."""
    RENEWAL_FLOW_OFF_FOR_EHR = "renewal_flow_off_for_ehr"
    """The renewal flow is not open for the prescription's EHR (its per-EHR flag is off)."""

    @property
    def message(self) -> str:
        return REFUSAL_MESSAGES[self]


CONTACT = "Send your care team a message or call your pharmacy to renew it."

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
    Refusal.NOT_RENEWABLE: f"This prescription can't be renewed online. {CONTACT}",
    Refusal.RENEWABILITY_UNKNOWN: (
        f"We can't tell whether this prescription can be renewed online. {CONTACT}"
    ),
    Refusal.RENEWAL_FLOW_OFF: (
        "Renewal requests can't be sent online for you right now. Call your pharmacy or send your "
        "care team a message to renew this prescription."
    ),
    Refusal.RENEWAL_FLOW_OFF_FOR_EHR: (
        "Renewal requests can't be sent online yet for prescriptions from this facility. Call your "
        "pharmacy or send your care team a message to renew this prescription."
    ),
}


@dataclass(frozen=True)
class Eligibility:
    """The verdict on one prescription: renewable, or the refusal and what to do instead.

    ``upstream_disagrees``: the record's own ``isRenewable`` and rxsm's check of the same record
    disagree (VistA: VA's rule against the upstream flag; Oracle Health: the FHIR-level cross-check,
    where the record has those fields, against ``isRenewable``). Never changes the verdict; worth a
    look by the Medications team.
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
    """Whether the requested prescription may be renewed today (in UTC, as vets-api's clock reads
    it), by the rules of its EHR."""
    ehr = ehr_of(request.prescription, request.facilities)
    if ehr is Ehr.ORACLE_HEALTH:
        return oracle_health_eligibility(request.prescription, today)
    return vista_eligibility(request.prescription, today)


def within_window(expires: date, today: date) -> bool:
    """No more than 120 days ago (or in the future): vets-api's ``date >= Time.zone.today - 120``."""
    return expires >= today - RENEWAL_WINDOW


NEVER_RENEWABLE = {
    "discontinued": Refusal.DISCONTINUED,
    "transferred": Refusal.TRANSFERRED,
    "active: non-va": Refusal.NON_VA,
    "non-va": Refusal.NON_VA,
    "active: on hold": Refusal.ON_HOLD,
    "hold": Refusal.ON_HOLD,
    "unknown": Refusal.UNKNOWN_STATUS,
}
"""``dispStatus`` values (lower-cased: the Oracle Health adapter writes "Active: On hold") that are
never renewable, with the refusal that explains them."""

IN_PROCESS = frozenset({"active: refill in process", "active: submitted", "in progress"})
NON_VA_SOURCE = "NV"


def _status(rx: Prescription) -> str | None:
    return rx.dispStatus.lower() if rx.dispStatus is not None else None


def vista_eligibility(rx: Prescription, today: date) -> Eligibility:
    """VistA: VA's rule (``vista_renewable``) decides; the upstream ``isRenewable`` is only compared
    with it. A non-VA prescription is refused whatever the rule says (vets-api drops those records
    from the list, so VA never offers the link for them)."""
    renewable = vista_renewable(rx, today) and rx.prescriptionSource != NON_VA_SOURCE
    refusal = None if renewable else vista_refusal(rx, today)
    disagrees = rx.isRenewable is not None and rx.isRenewable != renewable
    return Eligibility(Ehr.VISTA, refusal, upstream_disagrees=disagrees)


def vista_expiration(rx: Prescription) -> date | None:
    """The date VA measures the window from: the first refill record's expirationDate, else the
    prescription's."""
    first = rx.rxRfRecords[0] if rx.rxRfRecords else None
    if first is not None and first.expirationDate is not None:
        return first.expirationDate
    return rx.expirationDate


def vista_renewable(rx: Prescription, today: date) -> bool:
    """vets-api ``MyHealth::PrescriptionHelper::Filtering#renewable``, field by field.

    isRefillable must be literally false (missing is not false). refillRemaining missing counts as
    0 (Ruby's ``nil.to_i``). Then: Active (any case) with 0 refills left; or Active: Parked (any
    case) with 0 refills left and at least one refill record; or exactly "Expired", an expiration
    date no more than 120 days ago (or in the future: VA does not check), not refillable. An Active
    prescription is not checked against its expiration date.
    """
    not_refillable = rx.isRefillable is False
    status = _status(rx)
    if (rx.refillRemaining or 0) == 0 and not_refillable:
        if status == "active":
            return True
        if status == "active: parked" and any(r is not None for r in rx.rxRfRecords or []):
            return True
    expires = vista_expiration(rx)
    return (
        rx.dispStatus == "Expired"
        and expires is not None
        and within_window(expires, today)
        and not_refillable
    )


def vista_refusal(rx: Prescription, today: date) -> Refusal:
    """Why VA's rule refuses a VistA prescription, in words a Veteran can act on."""
    status = _status(rx)
    if rx.prescriptionSource == NON_VA_SOURCE:
        return Refusal.NON_VA
    if status in NEVER_RENEWABLE:
        return NEVER_RENEWABLE[status]
    if status in IN_PROCESS:
        return Refusal.REFILL_IN_PROCESS
    if status is None:
        return Refusal.UNKNOWN_STATUS
    expires = vista_expiration(rx)
    if rx.dispStatus == "Expired" and expires is None:
        return Refusal.NO_EXPIRATION_DATE
    if rx.dispStatus == "Expired" and expires is not None and not within_window(expires, today):
        return Refusal.EXPIRED_OVER_120_DAYS
    if rx.isRefillable is True:
        return Refusal.REFILLABLE
    if status == "active: parked" and not any(r is not None for r in rx.rxRfRecords or []):
        return Refusal.PARKED_NOT_FILLED
    return Refusal.NOT_RENEWABLE


def oracle_health_eligibility(rx: Prescription, today: date) -> Eligibility:
    """Oracle Health: the upstream ``isRenewable`` is the answer, as VA's front end shows the link
    for an Oracle Health prescription when it is true. Missing, the link is not shown:
    ``renewability_unknown``. A non-VA prescription is refused even if marked renewable (VA's
    front end hides the link for non-VA sources too).

    Where the record carries the FHIR-level fields, rxsm's gates (``oracle_health_gates``) are run
    as a cross-check: a disagreement is reported, never acted on; when both refuse, the gate's
    reason explains the refusal.
    """
    gate = oracle_health_gates(rx, today) if has_fhir_fields(rx) else None
    disagrees = (
        gate is not None
        and rx.isRenewable is not None
        and (gate == RENEWABLE_BY_GATES) != rx.isRenewable
    )
    if rx.prescriptionSource == NON_VA_SOURCE:
        return Eligibility(Ehr.ORACLE_HEALTH, Refusal.NON_VA, upstream_disagrees=disagrees)
    if rx.isRenewable is None:
        return Eligibility(Ehr.ORACLE_HEALTH, Refusal.RENEWABILITY_UNKNOWN)
    if rx.isRenewable:
        return Eligibility(Ehr.ORACLE_HEALTH, upstream_disagrees=disagrees)
    refusal = (
        gate
        if isinstance(gate, Refusal)
        else NEVER_RENEWABLE.get(_status(rx) or "")
        or (Refusal.REFILLABLE if rx.isRefillable else Refusal.NOT_RENEWABLE)
    )
    return Eligibility(Ehr.ORACLE_HEALTH, refusal, upstream_disagrees=disagrees)


RENEWABLE_BY_GATES: Literal["renewable"] = "renewable"
"""What ``oracle_health_gates`` answers when every gate passes."""

OH_STATUS_REFUSALS = {
    "completed": Refusal.COMPLETED,
    "on-hold": Refusal.ON_HOLD,
    "stopped": Refusal.DISCONTINUED,
    "cancelled": Refusal.DISCONTINUED,
    "entered-in-error": Refusal.DISCONTINUED,
}
OH_NON_VA_CATEGORY = "documented_non_va"


def has_fhir_fields(rx: Prescription) -> bool:
    """The record carries what the Oracle Health gates need: the request's status, its category,
    and the dispense and repeat counts."""
    return None not in (
        rx.medicationRequestStatus,
        rx.medicationCategory,
        rx.dispenseCount,
        rx.completedDispenseCount,
        rx.numberOfRepeatsAllowed,
    )


def oh_refills_remaining(rx: Prescription) -> int | None:
    """vets-api ``extract_refill_remaining``: numberOfRepeatsAllowed - max(completed dispenses - 1,
    0), floored at 0 (the first fill is not a refill); 0 for anything but a VA prescription. None
    without the counts."""
    if rx.numberOfRepeatsAllowed is None or rx.completedDispenseCount is None:
        return None
    if rx.medicationCategory != "va_prescription":
        return 0
    return max(rx.numberOfRepeatsAllowed - max(rx.completedDispenseCount - 1, 0), 0)


def oracle_health_gates(rx: Prescription, today: date) -> Refusal | Literal["renewable"]:
    """vets-api ``OracleHealthRenewabilityHelper#renewable?`` on the FHIR-level fields, gate by gate
    (call only when ``has_fhir_fields``): the first gate that fails, or ``"renewable"``.

    1 status active; 2 a VA prescription (``non_va_med?``: clinic-administered, documented non-VA,
    inpatient, charges and uncategorized fail); 3 at least one dispense; 4 a validity-period end
    (``expirationDate``); 5 that end no more than 120 days ago; 6 expired or no refills left; 7 no
    refill requested online and no dispense in progress or in preparation. VA measures gates 5 and
    6 to the second; rxsm's expirationDate is a day, so rxsm measures in days: it can differ from
    VA only on the boundary day, and only in the cross-check.
    """
    status = rx.medicationRequestStatus
    if status != "active":
        return OH_STATUS_REFUSALS.get(status or "", Refusal.UNKNOWN_STATUS)
    if rx.medicationCategory != "va_prescription":
        if rx.medicationCategory == OH_NON_VA_CATEGORY:
            return Refusal.NON_VA
        return Refusal.NOT_VA_PRESCRIPTION
    if not rx.dispenseCount:
        return Refusal.NEVER_DISPENSED
    expires = rx.expirationDate
    if expires is None:
        return Refusal.NO_EXPIRATION_DATE
    if not within_window(expires, today):
        return Refusal.EXPIRED_OVER_120_DAYS
    if expires >= today and oh_refills_remaining(rx):
        return Refusal.REFILLABLE
    if rx.refillRequested or rx.dispenseInProgress:
        return Refusal.REFILL_IN_PROCESS
    return RENEWABLE_BY_GATES


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
