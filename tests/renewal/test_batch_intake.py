"""Requests of one moment taken in one transaction (the ingress's batches, HTTP requests grouped):
each request's outcome is what it would have been alone, in order, and one request that cannot be
taken does not hold up the rest."""

from functools import partial

import pytest

from plumbing.outbox import EventTooLarge, outbox_record
from services.renewal import handlers
from services.renewal.domain import IntakeStatus, Refusal
from services.renewal.handlers import Ask, Sessions
from tests.renewal.test_handlers import (
    TODAY,
    Flags,
    renewal_count,
    renewal_request,
    request,
    sessions,
    staged,
)

__all__ = ["sessions"]


def ask(prescription_id: str, key: str | None = None, **changes: object) -> Ask:
    return Ask(renewal_request(prescription_id, **changes), "kafka", key, None)


async def take(sessions: Sessions, *asks: Ask) -> list[handlers.Outcome]:
    return (await handlers.request_renewals(asks, sessions, Flags(), TODAY)).outcomes


async def test_a_repeat_within_the_batch_answers_the_renewal_made_earlier_in_it(
    sessions: Sessions,
) -> None:
    first, by_prescription, by_key = await take(
        sessions, ask("1", "key-1"), ask("1"), ask("1", "key-1")
    )
    assert isinstance(first, handlers.Accepted) and not first.duplicate
    for repeat in (by_prescription, by_key):
        assert isinstance(repeat, handlers.Accepted)
        assert (repeat.renewal_id, repeat.duplicate) == (first.renewal_id, True)
        assert repeat.status is IntakeStatus.ACCEPTED
    assert await renewal_count(sessions) == 1
    assert [event.renewal_id for event in await staged(sessions)] == [first.renewal_id]


async def test_a_repeat_of_a_committed_request_finds_it(sessions: Sessions) -> None:
    committed = await request(sessions, renewal_request("1"), "key-1")
    [again, new] = await take(sessions, ask("1", "key-1"), ask("2"))
    assert isinstance(again, handlers.Accepted) and again.duplicate
    assert again.renewal_id == committed.renewal_id
    assert isinstance(new, handlers.Accepted) and not new.duplicate
    assert await renewal_count(sessions) == 2


async def test_a_key_reused_for_another_prescription_is_refused_alone(sessions: Sessions) -> None:
    [first, reused, other] = await take(
        sessions, ask("1", "key-1"), ask("2", "key-1"), ask("3", "key-3")
    )
    assert isinstance(first, handlers.Accepted)
    assert isinstance(reused, handlers.IdempotencyKeyReused)
    assert isinstance(other, handlers.Accepted)
    assert await renewal_count(sessions) == 2


async def test_a_refusal_in_the_batch_is_saved_with_its_event_and_the_rest_accepted(
    sessions: Sessions,
) -> None:
    [refused, accepted] = await take(sessions, ask("1", dispStatus="Discontinued"), ask("2"))
    assert isinstance(refused, handlers.NotRenewable) and not refused.duplicate
    assert refused.refusal is not None and refused.refusal is not Refusal.RENEWAL_FLOW_OFF
    assert isinstance(accepted, handlers.Accepted)
    assert await renewal_count(sessions) == 2


async def test_a_request_whose_event_kafka_could_never_take_is_refused_alone(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_name = ask("1", sig="x" * 1_500)
    monkeypatch.setattr(handlers, "outbox_record", partial(outbox_record, max_bytes=1_500))
    [too_large, fine] = await take(sessions, long_name, ask("2"))
    assert isinstance(too_large, EventTooLarge)
    assert isinstance(fine, handlers.Accepted)
    assert await renewal_count(sessions) == 1
    assert [event.renewal_id for event in await staged(sessions)] == [fine.renewal_id]


async def test_the_batch_returns_the_outbox_rows_it_wrote_for_publishing(
    sessions: Sessions,
) -> None:
    intakes = await handlers.request_renewals([ask("1"), ask("1")], sessions, Flags(), TODAY)
    [record] = intakes.staged
    [event] = await staged(sessions)
    assert record["event_id"] == str(event.event_id)
