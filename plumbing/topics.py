"""Creating rxsm's topics before anything subscribes, so no consumer waits on a metadata refresh."""

from collections.abc import Iterable
from contextlib import suppress

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from plumbing.kafka_security import KafkaSecurity
from schemas import topics


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    extra: Iterable[str] = (),
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> None:
    """Create every rxsm topic (and ``extra`` ones) not there yet; existing ones are left alone."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="rxsm-admin",
        **(security or KafkaSecurity()).for_aiokafka(),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=replication)
            for name in dict.fromkeys([*topics.ALL, *extra])
            if name not in existing
        ]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another service created them first
                await admin.create_topics(missing)
    finally:
        await admin.close()
