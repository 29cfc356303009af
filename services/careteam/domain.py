"""Care-team resolution: pure rules over SM triage-group records, no I/O (domain.md sections 1 and 3).

VistA maps teams to the patient (a contact list of preferred teams); Oracle Health lists message pools per
facility. Both arrive as SM "all recipients" records and are normalised here into one ``CareTeam`` model,
then grouped by care system for the picker.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import groupby

from schemas.events import SuggestionBasis
from schemas.records import BlockedFacility, CareSystem, CareTeam, Prescription
from schemas.vocabulary import Cohort, Ehr, PickerKind, UnavailableReason

BLOCKING_MIGRATION_PHASES = frozenset({"p3", "p4", "p5", "p6"})
"""Oracle Health cut-over phases (6 days before to 2 days after) in which a facility's teams are blocked."""

RECENT_MONTHS = 6
MAX_RECENT_TEAMS = 4
PHARMACY = "PHARMACY"


@dataclass(frozen=True)
class TriageGroup:
    """One SM "all recipients" record (a VistA triage group or an Oracle Health message pool)."""

    triage_team_id: int
    name: str
    station_number: str
    care_system_name: str | None = None
    suggested_name_display: str | None = None
    location_name: str | None = None
    team_name: str | None = None
    lead_provider_name: str | None = None
    group_type: str | None = None
    blocked_status: bool = False
    preferred_team: bool = False
    oh_triage_group: bool = False
    migrating_to_oh: bool = False

    @property
    def ehr(self) -> Ehr:
        return Ehr.ORACLE_HEALTH if self.oh_triage_group else Ehr.VISTA

    @property
    def parent_station(self) -> str:
        """The 3-digit station of the health care system (``612A4`` -> ``612``)."""
        return self.station_number[:3]

    @property
    def system_name(self) -> str:
        return self.care_system_name or self.parent_station

    def care_team(self) -> CareTeam:
        return CareTeam(
            triageTeamId=self.triage_team_id,
            name=self.name,
            displayName=self.suggested_name_display or self.name,
            stationNumber=self.station_number,
            careSystemName=self.system_name,
            ehr=self.ehr,
            locationName=self.location_name,
            teamName=self.team_name,
            leadProviderName=self.lead_provider_name,
            groupTypeEnumVal=self.group_type,
        )


@dataclass(frozen=True)
class SentMessage:
    """A message the Veteran sent: only who received it and when (never its subject or body)."""

    recipient_id: int
    sent_on: date


@dataclass(frozen=True)
class VeteranCareTeams:
    """Everything the directory knows about one Veteran's care teams."""

    groups: tuple[TriageGroup, ...] = ()
    associated_triage_groups: int | None = None
    """SM's ``associatedTriageGroups``; when absent, the records are counted."""
    migration_phases: Mapping[str, str] = field(default_factory=dict)
    """Station number -> current Oracle Health migration phase (``p0``..``p7``), where one is set."""
    sent: tuple[SentMessage, ...] = ()


