"""Renewal eligibility: pure rules, no I/O (domain.md section 2)."""

from dataclasses import dataclass
from datetime import date, timedelta

from schemas.records import Facility, Prescription
from schemas.vocabulary import Ehr

RENEWAL_WINDOW = timedelta(days=120)

NEVER_RENEWABLE = {
    "Discontinued": "discontinued",
    "Transferred": "transferred",
    "Active: Non-VA": "non_va",
    "Active: On Hold": "on_hold",
    "Unknown": "unknown_status",
}

MESSAGES = {
    "refillable": "This prescription still has refills. Request a refill instead of a renewal.",
    "expired_over_120_days": (
        "This prescription expired more than 120 days ago. Ask your provider for a new prescription."
    ),
    "non_va": "This is a non-VA medication. Contact the provider who prescribed it.",
    "discontinued": "This prescription was discontinued. Ask your provider if you need a new one.",
    "transferred": "This prescription was transferred. Manage it where it was transferred to.",
    "on_hold": "This prescription is on hold. Contact your pharmacy.",
    "unknown_status": "We can't tell this prescription's status. Contact your pharmacy.",
    "not_renewable": "This prescription can't be renewed online. Contact your care team.",
}


@dataclass(frozen=True)
class Eligibility:
    """The verdict on one prescription: renewable, or the reason why not and what to do."""

    renewable: bool
    reason: str | None = None

    @property
    def message(self) -> str | None:
        return MESSAGES.get(self.reason) if self.reason else None


RENEWABLE = Eligibility(renewable=True)


def refused(reason: str) -> Eligibility:
    return Eligibility(renewable=False, reason=reason)


def ehr_of(prescription: Prescription, facilities: list[Facility]) -> Ehr:
    """Oracle Health when the prescription's station is one of the Veteran's OH facilities."""
    oh_stations = {f.stationNumber for f in facilities if f.ehr is Ehr.ORACLE_HEALTH}
    return Ehr.ORACLE_HEALTH if prescription.stationNumber in oh_stations else Ehr.VISTA


def check_renewal(prescription: Prescription, today: date) -> Eligibility:
    """Whether ``prescription`` may be renewed today."""
    if prescription.prescriptionSource == "NV":
        return refused("non_va")
    status = prescription.dispStatus or "Unknown"
    if status in NEVER_RENEWABLE:
        return refused(NEVER_RENEWABLE[status])
    expires = prescription.expirationDate
    if expires is not None and expires < today - RENEWAL_WINDOW:
        return refused("expired_over_120_days")
    if prescription.isRefillable or (
        (prescription.refillRemaining or 0) > 0 and (expires is None or expires >= today)
    ):
        return refused("refillable")
    if prescription.isRenewable is False:
        return refused("not_renewable")
    return RENEWABLE
