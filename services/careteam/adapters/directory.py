"""The Veteran's care teams: the directory interface, SM's record shapes, and a time-bounded wrapper.

Two directories implement ``CareTeamDirectory``: the bundled demo directory (``adapters.demo``) and the SM
patient API over HTTP (``adapters.sm_api``). Both read SM's own field names (``triageTeamId``,
``blockedStatus``, ``ohTriageGroup``...) in either of the two shapes SM's "all recipients" answer comes
in, and return the same ``VeteranCareTeams``.
"""

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.careteam.domain import SentMessage, TriageGroup, VeteranCareTeams


class DirectoryError(Exception):
    """The directory could not answer. ``transient`` errors (timeouts, 5xx) may pass on a retry.

    The message names what failed (status, timeout), never anything about the Veteran.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class CareTeamDirectory(Protocol):
    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        """Every triage group the Veteran is associated with (blocked ones too), and recent sends.

        Raises ``DirectoryError`` when the directory cannot answer.
        """
        ...


class SmRecord(BaseModel):
    """SM's camelCase JSON, read by snake_case names; fields SM adds later are ignored."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=AliasGenerator(validation_alias=to_camel)
    )


class TriageTeamRecord(SmRecord):
    """One record of SM's "all recipients" (``alltriageteams``) list, VistA or Oracle Health."""

    triage_team_id: int
    name: str = Field(min_length=1)
    station_number: str = Field(pattern=r"^\d{3}[A-Z0-9]{0,3}$")
    blocked_status: bool = False
    preferred_team: bool = False
    relation_type: str | None = None
    location_name: str | None = None
    lead_provider_name: str | None = None
    team_name: str | None = None
    suggested_name_display: str | None = None
    health_care_system_name: str | None = None
    group_type_enum_val: str | None = None
    sub_group_type_enum_val: str | None = None
    group_type_patient_display: str | None = None
    sub_group_type_patient_display: str | None = None
    oh_triage_group: bool = False
    migrating_to_oh: bool = False

    def triage_group(self) -> TriageGroup:
        return TriageGroup(
            triage_team_id=self.triage_team_id,
            name=self.name,
            station_number=self.station_number,
            care_system_name=self.health_care_system_name,
            suggested_name_display=self.suggested_name_display or None,
            location_name=self.location_name,
            team_name=self.team_name,
            lead_provider_name=self.lead_provider_name,
            group_type=self.group_type_enum_val,
            blocked_status=self.blocked_status,
            preferred_team=self.preferred_team,
            oh_triage_group=self.oh_triage_group,
            migrating_to_oh=self.migrating_to_oh,
        )


class TriageTeamsMeta(SmRecord):
    associated_triage_groups: int = Field(ge=0)
    associated_blocked_triage_groups: int | None = Field(default=None, ge=0)


class AllTriageTeams(BaseModel):
    """SM's ``alltriageteams`` answer: the counts, then the records."""

    meta: TriageTeamsMeta
    triage_teams: list[TriageTeamRecord]

    @classmethod
    def from_sm(cls, body: Any) -> "AllTriageTeams":
        """From either shape of the answer, fields neither shape defines being ignored.

        - MHV's list, as vets-api receives it from SM (its recorded answers in
          ``spec/support/vcr_cassettes/sm_client/triage_teams/``):
          ``[{"associatedTriageGroups": ...}, {"triageTeam": [...]}]``.
        - vets-api's JSON:API answer, as VA.gov's front end receives it
          (``/my_health/v1/messaging/allrecipients``):
          ``{"data": [{"attributes": {...}}], "meta": {"associatedTriageGroups": ...}}``.

        Raises ``pydantic.ValidationError`` when the answer is neither.
        """
        if isinstance(body, dict) and "data" in body:
            data = body["data"]
            records = (
                [item.get("attributes") if isinstance(item, dict) else item for item in data]
                if isinstance(data, list)
                else data
            )
            return cls.model_validate({"meta": body.get("meta"), "triage_teams": records})
        parts: list[Any] = body if isinstance(body, list) else [body]
        dicts = [part for part in parts if isinstance(part, dict)]
        meta = next((part for part in dicts if "associatedTriageGroups" in part), None)
        teams = next((part["triageTeam"] for part in dicts if "triageTeam" in part), None)
        return cls.model_validate({"meta": meta, "triage_teams": teams})


def veteran_care_teams(
    triage_teams: AllTriageTeams,
    sent: list[SentMessage],
    migration_phases: dict[str, str] | None = None,
) -> VeteranCareTeams:
    return VeteranCareTeams(
        groups=tuple(record.triage_group() for record in triage_teams.triage_teams),
        associated_triage_groups=triage_teams.meta.associated_triage_groups,
        associated_blocked_triage_groups=triage_teams.meta.associated_blocked_triage_groups,
        migration_phases=migration_phases or {},
        sent=tuple(sent),
    )


@dataclass(frozen=True)
class DirectoryBudget:
    """How long one renewal may wait on the directory: bounded tries inside an overall deadline.

    The care-team consumer handles a partition's renewals one after another, so every second spent on
    one renewal delays the renewals queued behind it. Each call has its own timeout (in the adapter),
    transient failures are retried with jittered backoff, and ``deadline_seconds`` caps the total, so
    a slow or failing directory costs each renewal at most that long before it is reported as
    ``directory_error`` and the partition moves on.
    """

    attempts: int = 3
    backoff_seconds: float = 0.2
    deadline_seconds: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff before try ``attempt + 1``."""
        return random.uniform(0, self.backoff_seconds * 2 ** (attempt - 1))


class BoundedDirectory:
    """A directory whose answers are retried on transient errors and bounded by a deadline."""

    def __init__(self, inner: CareTeamDirectory, budget: DirectoryBudget) -> None:
        self._inner = inner
        self._budget = budget

    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        try:
            async with asyncio.timeout(self._budget.deadline_seconds):
                return await self._with_retries(veteran_id)
        except TimeoutError:
            raise DirectoryError(
                f"no answer within {self._budget.deadline_seconds:g} s", transient=True
            ) from None

    async def _with_retries(self, veteran_id: str) -> VeteranCareTeams:
        attempt = 1
        while True:
            try:
                return await self._inner.care_teams(veteran_id)
            except DirectoryError as error:
                if not error.transient or attempt >= self._budget.attempts:
                    raise
            await asyncio.sleep(self._budget.backoff(attempt))
            attempt += 1
