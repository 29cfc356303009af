"""Domain records carried inside events, named as the Medications app and SM name them (camelCase)."""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from schemas.vocabulary import Ehr


def _date_part(value: Any) -> Any:
    """Upstream dates come as dates or as ISO datetimes ("2026-03-05T05:00:00.000Z"): keep the date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str) and len(value) > 10 and value[10] in "T ":
        return value[:10]
    return value


UpstreamDate = Annotated[date, BeforeValidator(_date_part)]

OhRequestStatus = Literal[
    "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"
]
"""FHIR MedicationRequest.status."""

OhCategory = Literal[
    "va_prescription",
    "clinic_administered",
    "documented_non_va",
    "inpatient",
    "pharmacy_charges",
    "uncategorized",
]
"""How VA.gov classifies an Oracle Health medication."""


class Record(BaseModel):
    """A frozen record that rejects unknown fields, so a typo is an error rather than lost data."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class Prescription(Record):
    """A prescription as the Medications app has it (domain.md section 2)."""

    prescriptionId: str = Field(min_length=1, max_length=64)
    prescriptionName: str | None = None
    prescriptionNumber: str | None = None
    dispStatus: str | None = None
    refillStatus: str | None = None
    refillRemaining: int | None = Field(default=None, ge=0)
    expirationDate: UpstreamDate | None = None
    isRefillable: bool | None = None
    isRenewable: bool | None = None
    prescriptionSource: str | None = None
    stationNumber: str | None = Field(default=None, pattern=r"^\d{3}[A-Z0-9]{0,3}$")
    facilityName: str | None = None
    sig: str | None = None
    reason: str | None = None
    providerFirstName: str | None = None
    providerLastName: str | None = None
    quantity: str | None = None
    sortedDispensedDate: UpstreamDate | None = None
    dispensedDate: UpstreamDate | None = None
    orderedDate: UpstreamDate | None = None
    # Oracle Health only: read from the FHIR MedicationRequest and its dispenses. For an Oracle Health
    # prescription ``expirationDate`` is the request's dispenseRequest.validityPeriod.end.
    medicationRequestStatus: OhRequestStatus | None = Field(
        default=None, description="Oracle Health: MedicationRequest.status."
    )
    medicationCategory: OhCategory | None = Field(
        default=None,
        description=(
            "Oracle Health: the medication's kind, from MedicationRequest.category, reportedBoolean "
            "and intent (a VA prescription, clinic-administered, documented non-VA, ...)."
        ),
    )
    dispenseCount: int | None = Field(
        default=None, ge=0, description="Oracle Health: MedicationDispense records, any status."
    )
    completedDispenseCount: int | None = Field(
        default=None, ge=0, description="Oracle Health: MedicationDispense records completed."
    )
    numberOfRepeatsAllowed: int | None = Field(
        default=None,
        ge=0,
        description="Oracle Health: MedicationRequest.dispenseRequest.numberOfRepeatsAllowed.",
    )
    refillRequested: bool | None = Field(
        default=None,
        description="Oracle Health: a refill request from VA.gov or the app is pending.",
    )
    dispenseInProgress: bool | None = Field(
        default=None, description="Oracle Health: a dispense is in progress or in preparation."
    )


class Facility(Record):
    """One of the Veteran's facilities and the EHR it runs."""

    stationNumber: str = Field(pattern=r"^\d{3}[A-Z0-9]{0,3}$")
    ehr: Ehr


class RenewalRequest(Record):
    """What the Medications app sends to ask for a renewal, over HTTP or on the ingress topic."""

    veteranId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    prescription: Prescription
    facilities: list[Facility] = Field(default_factory=list, max_length=50)


class CareTeam(Record):
    """A care team (SM triage group) normalised across VistA and Oracle Health."""

    triageTeamId: int
    name: str
    displayName: str
    stationNumber: str
    careSystemName: str
    ehr: Ehr
    locationName: str | None = None
    teamName: str | None = None
    leadProviderName: str | None = None
    groupTypeEnumVal: str | None = Field(
        default=None, description="SM's kind of team, e.g. PHARMACY or PRIMARY_CARE."
    )


class CareSystem(Record):
    """One care system for the picker: a station (SM's stationNumber, 612 read as 612A4 as vets-api
    normalises it) and its allowed care teams. Stations sharing a system name are separate systems."""

    stationNumber: str
    careSystemName: str
    ehr: Ehr
    teams: list[CareTeam]


class BlockedFacility(Record):
    """A facility where the Veteran can message no care team: every team there is blocked."""

    stationNumber: str
    careSystemName: str
    ehr: Ehr
    migratingToOh: bool = Field(
        description="Blocked because the facility is moving to Oracle Health (phases p3-p6)."
    )
