"""The renewal use cases on a real SQLite ledger, with an in-memory publisher standing in for Kafka."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from plumbing.database import create_tables, make_engine, session_factory
from schemas.events import (
    CareTeamsResolved,
    CareTeamUnavailable,
    DraftCreated,
    Event,
    RenewalRequested,
)
from schemas.records import Prescription, RenewalRequest
from schemas.vocabulary import Category, Ehr, PickerKind, Tool, UnavailableReason
from services.renewal import handlers
from services.renewal.adapters.ledger import Base
from services.renewal.domain import Refusal, Status, Step, Waiting
from services.renewal.handlers import Sessions

TODAY = date.today()
VETERAN = "1012845331V153043"


class Published(list[Event]):
    """Events the use cases published, in order."""

    async def __call__(self, event: Event, /) -> None:
        self.append(event)

    def requested(self) -> list[RenewalRequested]:
        return [e for e in self if isinstance(e, RenewalRequested)]


class KafkaDown:
    async def __call__(self, event: Event, /) -> None:
        raise ConnectionError("no broker")


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/renewal.db")
    await create_tables(engine, Base)
    yield session_factory(engine)
    await engine.dispose()


def renewal_request(prescription_id: str = "22045678", **changes: Any) -> RenewalRequest:
    prescription = {
        "prescriptionId": prescription_id,
        "dispStatus": "Active",
        "refillRemaining": 0,
        "expirationDate": (TODAY + timedelta(days=60)).isoformat(),
        "isRefillable": False,
        "isRenewable": True,
        "prescriptionSource": "VA",
        "stationNumber": "442",
        **changes,
    }
    return RenewalRequest.model_validate(
        {
            "veteranId": VETERAN,
            "prescription": prescription,
            "facilities": [{"stationNumber": "442", "ehr": "vista"}],
        }
    )


async def request(
    sessions: Sessions, publish: Any, body: RenewalRequest, key: str | None = None
) -> handlers.Accepted:
    return await handlers.request_renewal(
        body,
        sessions,
        publish,
        source="http",
        idempotency_key=key,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        today=TODAY,
    )


async def status_of(sessions: Sessions, renewal_id: UUID) -> Status:
    found = await handlers.journey(sessions, renewal_id)
    assert found is not None
    return Status(found.renewal.status)


async def test_an_eligible_request_is_saved_then_published_once(sessions: Sessions) -> None:
    published = Published()
    accepted = await request(sessions, published, renewal_request())

    [event] = published.requested()
    assert event.renewal_id == accepted.renewal_id
    assert (event.veteran_id, event.ehr, event.vista_stations) == (VETERAN, Ehr.VISTA, ["442"])
    found = await handlers.journey(sessions, accepted.renewal_id)
    assert found is not None
    assert found.state.status is Status.REQUESTED
    assert found.renewal.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert [(s.step, s.tool, s.event_id) for s in found.steps] == [
        ("requested", "meds", str(event.event_id))
    ]


@pytest.mark.parametrize(
    ("first_key", "second_key"),
    [("key-1", "key-1"), (None, None), ("key-1", None), ("key-1", "key-2")],
    ids=["same key", "no key, renewal open", "key then none", "another key, renewal open"],
)
async def test_a_repeated_request_returns_the_same_renewal_and_publishes_nothing_new(
    sessions: Sessions, first_key: str | None, second_key: str | None
) -> None:
    published = Published()
    first = await request(sessions, published, renewal_request(), first_key)
    second = await request(sessions, published, renewal_request(), second_key)
    assert second.renewal_id == first.renewal_id
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.status is second.status is Status.REQUESTED
    assert len(published.requested()) == 1


async def test_identical_requests_at_the_same_moment_make_one_renewal(sessions: Sessions) -> None:
    published = Published()
    results = await asyncio.gather(
        *(request(sessions, published, renewal_request(), "same") for _ in range(5))
    )
    assert len({accepted.renewal_id for accepted in results}) == 1
    assert len(published.requested()) == 1


async def test_once_closed_the_same_prescription_may_be_renewed_again(sessions: Sessions) -> None:
    published = Published()
    first = await request(sessions, published, renewal_request())
    await handlers.record_step(
        CareTeamUnavailable(
            renewal_id=first.renewal_id,
            veteran_id=VETERAN,
            ehr=Ehr.VISTA,
            reason=UnavailableReason.NO_ASSOCIATIONS,
        ),
        sessions,
    )
    second = await request(sessions, published, renewal_request())
    assert second.renewal_id != first.renewal_id
    assert len(published.requested()) == 2


async def test_a_key_reused_for_another_prescription_is_refused(sessions: Sessions) -> None:
    await request(sessions, Published(), renewal_request("1"), "key-1")
    with pytest.raises(handlers.IdempotencyKeyReused):
        await request(sessions, Published(), renewal_request("2"), "key-1")


async def test_a_refusal_is_recorded_and_publishes_nothing(sessions: Sessions) -> None:
    published = Published()
    body = renewal_request(refillRemaining=2, isRefillable=True)
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, published, body, "key-r")
    assert refused.value.refusal is Refusal.REFILLABLE
    assert published == []

    found = await handlers.journey_for_key(sessions, "key-r")
    assert found is not None
    assert UUID(found.renewal.id) == refused.value.renewal_id
    assert found.state.status is Status.REFUSED
    assert found.state.failure is not None
    assert (found.state.failure.tool, found.state.failure.error_code) == (Tool.MEDS, "refillable")

    with pytest.raises(handlers.NotRenewable) as again:
        await request(sessions, published, body, "key-r")
    assert again.value.renewal_id == refused.value.renewal_id


async def test_a_failed_publish_is_retried_by_the_same_request_with_the_same_event(
    sessions: Sessions,
) -> None:
    with pytest.raises(handlers.NotQueued) as not_queued:
        await request(sessions, KafkaDown(), renewal_request(), "key-p")
    renewal_id = not_queued.value.renewal_id
    assert await status_of(sessions, renewal_id) is Status.ACCEPTED

    published = Published()
    retried = await request(sessions, published, renewal_request(), "key-p")
    again = await request(sessions, published, renewal_request(), "key-p")
    assert retried.renewal_id == again.renewal_id == renewal_id
    [event] = published.requested()
    assert event.renewal_id == renewal_id
    assert await status_of(sessions, renewal_id) is Status.REQUESTED


def resolved(renewal_id: UUID) -> CareTeamsResolved:
    return CareTeamsResolved(
        renewal_id=renewal_id,
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId="22045678"),
        care_systems=[],
        suggested_team_id=None,
        picker=PickerKind.AUTO,
    )


def drafted(renewal_id: UUID) -> DraftCreated:
    return DraftCreated(
        renewal_id=renewal_id,
        draft_id=uuid4(),
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        category=Category.MEDICATIONS,
        recipient_id=1013155,
    )


async def test_the_ledger_records_each_event_once_in_any_order(sessions: Sessions) -> None:
    accepted = await request(sessions, Published(), renewal_request())
    care_teams, draft = resolved(accepted.renewal_id), drafted(accepted.renewal_id)

    first = await handlers.record_step(draft, sessions)
    assert first is not None and first.status is Status.DRAFTED
    assert await handlers.record_step(care_teams, sessions) is not None
    assert await handlers.record_step(draft, sessions) is None
    assert await handlers.record_step(care_teams, sessions) is None

    found = await handlers.journey(sessions, accepted.renewal_id)
    assert found is not None
    assert found.state.status is Status.DRAFTED
    assert sorted(s.step for s in found.steps) == [
        "care_team_resolved",
        "draft_created",
        "requested",
    ]


async def test_events_of_unknown_renewals_are_ignored(sessions: Sessions) -> None:
    assert await handlers.record_step(resolved(uuid4()), sessions) is None


async def test_a_renewal_waiting_too_long_is_stalled_until_its_step_arrives(
    sessions: Sessions,
) -> None:
    accepted = await request(sessions, Published(), renewal_request())
    timeout = timedelta(seconds=300)
    soon = datetime.now(UTC) + timedelta(seconds=60)
    later = datetime.now(UTC) + timedelta(seconds=301)

    assert await handlers.mark_stalled(sessions, soon, timeout) == []
    [stall] = await handlers.mark_stalled(sessions, later, timeout)
    assert stall.renewal_id == accepted.renewal_id
    assert stall.waiting == Waiting(Step.CARE_TEAM_RESOLVED, Tool.SM)
    assert await handlers.mark_stalled(sessions, later, timeout) == [], "marked once"
    found = await handlers.journey(sessions, accepted.renewal_id)
    assert found is not None
    assert (found.renewal.stalled_step, found.renewal.stalled_tool) == ("care_team_resolved", "sm")

    await handlers.record_step(resolved(accepted.renewal_id), sessions)
    found = await handlers.journey(sessions, accepted.renewal_id)
    assert found is not None
    assert found.renewal.stalled_at is None
    assert found.state.status is Status.CARE_TEAM_RESOLVED


async def test_an_unpublished_renewal_stalls_on_meds(sessions: Sessions) -> None:
    with pytest.raises(handlers.NotQueued):
        await request(sessions, KafkaDown(), renewal_request())
    later = datetime.now(UTC) + timedelta(seconds=301)
    [stall] = await handlers.mark_stalled(sessions, later, timedelta(seconds=300))
    assert stall.waiting == Waiting(Step.REQUESTED, Tool.MEDS)


async def test_the_stall_clock_starts_when_the_ledger_sees_a_step(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal published ten minutes late is not stalled on SM at once: SM's clock starts at the
    publish, not when the request was first saved."""
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(handlers, "_now", lambda: clock[0])
    timeout = timedelta(seconds=300)
    with pytest.raises(handlers.NotQueued):
        await request(sessions, KafkaDown(), renewal_request(), "key-late")

    clock[0] += timedelta(minutes=10)
    accepted = await request(sessions, Published(), renewal_request(), "key-late")
    assert await handlers.mark_stalled(sessions, clock[0] + timedelta(seconds=60), timeout) == []
    [stall] = await handlers.mark_stalled(sessions, clock[0] + timedelta(seconds=301), timeout)
    assert (stall.renewal_id, stall.waiting.tool) == (accepted.renewal_id, Tool.SM)
