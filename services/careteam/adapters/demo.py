"""The bundled demo directory: SM "all recipients" data per Veteran, from ``data/demo_directory.json``.

Each Veteran holds SM's ``alltriageteams`` answer as SM sends it, the Oracle Health migration schedules of
their facilities (as in the VA.gov profile's ``migrationSchedules``), and their sent messages, dated in
days before today so the demo's "recent" teams stay recent. ``data/README.md`` describes every Veteran.
"""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.careteam.adapters.directory import AllTriageTeams, SmRecord, veteran_care_teams
from services.careteam.domain import SentMessage, VeteranCareTeams

DEMO_DIRECTORY = Path(__file__).resolve().parent.parent / "data" / "demo_directory.json"


def utc_today() -> date:
    return datetime.now(UTC).date()


class MigrationFacility(SmRecord):
    facility_id: str


class MigrationPhases(SmRecord):
    current: str = Field(pattern=r"^p[0-7]$")


class MigrationSchedule(SmRecord):
    facilities: list[MigrationFacility]
    phases: MigrationPhases


class DemoSentMessage(SmRecord):
    recipient_id: int
    sent_days_ago: int = Field(ge=0)


class DemoVeteran(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    summary: str
    allTriageTeams: list[dict[str, object]]  # noqa: N815 - SM's name for the answer
    migrationSchedules: list[MigrationSchedule] = []  # noqa: N815 - the VA.gov profile's name
    sentMessages: list[DemoSentMessage] = []  # noqa: N815 - demo data, named like SM's


class DemoData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    veterans: dict[str, DemoVeteran]


class DemoDirectory:
    """Care teams from a JSON file in the repository; a Veteran not in it has no associations."""

    def __init__(self, path: Path = DEMO_DIRECTORY, today: Callable[[], date] = utc_today) -> None:
        self._veterans = DemoData.model_validate(json.loads(path.read_text())).veterans
        self._triage_teams = {
            veteran_id: AllTriageTeams.from_sm(veteran.allTriageTeams)
            for veteran_id, veteran in self._veterans.items()
        }
        self._today = today

    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        veteran = self._veterans.get(veteran_id)
        if veteran is None:
            return VeteranCareTeams(associated_triage_groups=0)
        today = self._today()
        phases = {
            facility.facility_id: schedule.phases.current
            for schedule in veteran.migrationSchedules
            for facility in schedule.facilities
        }
        sent = [
            SentMessage(m.recipient_id, today - timedelta(days=m.sent_days_ago))
            for m in veteran.sentMessages
        ]
        return veteran_care_teams(self._triage_teams[veteran_id], sent, phases)
