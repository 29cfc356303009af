"""What an operator (or a misbehaving producer) does to the topics: duplicate records, rewind consumer
groups to offset 0, wait for the groups to catch up; and which group consumes which topic."""

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from rxsm.kafka_reads import consumer_lag, read_all
from services.careteam.entrypoints import subscribers as careteam_subscribers
from services.journey.entrypoints import subscribers as journey_subscribers
from services.messaging.entrypoints import subscribers as messaging_subscribers
from services.renewal.entrypoints import subscribers as renewal_subscribers

GROUP_PREFIX = "rxsm-"


def consumers_of_topics() -> dict[str, set[str]]:
    """topic -> the consumer groups that read it (the services' own subscriptions, retry topics
    excluded)."""
    groups: defaultdict[str, set[str]] = defaultdict(set)
    routers = (
        renewal_subscribers(),
        careteam_subscribers(),
        messaging_subscribers(),
        journey_subscribers(),
    )
    for router in routers:
        for subscriber in router.subscribers:
            for topic in getattr(subscriber, "topics", ()):
                name = getattr(topic, "name", topic)
                if ".retry." not in name:
                    groups[name].add(str(getattr(subscriber, "group_id", "")))
    return dict(groups)


async def republish(bootstrap: str, names: Iterable[str]) -> int:
    """Publish every record of each topic once more, with its key and headers, as a producer that
    retried after a lost acknowledgement would; returns how many records were duplicated."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = []
        for topic in names:
            records = [record async for record in read_all(bootstrap, topic)]
            for record in records:
                sends.append(
                    await producer.send(
                        topic,
                        record.value,
                        key=record.key,
                        headers=list(record.headers or ()),
                        partition=record.partition,
                    )
                )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return len(sends)


async def rewind_groups(bootstrap: str) -> list[str]:
    """Commit offset 0 on every partition each rxsm consumer group has read (its members stopped),
    so the next consumers read every topic again from the start; returns the groups rewound."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = sorted(
            str(group)
            for group, _ in await admin.list_consumer_groups()
            if str(group).startswith(GROUP_PREFIX)
        )
        offsets = {group: await admin.list_consumer_group_offsets(group) for group in groups}
    finally:
        await admin.close()
    for group, committed in offsets.items():
        if not committed:
            continue
        partitions: list[TopicPartition] = list(committed)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in partitions})
        finally:
            await consumer.stop()
    return [group for group, committed in offsets.items() if committed]


async def until_caught_up(bootstrap: str, within: float = 120.0) -> None:
    """Until every rxsm consumer group has committed the end of every partition it reads."""
    deadline = time.monotonic() + within
    while True:
        lags = [lag for lag in await consumer_lag(bootstrap, GROUP_PREFIX) if lag.lag]
        if not lags:
            return
        if time.monotonic() > deadline:
            behind = ", ".join(
                f"{lag.group} {lag.topic}[{lag.partition}]={lag.lag}" for lag in lags
            )
            raise AssertionError(f"consumers still behind after {within:.0f} s: {behind}")
        await asyncio.sleep(1.0)
