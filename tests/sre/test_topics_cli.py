"""`rxsm topics` lists every consumer group the broker knows, with its state and members, including
groups that have committed nothing yet, and keeps long names whole when piped."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from plumbing.deadletter import RETRY_GROUP_SUFFIX
from plumbing.topics import ensure_topics
from rxsm.cli import app
from rxsm.kafka_reads import retry_topics_of
from schemas import topics

PARTITIONS = 2


async def rxsm_topics(bootstrap: str, *args: str) -> str:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["topics", *args], env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


async def rows_of(bootstrap: str, group: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        await rxsm_topics(bootstrap, "--group", group, "--json")
    )
    return [row for row in rows if row["group"] == group]


async def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for _ in range(count):
                await producer.send_and_wait(topic, b"{}", partition=partition)
    finally:
        await producer.stop()


async def joined(bootstrap: str, group: str, topic: str) -> AIOKafkaConsumer:
    """A member of ``group`` that has been assigned ``topic`` and commits nothing."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    for _ in range(60):
        if consumer.assignment():
            return consumer
        await consumer.getmany(timeout_ms=500, max_records=1)
    await consumer.stop()
    raise AssertionError(f"{group} was never assigned {topic}")


@pytest.fixture
async def quiet_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    topic = f"rxsm.test.topics.{uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, PARTITIONS, [topic])
    yield topic


@pytest.mark.kafka
async def test_a_member_that_has_committed_nothing_shows_its_partitions_and_full_lag(
    kafka_bootstrap: str, quiet_topic: str
) -> None:
    await produce(kafka_bootstrap, quiet_topic, {0: 3, 1: 1})
    group = f"rxsm-test-a-consumer-group-with-a-name-longer-than-a-terminal-is-wide-{uuid4()}"
    assert len(group) > 80
    consumer = await joined(kafka_bootstrap, group, quiet_topic)
    try:
        rows = await rows_of(kafka_bootstrap, group)
        table = await rxsm_topics(kafka_bootstrap, "--group", group)
    finally:
        await consumer.stop()

    assert [(row["topic"], row["partition"]) for row in rows] == [
        (quiet_topic, 0),
        (quiet_topic, 1),
    ]
    assert {(row["state"], row["members"]) for row in rows} == {("Stable", 1)}
    assert [row["committed"] for row in rows] == [None, None]
    assert [row["lag"] for row in rows] == [3, 1], (
        "nothing committed: every record is still to read"
    )
    lines = [line for line in table.splitlines() if group in line]
    assert len(lines) == PARTITIONS, "piped, the table keeps the whole group name on one line"
    assert all("Stable" in line and quiet_topic in line and " - " in line for line in lines)


@pytest.mark.kafka
async def test_a_retry_group_without_members_or_commits_shows_the_records_waiting_for_it(
    kafka_bootstrap: str, quiet_topic: str
) -> None:
    """The retry consumer of an rxsm group reads ``<topic>.retry.<group>`` in ``<group>.retry``
    (plumbing.broker.subscribe); while its service is down a waiting retry is lag, not silence."""
    group = f"rxsm-test-{uuid4().hex[:8]}"
    retry_group = group + RETRY_GROUP_SUFFIX
    retry = topics.retry_topic(quiet_topic, group)
    await ensure_topics(kafka_bootstrap, 1, [retry])
    await (await joined(kafka_bootstrap, retry_group, retry)).stop()  # the service stopped
    await produce(kafka_bootstrap, retry, {0: 1})

    rows = await rows_of(kafka_bootstrap, retry_group)

    assert rows == [
        {
            "group": retry_group,
            "state": "Empty",
            "members": 0,
            "topic": retry,
            "partition": 0,
            "committed": None,
            "end": 1,
            "start": 0,
            "lag": 1,
        }
    ]


def test_a_retry_group_reads_only_its_own_retry_topics() -> None:
    on_broker = [
        "rxsm.sm.care-teams.v1",
        "rxsm.sm.care-teams.v1.retry.rxsm-messaging",
        "rxsm.sm.care-teams.v1.retry.rxsm-journey",
        "rxsm.meds.renewal-requested.v1.retry.rxsm-journey",
    ]
    assert retry_topics_of("rxsm-messaging.retry", on_broker) == {
        "rxsm.sm.care-teams.v1.retry.rxsm-messaging"
    }
    assert retry_topics_of("rxsm-journey.retry", on_broker) == {
        "rxsm.sm.care-teams.v1.retry.rxsm-journey",
        "rxsm.meds.renewal-requested.v1.retry.rxsm-journey",
    }
    assert retry_topics_of("rxsm-messaging", on_broker) == set(), "not a retry group"
