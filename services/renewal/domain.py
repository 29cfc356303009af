"""The renewal service's rules, pure and without I/O.

Eligibility (domain.md section 2): may this prescription be renewed today, and if not, why not and what
to do instead. VistA and Oracle Health prescriptions follow different rules.

The intake: where a renewal is until its event is on Kafka (the journey service follows it from
there), and when an accepted renewal whose event does not reach Kafka is stalled.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from schemas.records import Facility, Prescription, RenewalRequest
from schemas.vocabulary import Ehr

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


class IntakeStatus(StrEnum):
    """Where a renewal is as its intake knows it. From ``requested`` on the journey service follows it
    (and tells meds when it closes: the closing statuses come from there)."""

    ACCEPTED = "accepted"
    """Saved with its ``renewal requested`` event, which is not on Kafka yet."""
    STALLED = "stalled"
    """Accepted longer ago than the stall timeout, and its event is still not on Kafka: meds'."""
    REQUESTED = "requested"
    """Its event is on Kafka: the journey service says where it is."""
    FAILED = "failed"
    """Its event can never reach Kafka (the outbox set it aside): meds'."""
    REFUSED = "refused"
    CARE_TEAM_UNAVAILABLE = "care_team_unavailable"
    SENT = "sent"
    DRAFT_DELETED = "draft_deleted"
    DEAD_LETTERED = "dead_lettered"


AWAITED = "requested"
"""The step an accepted renewal waits for: its event on Kafka, which meds publishes."""


def stalled(accepted_at: datetime, now: datetime, after: timedelta) -> bool:
    """An accepted renewal whose event has not reached Kafka within ``after`` is stalled on meds."""
    return now - accepted_at > after
