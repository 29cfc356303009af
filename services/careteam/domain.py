"""Care-team resolution: pure rules over SM triage-group records, no I/O (domain.md sections 1 and 3).

VistA maps teams to the patient (a contact list of preferred teams); Oracle Health lists message pools per
facility. Both arrive as SM "all recipients" records and are normalised here into one ``CareTeam`` model,
then grouped into care systems for the picker. A care system is a station, as VA's Secure Messaging has
it: vets-api normalises the station numbers and names a few systems itself
(``modules/my_health/app/helpers/my_health/facilities_helper.rb``), and vets-website offers every station
of the answer but those where every team is blocked (``util/helpers.js`` ``findBlockedFacilities``,
``containers/SelectCareTeam.jsx``). Stations that share a system name stay separate care systems.
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from schemas.events import SuggestionBasis
from schemas.records import BlockedFacility, CareSystem, CareTeam, Prescription
from schemas.vocabulary import Cohort, Ehr, PickerKind, UnavailableReason

BLOCKING_MIGRATION_PHASES = frozenset({"p3", "p4", "p5", "p6"})
"""Oracle Health cut-over phases (6 days before to 2 days after) in which a facility's teams are blocked
(vets-api ``lib/sm/client/triage_teams.rb``, ``update_teams_migration_status``)."""

STATION_ALIASES = {"612": "612A4"}
"""Station numbers vets-api replaces in production (``facilities_helper.rb``, ``convert_prod_id``)."""

FIXED_SYSTEM_NAMES = {
    "528": "VA New York state health care (multiple facilities)",
    "589": "VA Kansas and Missouri health care (multiple facilities)",
    "620": "VA Hudson Valley New York health care (multiple facilities)",
    "626": "VA Tennessee health care (multiple facilities)",
    "636": "VA Nebraska and Iowa health care (multiple facilities)",
    "657": "VA Missouri and Illinois health care (multiple facilities)",
    "612": "VA Northern California (multiple facilities)",
    "612A4": "VA Northern California (multiple facilities)",
}
"""The system names vets-api sets itself, by normalised station number, whatever SM sent
(``facilities_helper.rb``, ``COMPLICATED_SYSTEMS``). A division (``528A7``) keeps SM's name."""

MAX_RADIO_OPTIONS = 6
"""From this many care systems on, the picker is a dropdown (vets-website ``SelectCareTeam.jsx``)."""

RECENT_MONTHS = 6
MAX_RECENT_TEAMS = 4
PHARMACY = "PHARMACY"


def care_system_station(station_number: str) -> str:
    """The care system's station number for a station as SM sends it (``612`` -> ``612A4``)."""
    return STATION_ALIASES.get(station_number, station_number)


