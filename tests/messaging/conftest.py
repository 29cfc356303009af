"""The messaging service's use cases on a real database: SQLite always, and PostgreSQL as well when
``RXSM_TEST_DATABASE_URL`` names one (CI starts a throwaway cluster for it). On PostgreSQL these
tests keep their tables in a schema of their own, so the end-to-end messaging service's outbox relay
(on the same database) never publishes what they stage."""

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.outbox import OutboxBase, OutboxRow
from schemas.events import Event, any_event
from schemas.vocabulary import Cohort
from services.messaging.adapters.storage import Base
from services.messaging.adapters.upstream import BuiltinSecureMessaging, HttpSecureMessaging
from services.messaging.domain import PollSchedule
from services.messaging.handlers import Messaging, Sessions
from tests.messaging.fake_sm import FakeSm

TEST_DATABASE_URL = os.environ.get("RXSM_TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]
TEST_SCHEMA = "messaging_use_cases"

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


@dataclass
class FixedCohorts:
    """Every Veteran is in ``cohort`` (the feature flags, as the use cases see them)."""

    cohort_of_everyone: Cohort = Cohort.NEW

    def cohort(self, veteran_id: str) -> str:
        return self.cohort_of_everyone.value


@dataclass
class Wakes:
    """Counts how often the use cases woke the outbox relay."""

    count: int = 0

    def __call__(self) -> None:
        self.count += 1


async def staged(deps: Messaging, draft_id: UUID, event_type: str | None = None) -> list[Event]:
    """The events the use cases staged in the outbox for ``draft_id``, oldest first."""
    async with deps.sessions() as session:
        rows = await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        events: list[Event] = [any_event.validate_json(row.value) for row in rows]
    return [
        event
        for event in events
        if getattr(event, "draft_id", None) == draft_id and event_type in (None, event.event_type)
    ]


def _engine(backend: str, tmp_path: Path) -> AsyncEngine:
    if backend == "sqlite":
        return make_engine(f"sqlite+aiosqlite:///{tmp_path}/messaging.db")
    return create_async_engine(
        str(TEST_DATABASE_URL), connect_args={"server_settings": {"search_path": TEST_SCHEMA}}
    )


@pytest.fixture(params=BACKENDS)
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    engine = _engine(request.param, tmp_path)
    if request.param == "postgresql":
        async with engine.begin() as connection:
            await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {TEST_SCHEMA}"))
    await create_tables(engine, Base)
    await create_tables(engine, OutboxBase)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def recipients_file(tmp_path: Path) -> Path:
    path = tmp_path / "sm_recipients.json"
    path.write_text(json.dumps({"veterans": {VETERAN: {"allTriageTeams": ALL_TRIAGE_TEAMS}}}))
    return path


FAST_POLLING = PollSchedule(interval=0.01, timeout=0.2, max_errors=2)
"""VA's polling rule on a short clock, for the use cases against a real SM (local or HTTP)."""


@pytest.fixture
def builtin(sessions: Sessions, recipients_file: Path) -> Messaging:
    """The use cases against the built-in SM."""
    return Messaging(
        sessions,
        BuiltinSecureMessaging(sessions, recipients_file),
        FAST_POLLING,
        FixedCohorts(),
        Wakes(),
    )


@pytest.fixture
def fake_sm() -> Iterator[FakeSm]:
    with FakeSm({VETERAN: ALL_TRIAGE_TEAMS}) as sm:
        sm.behaviour.oh_teams = {OH_TEAM}
        yield sm


@pytest.fixture
async def over_http(sessions: Sessions, fake_sm: FakeSm) -> AsyncIterator[Messaging]:
    """The use cases against an SM-compatible API (the local fake), with a timeout shorter than the slow answers the tests ask of it."""
    upstream = HttpSecureMessaging(fake_sm.url, timeout_seconds=1.0)
    try:
        yield Messaging(sessions, upstream, FAST_POLLING, FixedCohorts(), Wakes())
    finally:
        await upstream.close()
