"""How ``subscribe`` asks the broker for records: the options every rxsm consumer runs with."""

from typing import Any

import pytest
from faststream.kafka import KafkaRouter

from plumbing.broker import FETCH_WAIT_MS, subscribe
from plumbing.identity import ServiceIdentity
from schemas.vocabulary import Tool


async def handler(_: Any) -> None:
    return None


def options_by_topics(router: KafkaRouter) -> dict[tuple[str, ...], dict[str, Any]]:
    """Each subscriber's topics and the consumer options FastStream will build it with."""
    return {
        tuple(topic.name for topic in subscriber.topics): subscriber._connection_args  # type: ignore[attr-defined]
        for subscriber in router.subscribers
    }


@pytest.mark.parametrize("batched", [False, True])
def test_a_topics_consumer_is_not_held_by_a_fetch_for_other_partitions(batched: bool) -> None:
    """aiokafka keeps one fetch in flight per broker and the broker holds it until there is data
    for a partition it names, or ``fetch_max_wait_ms`` (500 by default): a record on another
    partition waited that long on every hop."""
    router = KafkaRouter()
    identity = ServiceIdentity("pinger", Tool.SM)

    subscribe(
        router, "rxsm.sm.pings.v1", handler, identity, batch_handler=handler if batched else None
    )

    found = options_by_topics(router)
    assert found[("rxsm.sm.pings.v1",)]["fetch_max_wait_ms"] == FETCH_WAIT_MS
    assert FETCH_WAIT_MS <= 100
    [retry] = [options for names, options in found.items() if names != ("rxsm.sm.pings.v1",)]
    assert retry["fetch_max_wait_ms"] == 500, "the retry topics wait for their due time anyway"