def care_system_name(station_number: str, sm_name: str | None) -> str:
    """vets-api's fixed name for the station, else SM's ``healthCareSystemName``, else the station.

    vets-website labels a care system by its own facility data, falling back to the station number;
    rxsm has no such data, so SM's name stands in for it.
    """
    station = care_system_station(station_number)
    return FIXED_SYSTEM_NAMES.get(station) or sm_name or station


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
    def station(self) -> str:
        """The care system's station number (``care_system_station``)."""
        return care_system_station(self.station_number)

    @property
    def system_name(self) -> str:
        return care_system_name(self.station_number, self.care_system_name)

    def care_team(self) -> CareTeam:
        return CareTeam(
            triageTeamId=self.triage_team_id,
            name=self.name,
            displayName=self.suggested_name_display or self.name,
            stationNumber=self.station,
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
    associated_blocked_triage_groups: int | None = None
    """SM's ``associatedBlockedTriageGroups``, where SM sent it."""
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
        """The care system with that station number (``612`` finds ``612A4``)."""
        wanted = care_system_station(station)
        return next(
            (system for system in self.care_systems if system.stationNumber == wanted), None
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
    """1 care system is chosen automatically, 2-5 are radio tiles, 6 or more a dropdown.

    vets-website ``SelectCareTeam.jsx``: radio tiles when ``1 < count < MAX_RADIO_OPTIONS``, a
    dropdown when ``count >= MAX_RADIO_OPTIONS``, no picker at all for a single care system.
    """
    if system_count <= 1:
        return PickerKind.AUTO
    return PickerKind.RADIO if system_count < MAX_RADIO_OPTIONS else PickerKind.DROPDOWN


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
    """SM's own flag, or the phase of the team's station exactly as SM sent it (as vets-api looks it up:
    a schedule for ``612`` says nothing of ``612A4``)."""
    phase = migration_phases.get(group.station_number)
    return group.migrating_to_oh or phase in BLOCKING_MIGRATION_PHASES


def is_allowed(group: TriageGroup, migration_phases: Mapping[str, str]) -> bool:
    """The Veteran may message the team: it is on their contact list and not blocked."""
    return group.preferred_team and not is_blocked(group, migration_phases)


def options(directory: VeteranCareTeams, oh_pilot: bool, today: date) -> CareTeamOptions:
    """The Veteran's care systems with their allowed teams, their recent teams, and blocked facilities.

    Oracle Health teams are offered only when the OH pilot is on for the Veteran (vets-api asks SM for
    them only then); without it, a Veteran with only Oracle Health facilities has no care teams to
    offer. Raises ``NoCareTeam``: no associations (vets-website ``reducers/recipients.js``: SM counts
    none, or sends no record); every team blocked (SM counts as many blocked teams as teams, or no
    team is allowed and a facility is blocked), reported as migrating when a blocked facility is
    moving to Oracle Health; or no team on the Veteran's contact list.
    """
    offered = [g for g in directory.groups if oh_pilot or not g.oh_triage_group]
    if directory.associated_triage_groups == 0 or not offered:
        raise NoCareTeam(UnavailableReason.NO_ASSOCIATIONS)
    phases = directory.migration_phases
    blocked = _blocked_facilities(offered, phases)
    allowed = [g for g in offered if is_allowed(g, phases)]
    counted_all_blocked = (
        directory.associated_triage_groups is not None
        and directory.associated_triage_groups == directory.associated_blocked_triage_groups
    )
    if not allowed or counted_all_blocked:
        if any(facility.migratingToOh for facility in blocked):
            raise NoCareTeam(UnavailableReason.FACILITY_MIGRATING, blocked)
        if blocked or counted_all_blocked:
            raise NoCareTeam(UnavailableReason.ALL_BLOCKED, blocked)
        raise NoCareTeam(UnavailableReason.NO_ASSOCIATIONS)
    systems = _care_systems(offered, allowed, {facility.stationNumber for facility in blocked})
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
    home = _home(found.care_systems, prescription.stationNumber)
    if home is None:
        return Resolution(found, None)
    systems = [home, *(s for s in found.care_systems if s is not home)]
    ordered = CareTeamOptions(systems, found.recent_teams, found.blocked_facilities, found.picker)
    return Resolution(ordered, _suggest(home, found.recent_teams, prescription))


def _home(systems: Sequence[CareSystem], station: str | None) -> CareSystem | None:
    """The prescription's care system: its own station, else the first at a division of the same
    3-digit station (a prescription from ``528`` when the Veteran's teams are at ``528A7``)."""
    if not station:
        return None
    wanted = care_system_station(station)
    exact = next((system for system in systems if system.stationNumber == wanted), None)
    return exact or next((s for s in systems if s.stationNumber[:3] == wanted[:3]), None)


def _suggest(
    system: CareSystem, recent: Sequence[CareTeam], prescription: Prescription
) -> Suggestion | None:
    in_system = {team.triageTeamId for team in system.teams}
    recent_here = next((team for team in recent if team.triageTeamId in in_system), None)
    if recent_here is not None:
        return Suggestion(recent_here, "recent_team")
    prescriber = next((t for t in system.teams if _is_prescriber(t, prescription)), None)
    if prescriber is not None:
        return Suggestion(prescriber, "prescriber_team")
    pharmacy = next((t for t in system.teams if t.groupTypeEnumVal == PHARMACY), None)
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


def _by_station(groups: Iterable[TriageGroup]) -> dict[str, list[TriageGroup]]:
    """Teams by care-system station, stations in the order the answer first names them."""
    stations: dict[str, list[TriageGroup]] = {}
    for group in groups:
        stations.setdefault(group.station, []).append(group)
    return stations


def _blocked_facilities(
    groups: Iterable[TriageGroup], phases: Mapping[str, str]
) -> list[BlockedFacility]:
    """Facilities (stations) where every team is blocked, by station number."""
    return [
        BlockedFacility(
            stationNumber=station,
            careSystemName=_system_name(teams),
            ehr=_ehr(teams),
            migratingToOh=any(_migrating(team, phases) for team in teams),
        )
        for station, teams in sorted(_by_station(groups).items())
        if all(is_blocked(team, phases) for team in teams)
    ]


def _care_systems(
    offered: Iterable[TriageGroup], allowed: Iterable[TriageGroup], blocked: Collection[str]
) -> list[CareSystem]:
    """Every station of the answer but the fully blocked ones, each with its allowed teams.

    As on VA.gov, a station none of whose teams is on the Veteran's contact list is still a care
    system; it has no team to choose. Ordered by name, then station number.
    """
    allowed_teams = set(allowed)
    systems = [
        CareSystem(
            stationNumber=station,
            careSystemName=_system_name(teams),
            ehr=_ehr(teams),
            teams=sorted(
                (team.care_team() for team in teams if team in allowed_teams),
                key=lambda t: t.displayName.casefold(),
            ),
        )
        for station, teams in _by_station(offered).items()
        if station not in blocked
    ]
    return sorted(systems, key=lambda s: (s.careSystemName.casefold(), s.stationNumber))


def _system_name(teams: Sequence[TriageGroup]) -> str:
    """The station's name: the first SM gave for it (or vets-api's fixed one)."""
    given = next((team.care_system_name for team in teams if team.care_system_name), None)
    return care_system_name(teams[0].station_number, given)


def _ehr(teams: Iterable[TriageGroup]) -> Ehr:
    return Ehr.ORACLE_HEALTH if any(team.oh_triage_group for team in teams) else Ehr.VISTA


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