class NoCareTeam(Exception):
    """The Veteran can message no care team; ``reason`` says why."""

    def __init__(
        self, reason: UnavailableReason, blocked_facilities: Sequence[BlockedFacility] = ()
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.blocked_facilities = list(blocked_facilities)


@dataclass(frozen=True)
class CareTeamOptions:
    """What the Veteran may choose from when starting any new message."""

    care_systems: list[CareSystem]
    recent_teams: list[CareTeam]
    blocked_facilities: list[BlockedFacility]
    picker: PickerKind

    def care_system(self, station: str) -> CareSystem | None:
        """The care system with that station number, or with a team at that station (``528A7``)."""
        return next(
            (
                system
                for system in self.care_systems
                if system.stationNumber == station
                or any(team.stationNumber == station for team in system.teams)
            ),
            None,
        )


@dataclass(frozen=True)
class Suggestion:
    team: CareTeam
    basis: SuggestionBasis


@dataclass(frozen=True)
class Resolution:
    """The options for one renewal: the prescription's care system first, and a suggested team."""

    options: CareTeamOptions
    suggestion: Suggestion | None


def cohort_of(oh_pilot: bool) -> Cohort:
    """The rollout cohort: the new SM flow is the Oracle Health pilot's, everyone else is the base."""
    return Cohort.NEW if oh_pilot else Cohort.BASE


def picker_for(system_count: int) -> PickerKind:
    """1 care system is chosen automatically, 2-5 are radio tiles, 6 or more a dropdown."""
    if system_count <= 1:
        return PickerKind.AUTO
    return PickerKind.RADIO if system_count <= 5 else PickerKind.DROPDOWN


def months_before(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - date(year, month, 1)).days
    return date(year, month, min(day.day, last_day))


def is_blocked(group: TriageGroup, migration_phases: Mapping[str, str]) -> bool:
    """Blocked by SM, or at a facility mid-migration to Oracle Health."""
    return group.blocked_status or _migrating(group, migration_phases)


def _migrating(group: TriageGroup, migration_phases: Mapping[str, str]) -> bool:
    phase = migration_phases.get(group.station_number) or migration_phases.get(group.parent_station)
    return group.migrating_to_oh or phase in BLOCKING_MIGRATION_PHASES


def is_allowed(group: TriageGroup, migration_phases: Mapping[str, str]) -> bool:
    """The Veteran may message the team: it is on their contact list and not blocked."""
    return group.preferred_team and not is_blocked(group, migration_phases)


def options(directory: VeteranCareTeams, oh_pilot: bool, today: date) -> CareTeamOptions:
    """The Veteran's allowed care teams by care system, their recent teams, and blocked facilities.

    Oracle Health teams are offered only when the OH pilot is on for the Veteran; without it, a Veteran
    with only Oracle Health facilities has no care teams to offer. Raises ``NoCareTeam``.
    """
    offered = [g for g in directory.groups if oh_pilot or not g.oh_triage_group]
    if directory.associated_triage_groups == 0 or not offered:
        raise NoCareTeam(UnavailableReason.NO_ASSOCIATIONS)
    phases = directory.migration_phases
    blocked = _blocked_facilities(offered, phases)
    allowed = [g for g in offered if is_allowed(g, phases)]
    if not allowed:
        if any(facility.migratingToOh for facility in blocked):
            raise NoCareTeam(UnavailableReason.FACILITY_MIGRATING, blocked)
        if blocked:
            raise NoCareTeam(UnavailableReason.ALL_BLOCKED, blocked)
        raise NoCareTeam(UnavailableReason.NO_ASSOCIATIONS)
    systems = _care_systems(allowed)
    return CareTeamOptions(
        care_systems=systems,
        recent_teams=_recent_teams(allowed, directory.sent, today),
        blocked_facilities=blocked,
        picker=picker_for(len(systems)),
    )


def resolve(
    directory: VeteranCareTeams, prescription: Prescription, oh_pilot: bool, today: date
) -> Resolution:
    """The options for renewing ``prescription``, its care system first, with a suggested team.

    The suggestion comes from the prescription's care system: the team the Veteran messaged most
    recently, else the prescriber's team, else a pharmacy team, else none (the Veteran picks).
    """
    found = options(directory, oh_pilot, today)
    station = prescription.stationNumber
    home = next((s for s in found.care_systems if _serves(s, station)), None) if station else None
    if home is None:
        return Resolution(found, None)
    systems = [home, *(s for s in found.care_systems if s is not home)]
    ordered = CareTeamOptions(systems, found.recent_teams, found.blocked_facilities, found.picker)
    return Resolution(ordered, _suggest(home, found.recent_teams, prescription))


def _serves(system: CareSystem, station: str) -> bool:
    return any(team.stationNumber[:3] == station[:3] for team in system.teams)


def _suggest(
    system: CareSystem, recent: Sequence[CareTeam], prescription: Prescription
) -> Suggestion | None:
    in_system = {team.triageTeamId for team in system.teams}
    recent_here = next((team for team in recent if team.triageTeamId in in_system), None)
    if recent_here is not None:
        return Suggestion(recent_here, "recent_team")
    station = prescription.stationNumber
    nearest = sorted(system.teams, key=lambda team: team.stationNumber != station)
    prescriber = next((t for t in nearest if _is_prescriber(t, prescription)), None)
    if prescriber is not None:
        return Suggestion(prescriber, "prescriber_team")
    pharmacy = next((t for t in nearest if t.groupTypeEnumVal == PHARMACY), None)
    return Suggestion(pharmacy, "pharmacy") if pharmacy is not None else None


def _is_prescriber(team: CareTeam, prescription: Prescription) -> bool:
    """The team's lead provider ("Last, First") is the prescription's provider."""
    last = (prescription.providerLastName or "").strip().casefold()
    if not last or not team.leadProviderName:
        return False
    lead_last, _, lead_first = team.leadProviderName.partition(",")
    first = (prescription.providerFirstName or "").strip().casefold()
    first_names_agree = not first or not lead_first.strip() or _first_word(lead_first) == first
    return lead_last.strip().casefold() == last and first_names_agree


def _first_word(text: str) -> str:
    words = text.strip().casefold().split()
    return words[0] if words else ""


def _blocked_facilities(
    groups: Iterable[TriageGroup], phases: Mapping[str, str]
) -> list[BlockedFacility]:
    """Facilities (stations) where every team is blocked."""
    by_station = sorted(groups, key=lambda g: g.station_number)
    blocked = []
    for station, grouped in groupby(by_station, key=lambda g: g.station_number):
        teams = list(grouped)
        if all(is_blocked(team, phases) for team in teams):
            blocked.append(
                BlockedFacility(
                    stationNumber=station,
                    careSystemName=teams[0].system_name,
                    ehr=teams[0].ehr,
                    migratingToOh=any(_migrating(team, phases) for team in teams),
                )
            )
    return blocked


def _care_systems(allowed: Iterable[TriageGroup]) -> list[CareSystem]:
    """Allowed teams grouped by health care system (several stations may share one), by name."""
    by_system: dict[str, list[TriageGroup]] = {}
    for group in allowed:
        by_system.setdefault(group.system_name, []).append(group)
    systems = [
        CareSystem(
            stationNumber=min(group.parent_station for group in groups),
            careSystemName=name,
            ehr=Ehr.ORACLE_HEALTH if any(g.oh_triage_group for g in groups) else Ehr.VISTA,
            teams=sorted(
                (group.care_team() for group in groups), key=lambda t: t.displayName.casefold()
            ),
        )
        for name, groups in by_system.items()
    ]
    return sorted(systems, key=lambda system: system.careSystemName.casefold())


def _recent_teams(
    allowed: Iterable[TriageGroup], sent: Iterable[SentMessage], today: date
) -> list[CareTeam]:
    """Allowed teams messaged in the last 6 months, newest first, each once, at most 4."""
    teams = {group.triage_team_id: group.care_team() for group in allowed}
    since = months_before(today, RECENT_MONTHS)
    recent: list[CareTeam] = []
    for message in sorted(sent, key=lambda m: m.sent_on, reverse=True):
        team = teams.get(message.recipient_id)
        if message.sent_on >= since and team is not None and team not in recent:
            recent.append(team)
    return recent[:MAX_RECENT_TEAMS]
