"""The messaging service's use cases on a real database: SQLite always, and PostgreSQL as well when
``RXSM_TEST_DATABASE_URL`` names one (CI starts a throwaway cluster for it)."""

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from plumbing.database import create_tables, make_engine, session_factory
from schemas.events import Event
from services.messaging.adapters.storage import Base
from services.messaging.adapters.upstream import BuiltinSecureMessaging, HttpSecureMessaging
from services.messaging.domain import PollSchedule
from services.messaging.handlers import Messaging, Sessions
from tests.messaging.fake_sm import FakeSm

TEST_DATABASE_URL = os.environ.get("RXSM_TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]

VETERAN = "1012667122V019349"
VISTA_TEAM = 1554001
OH_TEAM = 3075701
BLOCKED_TEAM = 1554003
MIGRATING_TEAM = 1515001
NOT_PREFERRED_TEAM = 1554099


def team(
    team_id: int, station: str, name: str, *, oh: bool = False, **flags: bool
) -> dict[str, Any]:
    return {
        "triageTeamId": team_id,
        "name": name,
        "stationNumber": station,
        "blockedStatus": flags.get("blocked", False),
        "preferredTeam": flags.get("preferred", True),
        "relationType": "PATIENT",
        "suggestedNameDisplay": None,
        "healthCareSystemName": f"Care system {station}",
        "ohTriageGroup": oh,
        "migratingToOh": flags.get("migrating", False),
    }


ALL_TRIAGE_TEAMS: list[dict[str, Any]] = [
    {"associatedTriageGroups": 5, "associatedBlockedTriageGroups": 2},
    {
        "triageTeam": [
            team(VISTA_TEAM, "554", "DEN PACT GREEN"),
            team(BLOCKED_TEAM, "554", "DEN CARDIOLOGY", blocked=True),
            team(NOT_PREFERRED_TEAM, "554", "DEN PHARMACY", preferred=False),
            team(MIGRATING_TEAM, "515", "BC PRIMARY CARE", migrating=True),
            team(OH_TEAM, "757", "COL Primary Care", oh=True),
        ]
    },
]
"""SM's ``alltriageteams`` answer for ``VETERAN``."""


class RecordingPublish:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event, /) -> None:
        self.events.append(event)

    def of_type(self, event_type: str) -> list[Event]:
        return [event for event in self.events if event.event_type == event_type]


@pytest.fixture(params=BACKENDS)
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    url = (
        f"sqlite+aiosqlite:///{tmp_path}/messaging.db"
        if request.param == "sqlite"
        else str(TEST_DATABASE_URL)
    )
    engine = make_engine(url)
    await create_tables(engine, Base)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def recipients_file(tmp_path: Path) -> Path:
    path = tmp_path / "sm_recipients.json"
    path.write_text(json.dumps({"veterans": {VETERAN: {"allTriageTeams": ALL_TRIAGE_TEAMS}}}))
    return path


FAST_POLLING = PollSchedule(attempts=4, first_delay=0.01, max_delay=0.02)


@pytest.fixture
def builtin(sessions: Sessions, recipients_file: Path) -> Messaging:
    """The use cases against the built-in SM."""
    return Messaging(
        sessions,
        RecordingPublish(),
        BuiltinSecureMessaging(sessions, recipients_file),
        FAST_POLLING,
    )


@pytest.fixture
def fake_sm() -> Iterator[FakeSm]:
    with FakeSm({VETERAN: ALL_TRIAGE_TEAMS}) as sm:
        sm.behaviour.oh_teams = {OH_TEAM}
        yield sm


@pytest.fixture
async def over_http(sessions: Sessions, fake_sm: FakeSm) -> AsyncIterator[Messaging]:
    """The use cases against an SM-compatible API (the local fake), with a short timeout."""
    upstream = HttpSecureMessaging(fake_sm.url, timeout_seconds=0.5)
    try:
        yield Messaging(sessions, RecordingPublish(), upstream, FAST_POLLING)
    finally:
        await upstream.close()
