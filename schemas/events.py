"""Event contracts, version 1.

Every event carries an envelope: a unique ``event_id`` (consumers' dedup key), its ``event_type`` and
``schema_version``, ``occurred_at`` in UTC, the ``renewal_id`` that correlates the whole journey, and the
``tool`` (meds or sm, or the journey service for its own ``renewal.closed``) that owns the step. No
event carries a Veteran's name or a message body.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
)

from schemas.records import BlockedFacility, CareSystem, CareTeam, Prescription
from schemas.sealing import SealsPhi
from schemas.vocabulary import Category, Cohort, Ehr, PickerKind, Tool, UnavailableReason

SCHEMA_VERSION: Literal[1] = 1

SuggestionBasis = Literal["recent_team", "prescriber_team", "pharmacy"]
RequestSource = Literal["http", "kafka"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(SealsPhi):
    """The envelope every event shares; its PHI fields (``SEALED``) travel sealed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: str
    event_id: UUID = Field(default_factory=uuid4)
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    renewal_id: UUID | None
    tool: Tool
    cohort: Cohort | None = Field(
        default=None,
        description="new or base flow, decided when the journey starts and carried by every event.",
    )

    SEALED: ClassVar[tuple[str, ...]] = ("veteran_id",)

    @property
    def key(self) -> bytes:
        """The Kafka key: the journey's id, so one renewal keeps its order on one partition."""
        return str(self.renewal_id or self.event_id).encode()


class RenewalRequested(Event):
    """A Veteran asked to renew a renewable prescription (meds)."""

    event_type: Literal["renewal.requested"] = "renewal.requested"
    renewal_id: UUID
    tool: Literal[Tool.MEDS] = Tool.MEDS
    SEALED = ("veteran_id", "prescription")
    veteran_id: str
    ehr: Ehr
    prescription: Prescription
    oh_stations: list[str] = Field(
        default_factory=list, description="The Veteran's Oracle Health station numbers."
    )
    vista_stations: list[str] = Field(
        default_factory=list, description="The Veteran's VistA station numbers."
    )
    source: RequestSource | None = Field(
        default=None,
        description="How the Medications app asked: over HTTP or on the ingress topic.",
    )
    idempotency_key: str | None = Field(
        default=None,
        max_length=255,
        description="The request's Idempotency-Key, when it had one (the journey is found by it).",
    )


class RenewalRefused(Event):
    """A renewal request refused at intake (meds): the prescription is not renewable, or the renewal
    flow is closed for the Veteran or the prescription's EHR. Nothing goes to SM; the journey service
    records the refusal. Carries the refusal's code, never the prescription."""

    event_type: Literal["renewal.refused"] = "renewal.refused"
    renewal_id: UUID
    tool: Literal[Tool.MEDS] = Tool.MEDS
    veteran_id: str
    ehr: Ehr
    code: str = Field(
        max_length=64,
        description="Why: the refusal code the Medications app was answered "
        "(services/renewal/README.md, Refusal codes).",
    )
    source: RequestSource
    idempotency_key: str | None = Field(default=None, max_length=255)


ClosedStatus = Literal["refused", "care_team_unavailable", "sent", "draft_deleted", "dead_lettered"]
"""The statuses in which a renewal's journey closes: no further step is expected."""


class RenewalClosed(Event):
    """A renewal's journey closed (the journey service): meds lets the same prescription be
    requested anew. ``status`` says how it ended."""

    event_type: Literal["renewal.closed"] = "renewal.closed"
    renewal_id: UUID
    tool: Literal[Tool.JOURNEY] = Tool.JOURNEY
    status: ClosedStatus


class CareTeamsResolved(Event):
    """The Veteran's allowed care teams for a renewal, grouped by care system (sm)."""

    event_type: Literal["careteams.resolved"] = "careteams.resolved"
    renewal_id: UUID
    tool: Literal[Tool.SM] = Tool.SM
    SEALED = ("veteran_id", "prescription")
    veteran_id: str
    ehr: Ehr
    prescription: Prescription
    care_systems: list[CareSystem]
    suggested_team_id: int | None
    picker: PickerKind
    suggestion_basis: SuggestionBasis | None = Field(
        default=None,
        description="Why the team was suggested: the Veteran messaged it in the last 6 months, "
        "it is the prescriber's team, or the facility's pharmacy.",
    )
    recent_teams: list[CareTeam] = Field(
        default_factory=list,
        description="Allowed teams the Veteran messaged in the last 6 months, newest first (at most 4).",
    )
    blocked_facilities: list[BlockedFacility] = Field(
        default_factory=list, description="Facilities where every team is blocked."
    )


class CareTeamUnavailable(Event):
    """No care team can receive this renewal (sm)."""

    event_type: Literal["careteams.unavailable"] = "careteams.unavailable"
    renewal_id: UUID
    tool: Literal[Tool.SM] = Tool.SM
    veteran_id: str
    ehr: Ehr
    reason: UnavailableReason
    blocked_facilities: list[BlockedFacility] = Field(
        default_factory=list, description="Facilities where every team is blocked."
    )


class TeamSelection(StrEnum):
    """How the Veteran's care team was chosen: the suggested one, the recent list, or the picker."""

    SUGGESTED = "suggested"
    RECENT = "recent"
    CARE_SYSTEM_PICKER = "care_system_picker"


