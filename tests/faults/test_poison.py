"""Poison input on every topic a service consumes goes to the dead-letter topic with the reason, and the
consumers keep going.

Malformed JSON, a wrong schema version, missing fields, a huge payload, an unknown event type and
invalid UTF-8, on each consumed topic: every consumer group that reads the topic dead-letters each
record at once (attempt 1: retrying cannot help), keeping its bytes, topic, partition and offset and a
reason that names the problem without echoing the payload. Then renewals flow as before, and every
group catches up to the end of every partition (no consumer is stuck on a record).
"""

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from rxsm.kafka_reads import read_all
from schemas import topics
from schemas.events import DeadLetter
from schemas.vocabulary import Tool
from tests.faults.cluster import Cluster
from tests.faults.flow import (
    PHI_MARKERS,
    Traffic,
    publish_requests,
    renewal_requests,
    verify,
)
from tests.faults.kafka_tools import consumers_of_topics
from tests.faults.poison import POISONS, Poison

pytestmark = pytest.mark.faults

TOOL_OF_GROUP = {
    "rxsm-renewal": Tool.MEDS,
    "rxsm-renewal-closed": Tool.MEDS,
    "rxsm-careteam": Tool.SM,
    "rxsm-messaging": Tool.SM,
    "rxsm-journey": Tool.JOURNEY,
}
"""Whose each consumer group's refusals are: the journey service belongs to neither tool."""


@dataclass(frozen=True)
class Placed:
    kind: str
    topic: str
    partition: int
    offset: int
    value: bytes


async def place_poison(
    bootstrap: str, consumed: dict[str, set[str]], poisons: tuple[Poison, ...]
) -> dict[tuple[str, int, int, str], Placed]:
    """Each poison on each consumed topic; returns them by where each group should dead-letter them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    placed = []
    try:
        for topic in consumed:
            for poison in poisons:
                value = poison.value(topic)
                sent = await producer.send_and_wait(topic, value, key=b"poison")
                placed.append(Placed(poison.kind, topic, sent.partition, sent.offset, value))
    finally:
        await producer.stop()
    return {
        (p.topic, p.partition, p.offset, group): p for p in placed for group in consumed[p.topic]
    }


async def letters_for(
    bootstrap: str, wanted: set[tuple[str, int, int, str]], within: float = 60.0
) -> dict[tuple[str, int, int, str], DeadLetter]:
    """The dead letter of each (topic, partition, offset, consumer group) wanted."""
    deadline = time.monotonic() + within
    while True:
        found = {}
        async for record in read_all(bootstrap, topics.DEAD_LETTER):
            try:
                letter = DeadLetter.model_validate_json(record.value)
            except ValidationError:  # the poison put on the dead-letter topic itself
                continue
            where = (letter.topic, letter.partition, letter.offset, letter.consumer_group)
            if where in wanted:
                found[where] = letter
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """One cluster for the module: the huge records go last."""
    cluster = Cluster(
        tmp_path_factory.mktemp("poison"), pycache=tmp_path_factory.getbasetemp() / "pycache"
    )
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()


async def dead_lettered(
    cluster: Cluster, poisons: tuple[Poison, ...]
) -> dict[tuple[str, int, int, str], tuple[Placed, DeadLetter]]:
    """Put ``poisons`` on every consumed topic; each one's dead letter for each group reading it."""
    consumed = consumers_of_topics()
    assert set(consumed) == {
        topics.RENEWAL_REQUESTS,
        topics.RENEWAL_REQUESTED,
        topics.RENEWAL_REFUSED,
        topics.CARE_TEAMS,
        topics.DRAFTS,
        topics.MESSAGES,
        topics.RENEWALS_CLOSED,
        topics.DEAD_LETTER,
    }
    expected = await place_poison(cluster.bootstrap, consumed, poisons)
    letters = await letters_for(cluster.bootstrap, set(expected))
    for where, poison in sorted(expected.items()):
        letter = letters.get(where)
        print(f"{poison.kind} on {poison.topic} -> {where[3]}: {letter and letter.reason}")
    missing = sorted(
        f"{p.kind} on {p.topic} for {w[3]}" for w, p in expected.items() if w not in letters
    )
    assert not missing, f"not dead-lettered: {missing}"
    for where, letter in letters.items():
        assert letter.attempts == 1, (expected[where].kind, where)
        assert letter.tool is TOOL_OF_GROUP[letter.consumer_group]
        assert letter.reason and not any(marker in letter.reason for marker in PHI_MARKERS)
    return {where: (expected[where], letters[where]) for where in expected}


async def renewals_still_flow(cluster: Cluster) -> None:
    """Renewals sent after the poison end in one outcome each, and every group catches up."""
    requests = renewal_requests(30)
    async with Traffic(cluster, requests) as traffic:
        await publish_requests(cluster.bootstrap, requests)
        await traffic.until_finished(len(requests))
    counts = await verify(cluster, traffic)
    counts.assert_exactly_once()


async def test_poison_on_every_consumed_topic_is_dead_lettered_with_its_bytes_and_reason(
    cluster: Cluster,
) -> None:
    poisons = tuple(poison for poison in POISONS if poison.kind != "huge payload")
    for placed, letter in (await dead_lettered(cluster, poisons)).values():
        assert base64.b64decode(letter.value) == placed.value
    await renewals_still_flow(cluster)


async def test_a_huge_record_is_dead_lettered_and_its_partition_moves_on(cluster: Cluster) -> None:
    """A record near the broker's size limit: its dead letter must fit on the dead-letter topic."""
    await dead_lettered(cluster, tuple(p for p in POISONS if p.kind == "huge payload"))
    await renewals_still_flow(cluster)
