"""The rollout as the messaging service lives it, on the real broker: a renewal's draft and message
events carry the cohort of its care-teams event, a new message takes the Veteran's cohort from the
flags at the time, and a draft that exists stays editable and sendable after the renewal flag turns
off (the in-flight rule)."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from plumbing.flags import OH_PILOT, RENEWAL_FLOW, FeatureFlags
from schemas import topics
from schemas.vocabulary import Cohort
from tests.e2e.conftest import Flow
from tests.e2e.test_messaging_delivery import care_teams_resolved, deliver, draft_of
from tests.e2e.test_messaging_drafts import MIXED, draft_events, new_message
from tests.support import bearer, eventually, read_topic


def flags_of(flow: Flow) -> FeatureFlags:
    flags: FeatureFlags = flow.apps["messaging"].state.flags
    return flags


@asynccontextmanager
async def rollout(
    flow: Flow, flag: str, seen: Callable[[FeatureFlags], bool], **changes: Any
) -> AsyncIterator[None]:
    """``flag`` changed as ``changes`` say for the block, from when the messaging service has
    ``seen`` the change; then the rollout before it is back (and seen to be)."""
    before, _ = flow.flags.change(flag, by="messaging rollout test", **changes)
    try:
        await eventually(lambda: _true_or_none(seen(flags_of(flow))))
        yield
    finally:
        flow.flags.write(flag, before)
        await eventually(lambda: _true_or_none(not seen(flags_of(flow))))


async def _true_or_none(value: bool) -> bool | None:
    return value or None


async def test_a_renewals_events_carry_the_cohort_of_its_care_teams_event(flow: Flow) -> None:
    event = care_teams_resolved(cohort=Cohort.BASE)
    await deliver(flow, event)
    draft = await draft_of(flow, event)
    url, owner = f"/v1/drafts/{draft['id']}", bearer(MIXED)
    assert (await flow.messaging.put(url, json={"body": "Please renew"}, headers=owner)).is_success
    assert (await flow.messaging.post(f"{url}/send", headers=owner)).is_success

    drafted = await draft_events(flow, draft["id"], count=2)
    [sent] = await read_topic(
        flow.bootstrap, topics.MESSAGES, lambda e: e.get("draft_id") == draft["id"]
    )
    assert [(e["event_type"], e["cohort"]) for e in [*drafted, sent]] == [
        ("draft.created", "base"),
        ("draft.updated", "base"),
        ("message.sent", "base"),
    ]


async def test_a_new_message_takes_the_veterans_cohort_from_the_flags(flow: Flow) -> None:
    async with rollout(
        flow, OH_PILOT, lambda flags: flags.cohort(MIXED) == "base", percentage=0, allow=()
    ):
        created = await new_message(flow)
    assert created.status_code == 201, created.text
    [event] = await draft_events(flow, created.json()["id"])
    assert (event["event_type"], event["cohort"]) == ("draft.created", "base")

    in_pilot = await new_message(flow)
    [event] = await draft_events(flow, in_pilot.json()["id"])
    assert event["cohort"] == flags_of(flow).cohort(MIXED) == "new"


async def test_a_draft_made_before_the_renewal_flag_turned_off_stays_editable_and_sendable(
    flow: Flow,
) -> None:
    event = care_teams_resolved(cohort=Cohort.NEW)
    await deliver(flow, event)
    draft = await draft_of(flow, event)
    url, owner = f"/v1/drafts/{draft['id']}", bearer(MIXED)
    async with rollout(
        flow, RENEWAL_FLOW, lambda flags: not flags.is_on(RENEWAL_FLOW, MIXED), killed=True
    ):
        edited = await flow.messaging.put(url, json={"body": "Please renew"}, headers=owner)
        assert edited.status_code == 200, edited.text
        sent = await flow.messaging.post(f"{url}/send", headers=owner)
        assert sent.status_code == 200, sent.text
    [message] = await read_topic(
        flow.bootstrap, topics.MESSAGES, lambda e: e.get("draft_id") == draft["id"]
    )
    assert (message["event_type"], message["cohort"]) == ("message.sent", "new")