class Platform(StrEnum):
    """Where the Veteran wrote the message: VA.gov on the web, or the mobile app."""

    WEB = "web"
    MOBILE = "mobile"


def _draft_key(renewal_id: UUID | None, draft_id: UUID) -> bytes:
    """The renewal id, or the draft id for a general new message, so one draft keeps its order."""
    return str(renewal_id or draft_id).encode()


class DraftEvent(Event):
    """Fields every draft event shares; ``renewal_id`` is empty for a general new message."""

    tool: Literal[Tool.SM] = Tool.SM
    draft_id: UUID
    veteran_id: str
    ehr: Ehr | None
    category: Category
    recipient_id: int | None
    station_number: str | None = Field(default=None, description="The care team's station.")
    team_selection: TeamSelection | None = Field(
        default=None, description="How the care team was chosen; empty while there is none."
    )
    platform: Platform | None = Field(
        default=None, description="Where the Veteran is writing, when the front end said."
    )

    @property
    def key(self) -> bytes:
        return _draft_key(self.renewal_id, self.draft_id)


class DraftCreated(DraftEvent):
    event_type: Literal["draft.created"] = "draft.created"


class DraftUpdated(DraftEvent):
    event_type: Literal["draft.updated"] = "draft.updated"
    changed: list[Literal["recipient_id", "subject", "body", "category"]]


class DraftDeleted(DraftEvent):
    event_type: Literal["draft.deleted"] = "draft.deleted"


class MessageSent(Event):
    """SM accepted and delivered the message (sm)."""

    event_type: Literal["message.sent"] = "message.sent"
    tool: Literal[Tool.SM] = Tool.SM
    message_id: str
    draft_id: UUID
    veteran_id: str
    recipient_id: int
    station_number: str
    ehr: Ehr
    category: Category
    team_selection: TeamSelection | None = None
    platform: Platform | None = None

    @property
    def key(self) -> bytes:
        return _draft_key(self.renewal_id, self.draft_id)


class MessageSendFailed(Event):
    """SM could not send the message (sm)."""

    event_type: Literal["message.send_failed"] = "message.send_failed"
    tool: Literal[Tool.SM] = Tool.SM
    draft_id: UUID
    veteran_id: str
    recipient_id: int | None
    ehr: Ehr | None
    error_code: str = Field(description="SM's error code (SM98, SM119, SM151, SM901...).")
    retryable: bool = Field(description="Whether sending the same draft again may succeed.")
    station_number: str | None = None
    message_id: str | None = Field(
        default=None, description="SM's id when SM had accepted the message before it failed."
    )
    team_selection: TeamSelection | None = None
    platform: Platform | None = None

    @property
    def key(self) -> bytes:
        return _draft_key(self.renewal_id, self.draft_id)


class PriorLetter(BaseModel):
    """An earlier dead letter of the same record, before an SRE replayed it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    occurred_at: AwareDatetime
    service: str
    consumer_group: str
    error_type: str
    reason: str


class DeadLetter(SealsPhi):
    """A record no consumer could process: the original bytes and where they came from, and why.
    The original bytes may be anything, PHI in clear included: on Kafka they travel sealed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    tool: Tool = Field(description="The tool whose consumer refused the record.")
    service: str
    consumer_group: str
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The original key, base64.")
    SEALED = ("value",)
    value: str = Field(description="The original value, base64 (its first bytes when truncated).")
    value_size: int | None = Field(default=None, description="The original value's size in bytes.")
    value_truncated: bool = Field(
        default=False, description="The original was too large to keep whole in a dead letter."
    )
    value_sha256: str | None = Field(default=None, description="SHA-256 of the original value.")
    headers: dict[str, str] = Field(default_factory=dict)
    error_type: str
    reason: str = Field(description="What was wrong; never carries the payload.")
    attempts: int = Field(ge=1)
    history: list[PriorLetter] = Field(
        default_factory=list,
        description="The record's earlier dead letters, oldest first, when it was replayed and "
        "refused again: the first refusal's reason stays with the record.",
    )

    @property
    def replayed(self) -> bool:
        """The record was refused before and replayed by an SRE."""
        return bool(self.history)


class DeadLetterReplayed(BaseModel):
    """An SRE put a dead letter back on its consumer group's retry topic (``rxsm dlq replay``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: Literal["dead_letter.replayed"] = "dead_letter.replayed"
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    letter_id: UUID = Field(description="The dead letter replayed.")
    retry_topic: str


CareTeamsOutcome = Annotated[
    CareTeamsResolved | CareTeamUnavailable, Field(discriminator="event_type")
]
DraftChange = Annotated[
    DraftCreated | DraftUpdated | DraftDeleted, Field(discriminator="event_type")
]
MessageOutcome = Annotated[MessageSent | MessageSendFailed, Field(discriminator="event_type")]
AnyEvent = Annotated[
    RenewalRequested
    | CareTeamsResolved
    | CareTeamUnavailable
    | DraftCreated
    | DraftUpdated
    | DraftDeleted
    | MessageSent
    | MessageSendFailed,
    Field(discriminator="event_type"),
]

any_event: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

EVENT_MODELS: tuple[type[BaseModel], ...] = (
    RenewalRequested,
    RenewalRefused,
    RenewalClosed,
    CareTeamsResolved,
    CareTeamUnavailable,
    DraftCreated,
    DraftUpdated,
    DraftDeleted,
    MessageSent,
    MessageSendFailed,
    DeadLetter,
    DeadLetterReplayed,
)
