"""Sending, end to end on the real broker: VistA at once, Oracle Health accepted then SENT, an Oracle
Health failure ending in ``message send failed / SM98``, and a double send making one message."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from plumbing.outbox import OutboxRow
from schemas import topics
from services.messaging.adapters import storage
from services.messaging.adapters.upstream import HttpSecureMessaging
from services.messaging.domain import PollSchedule
from services.messaging.handlers import Messaging
from tests.e2e.conftest import Flow
from tests.e2e.test_messaging_drafts import (
    COLUMBUS_PRIMARY_OH,
    MIXED,
    VISTA_ONLY,
    mixed_renewal_draft,
    new_message,
    renewal_draft,
)
from tests.messaging.conftest import ALL_TRIAGE_TEAMS, OH_TEAM
from tests.messaging.fake_sm import FakeSm
from tests.support import bearer, eventually, read_topic


def deps_of(flow: Flow) -> Messaging:
    deps: Messaging = flow.apps["messaging"].state.messaging
    return deps


async def message_events(flow: Flow, draft_id: str, count: int = 1) -> list[dict[str, Any]]:
    return await read_topic(
        flow.bootstrap, topics.MESSAGES, lambda e: e.get("draft_id") == draft_id, count=count
    )


async def outbox_events(flow: Flow, draft_id: str) -> list[str]:
    """The draft's events in the messaging service's outbox, oldest first, once all are published."""

    async def published() -> list[str] | None:
        async with deps_of(flow).sessions() as session:
            rows = await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
            of_draft = [row for row in rows if json.loads(row.value)["draft_id"] == draft_id]
        if any(row.published_at is None for row in of_draft):
            return None
        return [json.loads(row.value)["event_type"] for row in of_draft]

    return await eventually(published)


async def mailbox(flow: Flow, draft_id: str) -> int:
    """Messages the built-in SM holds for the draft."""
    async with deps_of(flow).sessions() as session:
        return len(await storage.builtin_messages_of_draft(session, UUID(draft_id)))


@pytest.fixture
async def sm_api(flow: Flow) -> AsyncIterator[FakeSm]:
    """The messaging service talks to a local SM-compatible API for one test."""
    state = flow.apps["messaging"].state
    builtin = deps_of(flow)
    with FakeSm({MIXED: ALL_TRIAGE_TEAMS}) as sm:
        sm.behaviour.oh_teams = {OH_TEAM}
        upstream = HttpSecureMessaging(sm.url, timeout_seconds=2)
        polling = PollSchedule(interval=0.05, timeout=2.0)
        state.messaging = replace(builtin, upstream=upstream, polling=polling)
        try:
            yield sm
        finally:
            state.messaging = builtin
            await upstream.close()


async def test_a_vista_renewal_is_sent_and_sm_consumers_hear_of_it(flow: Flow) -> None:
    draft = await renewal_draft(flow)
    sent = await flow.messaging.post(
        f"/v1/drafts/{draft['id']}/send", json={"platform": "web"}, headers=bearer(VISTA_ONLY)
    )
    assert sent.status_code == 200, sent.text
    assert (sent.json()["ehr"], sent.json()["station_number"]) == ("vista", "442")

    [event] = await message_events(flow, draft["id"])
    assert event["event_type"] == "message.sent"
    assert (event["message_id"], event["renewal_id"]) == (
        sent.json()["message_id"],
        draft["renewal_id"],
    )
    assert (event["recipient_id"], event["station_number"], event["ehr"]) == (
        1013155,
        "442",
        "vista",
    )
    assert (event["tool"], event["team_selection"], event["platform"]) == ("sm", "suggested", "web")
    assert not {"body", "subject"} & event.keys()
    gone = await flow.messaging.get(f"/v1/drafts/{draft['id']}", headers=bearer(VISTA_ONLY))
    assert gone.status_code == 404, "a sent draft is gone, as in SM"


async def test_an_oracle_health_renewal_is_accepted_then_sent(flow: Flow) -> None:
    draft = await mixed_renewal_draft(flow, suggested=COLUMBUS_PRIMARY_OH)
    assert draft["ehr"] == "oracle_health"
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(MIXED))
    assert sent.status_code == 200, sent.text

    [event] = await message_events(flow, draft["id"])
    assert (event["event_type"], event["ehr"], event["station_number"]) == (
        "message.sent",
        "oracle_health",
        "757",
    )
    async with deps_of(flow).sessions() as session:
        [message] = await storage.builtin_messages_of_draft(session, UUID(draft["id"]))
    assert (message.id, message.status) == (event["message_id"], "SENT")


async def test_an_oracle_health_failure_ends_in_message_send_failed_sm98(
    flow: Flow, sm_api: FakeSm
) -> None:
    sm_api.behaviour.oh_outcome = "FAILED"
    created = await new_message(flow, recipient_id=COLUMBUS_PRIMARY_OH)
    assert created.status_code == 201, created.text
    draft_id = created.json()["id"]

    sent = await flow.messaging.post(f"/v1/drafts/{draft_id}/send", headers=bearer(MIXED))
    assert (sent.status_code, sent.json()["code"]) == (400, "SM98")

    [event] = await message_events(flow, draft_id)
    assert event["event_type"] == "message.send_failed"
    assert (event["error_code"], event["retryable"], event["tool"]) == ("SM98", False, "sm")
    assert (event["ehr"], event["recipient_id"]) == ("oracle_health", COLUMBUS_PRIMARY_OH)
    assert event["message_id"] in sm_api.messages
    kept = await flow.messaging.get(f"/v1/drafts/{draft_id}", headers=bearer(MIXED))
    assert kept.status_code == 200, "the draft stays for the Veteran to send again"


async def test_sm_unavailable_is_a_retryable_503(flow: Flow, sm_api: FakeSm) -> None:
    created = await new_message(flow)
    sm_api.behaviour.failure = (503, None)
    sent = await flow.messaging.post(
        f"/v1/drafts/{created.json()['id']}/send", headers=bearer(MIXED)
    )
    assert (sent.status_code, sent.json()["code"]) == (503, "SM901")
    [event] = await message_events(flow, created.json()["id"])
    assert (event["error_code"], event["retryable"]) == ("SM901", True)


async def test_a_double_send_makes_one_message(flow: Flow) -> None:
    draft = await mixed_renewal_draft(flow, suggested=COLUMBUS_PRIMARY_OH)
    url = f"/v1/drafts/{draft['id']}/send"
    first, second = await asyncio.gather(
        flow.messaging.post(url, headers=bearer(MIXED)),
        flow.messaging.post(url, headers=bearer(MIXED)),
    )
    third = await flow.messaging.post(url, headers=bearer(MIXED))
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json()["message_id"] == second.json()["message_id"] == third.json()["message_id"]
    assert await mailbox(flow, draft["id"]) == 1

    [event] = await message_events(flow, draft["id"])
    assert event["message_id"] == first.json()["message_id"]
    assert await outbox_events(flow, draft["id"]) == ["draft.created", "message.sent"], (
        "one message.sent however often the draft is sent"
    )


async def test_a_draft_without_a_care_team_is_not_sent(flow: Flow) -> None:
    draft = await mixed_renewal_draft(flow, suggested=None)
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(MIXED))
    assert (sent.status_code, sent.json()["code"]) == (422, "recipient_required")
    kept = await flow.messaging.get(f"/v1/drafts/{draft['id']}", headers=bearer(MIXED))
    assert kept.status_code == 200
