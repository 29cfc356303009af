"""Domain records carried inside events, named as the Medications app and SM name them (camelCase)."""

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from schemas.sealing import SealsPhi, keyring
from schemas.vocabulary import Ehr


def _utc_date(value: Any) -> Any:
    """The day of an upstream time, in UTC, as vets-api reads a prescription's dates (UTC attributes
    in a UTC Rails zone): an ISO datetime ("2026-03-05T05:00:00.000Z"), an RFC 2822 time as MHV
    writes them ("Thu, 05 Mar 2026 00:00:00 EST"), or a date. Anything else is left for pydantic to
    refuse."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    if not isinstance(value, str) or len(value) <= 10:
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        parts = parsedate_tz(value)
        if parts is None:
            return value
        zone = timezone(timedelta(seconds=parts[9] or 0))
        moment = datetime(*parts[:6], tzinfo=zone)
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _written_date(value: Any) -> Any:
    """The day as the string writes it, whatever its zone, as Ruby's ``String#to_date`` reads it
    (how vets-api reads a refill record's expirationDate)."""
    if isinstance(value, datetime):
        return value.date()
    if not isinstance(value, str) or len(value) <= 10:
        return value
    try:
        return datetime.fromisoformat(value).date()
    except ValueError:
        parts = parsedate_tz(value)
        return date(*parts[:3]) if parts is not None else value


UpstreamDate = Annotated[date, BeforeValidator(_utc_date)]
WrittenDate = Annotated[date, BeforeValidator(_written_date)]


def _blanks_to_none(data: Any) -> Any:
    """Upstream records send '' where a value is missing (refillRemaining, a date, dispStatus): the
    value is missing."""
    if isinstance(data, dict):
        return {key: None if value == "" else value for key, value in data.items()}
    return data


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


class UpstreamRecord(BaseModel):
    """A record shaped by VA's upstream systems: fields rxsm does not read are ignored, never a reason
    to refuse; '' is a missing value; a value of the wrong type is still an error."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _missing_values(cls, data: Any) -> Any:
        return _blanks_to_none(data)


class RefillRecord(UpstreamRecord):
    """One entry of a VistA prescription's ``rxRfRecords`` (its refills), as far as rxsm reads it."""

    expirationDate: WrittenDate | None = None


def _refill_records(value: Any) -> Any:
    """``rxRfRecords`` as vets-api lists them: a list of refill records. The raw MHV shape
    (``[["rf_record", [records]]]``) is unwrapped as vets-api's model does (``dig(0, 1)``), and an
    empty record ({}) is kept as ``None``, so "no refill record at all" stays visible."""
    if value == "":
        return None
    if (
        isinstance(value, list)
        and value
        and isinstance(value[0], list)
        and len(value[0]) == 2
        and isinstance(value[0][1], list)
    ):
        value = value[0][1]
    if isinstance(value, list):
        return [None if record == {} else record for record in value]
    return value


def _as_javascript_writes_it(value: Any) -> Any:
    """A number where text is expected (``quantity: 30.0``), as VA's front end writes it:
    ``String(30.0)`` is ``"30"``, and 0 (like NaN) is falsy, so it reads as missing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if value == 0 or value != value:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


DisplayedText = Annotated[str | None, BeforeValidator(_as_javascript_writes_it)]
"""Text VA shows as it comes, which upstream may send as a number."""

CODE_LENGTH = 64
"""Characters of a prescription's codes and short values: its number, statuses, source, quantity."""
NAME_LENGTH = 200
"""Characters of a person's or a facility's name: providerFirstName, providerLastName, facilityName."""
MEDICATION_NAME_LENGTH = 500
"""Characters of ``prescriptionName`` (name, strength and form)."""
INSTRUCTIONS_LENGTH = 2_000
"""Characters of ``sig``, the instructions."""
REASON_LENGTH = 1_000
"""Characters of ``reason``, the reason for use."""
MOST_COUNTED = 9_999
"""The largest count a prescription may give (refills left, dispenses, repeats allowed)."""
MOST_REFILL_RECORDS = 100
"""Entries of ``rxRfRecords``."""
# The limits above are rxsm's own: VA states none for these fields (vets-api serves what VistA and
# Oracle Health hold). They are generous beside VA's own records (the longest values in VA's
# fixtures, tests/fixtures/va: a sig of 63 characters, a medication name of 38, 1 refill record), and
# they bound every text a renewal request carries, so that the event of any request they let through
# fits in one Kafka record (services/renewal/README.md, Limits).


class Prescription(UpstreamRecord):
    """A prescription as vets-api serves it to the Medications app (domain.md section 2): VistA
    records from /my_health/v1, Oracle Health records from /my_health/v2."""

    prescriptionId: str = Field(min_length=1, max_length=64)
    prescriptionName: str | None = Field(default=None, max_length=MEDICATION_NAME_LENGTH)
    prescriptionNumber: DisplayedText = Field(default=None, max_length=CODE_LENGTH)
    dispStatus: str | None = Field(default=None, max_length=CODE_LENGTH)
    refillStatus: str | None = Field(default=None, max_length=CODE_LENGTH)
    refillRemaining: int | None = Field(default=None, ge=0, le=MOST_COUNTED)
    expirationDate: UpstreamDate | None = None
    isRefillable: StrictBool | None = None
    isRenewable: StrictBool | None = None
    prescriptionSource: str | None = Field(default=None, max_length=CODE_LENGTH)
    stationNumber: str | None = Field(default=None, min_length=1, max_length=16)
    facilityName: str | None = Field(default=None, max_length=NAME_LENGTH)
    sig: str | None = Field(default=None, max_length=INSTRUCTIONS_LENGTH)
    reason: str | None = Field(default=None, max_length=REASON_LENGTH)
    providerFirstName: str | None = Field(default=None, max_length=NAME_LENGTH)
    providerLastName: str | None = Field(default=None, max_length=NAME_LENGTH)
    quantity: DisplayedText = Field(default=None, max_length=CODE_LENGTH)
    sortedDispensedDate: UpstreamDate | None = None
    dispensedDate: UpstreamDate | None = None
    orderedDate: UpstreamDate | None = None
    rxRfRecords: Annotated[list[RefillRecord | None] | None, BeforeValidator(_refill_records)] = (
        Field(
            default=None,
            max_length=MOST_REFILL_RECORDS,
            description="VistA: the refill records; VA measures the renewal window from the "
            "first one's expirationDate when it has one.",
        )
    )
    # Oracle Health, optional: the FHIR MedicationRequest and its dispenses, which vets-api's
    # /my_health/v2 records do not carry. When given, rxsm cross-checks the upstream isRenewable with
    # them (services/renewal/README.md). For an Oracle Health prescription ``expirationDate`` is the
    # request's dispenseRequest.validityPeriod.end.
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
        default=None,
        ge=0,
        le=MOST_COUNTED,
        description="Oracle Health: MedicationDispense records, any status.",
    )
    completedDispenseCount: int | None = Field(
        default=None,
        ge=0,
        le=MOST_COUNTED,
        description="Oracle Health: MedicationDispense records completed.",
    )
    numberOfRepeatsAllowed: int | None = Field(
        default=None,
        ge=0,
        le=MOST_COUNTED,
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


class RenewalRequest(Record, SealsPhi):
    """What the Medications app sends to ask for a renewal, over HTTP or on the ingress topic.

    rxsm's own body, so an unknown field here is refused; the prescription inside is VA's record as
    vets-api serves it, whose unknown fields are ignored. On the ingress topic the Veteran's id and the
    prescription travel sealed (``sealed_record``), as every rxsm event's PHI does."""

    SEALED = ("veteranId", "prescription")

    @classmethod
    def bound_to(cls, record: Mapping[str, Any]) -> bytes:
        return INGRESS_SEAL

    @staticmethod
    def sealed_record(document: Mapping[str, Any]) -> bytes:
        """The Kafka record of the Medications app's request ``document`` as it sends it (VA's
        prescription with every field it has): its PHI sealed, the rest as it is."""
        clear = {name: document[name] for name in RenewalRequest.SEALED if name in document}
        rest = {name: value for name, value in document.items() if name not in clear}
        sealed = keyring().seal(json.dumps(clear).encode(), INGRESS_SEAL)
        return json.dumps({**rest, "sealed": sealed.model_dump()}).encode()

    veteranId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    prescription: Prescription
    facilities: list[Facility] = Field(default_factory=list, max_length=50)


INGRESS_SEAL = b"rxsm.meds.renewal-requests"
"""The associated data of a sealed renewal request: it opens as nothing else."""


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
