"""Care-team resolution: pure rules over triage-group records, no I/O (domain.md section 3)."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.records import CareSystem, CareTeam
from schemas.vocabulary import Ehr, PickerKind, UnavailableReason


@dataclass(frozen=True)
class TriageGroup:
    """One SM "all recipients" record, VistA or Oracle Health, as the directory returns it."""

    triage_team_id: int
    name: str
    station_number: str
    care_system_name: str
    suggested_name_display: str | None
    blocked: bool
    preferred: bool
    oh_triage_group: bool
    migrating_to_oh: bool

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "TriageGroup":
        return cls(
            triage_team_id=int(record["triageTeamId"]),
            name=str(record["name"]),
            station_number=str(record["stationNumber"]),
            care_system_name=str(record.get("healthCareSystemName") or record["stationNumber"]),
            suggested_name_display=record.get("suggestedNameDisplay"),
            blocked=bool(record.get("blockedStatus", False)),
            preferred=bool(record.get("preferredTeam", True)),
            oh_triage_group=bool(record.get("ohTriageGroup", False)),
            migrating_to_oh=bool(record.get("migratingToOh", False)),
        )

    @property
    def allowed(self) -> bool:
        return self.preferred and not self.blocked and not self.migrating_to_oh

    def normalised(self) -> CareTeam:
        return CareTeam(
            triageTeamId=self.triage_team_id,
            name=self.name,
            displayName=self.suggested_name_display or self.name,
            stationNumber=self.station_number,
            careSystemName=self.care_system_name,
            ehr=Ehr.ORACLE_HEALTH if self.oh_triage_group else Ehr.VISTA,
        )


@dataclass(frozen=True)
class Resolution:
    care_systems: list[CareSystem]
    suggested_team_id: int | None
    picker: PickerKind


class NoCareTeam(Exception):
    def __init__(self, reason: UnavailableReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def picker_for(system_count: int) -> PickerKind:
    if system_count <= 1:
        return PickerKind.AUTO
    return PickerKind.RADIO if system_count <= 5 else PickerKind.DROPDOWN


def resolve(groups: Iterable[TriageGroup], prescription_station: str | None) -> Resolution:
    """Allowed teams grouped by care system, the prescription's facility first, and a suggestion."""
    groups = list(groups)
    if not groups:
        raise NoCareTeam(UnavailableReason.NO_ASSOCIATIONS)
    allowed = [group.normalised() for group in groups if group.allowed]
    if not allowed:
        raise NoCareTeam(UnavailableReason.ALL_BLOCKED)
    by_system: dict[str, list[CareTeam]] = {}
    for team in allowed:
        by_system.setdefault(team.stationNumber, []).append(team)
    systems = [
        CareSystem(
            stationNumber=station,
            careSystemName=teams[0].careSystemName,
            ehr=teams[0].ehr,
            teams=sorted(teams, key=lambda team: team.displayName),
        )
        for station, teams in by_system.items()
    ]
    systems.sort(key=lambda s: (s.stationNumber != prescription_station, s.careSystemName))
    at_facility = by_system.get(prescription_station or "", [])
    suggested = at_facility[0].triageTeamId if len(at_facility) == 1 else None
    return Resolution(systems, suggested, picker_for(len(systems)))
