"""The small closed vocabularies every event shares."""

from enum import StrEnum


class Tool(StrEnum):
    """The product that owns a step, and so a failure: the Medications tool or Secure Messaging.

    ``journey`` is the journey service's own: it observes both tools and belongs to neither, so its
    bookkeeping (a record it could not read, a span it failed) is never counted as meds' or sm's. No
    journey step is ever owned by it."""

    MEDS = "meds"
    SM = "sm"
    JOURNEY = "journey"


class Ehr(StrEnum):
    """The electronic health record a facility runs."""

    VISTA = "vista"
    ORACLE_HEALTH = "oracle_health"


class PickerKind(StrEnum):
    """How the SM front end lets the Veteran choose a care system: 1 auto, 2-5 radio, 6+ dropdown."""

    AUTO = "auto"
    RADIO = "radio"
    DROPDOWN = "dropdown"


class Category(StrEnum):
    """Secure Messaging message categories."""

    OTHER = "OTHER"
    COVID = "COVID"
    APPOINTMENTS = "APPOINTMENTS"
    MEDICATIONS = "MEDICATIONS"
    TEST_RESULTS = "TEST_RESULTS"
    EDUCATION = "EDUCATION"


class UnavailableReason(StrEnum):
    """Why no care team can receive a renewal request."""

    NO_ASSOCIATIONS = "no_associations"
    ALL_BLOCKED = "all_blocked"
    FACILITY_MIGRATING = "facility_migrating"
    DIRECTORY_ERROR = "directory_error"


class Cohort(StrEnum):
    """The rollout cohort of a journey: the new SM flow (the OH pilot flag on) or the base flow."""

    NEW = "new"
    BASE = "base"
