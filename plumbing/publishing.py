"""Publishing events: each to its topic, keyed by its journey, named in a header."""

from typing import Protocol

from faststream.kafka import KafkaBroker

from schemas.events import Event
from schemas.topics import TOPIC_OF_EVENT

EVENT_TYPE_HEADER = "rxsm-event-type"


class Publish(Protocol):
    """What handlers depend on to emit an event; returns once Kafka acknowledged it."""

    async def __call__(self, event: Event, /) -> None: ...


class KafkaPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def __call__(self, event: Event, /) -> None:
        event_type = event.event_type
        await self._broker.publish(
            event,
            topic=TOPIC_OF_EVENT[event_type],
            key=event.key,
            headers={EVENT_TYPE_HEADER: event_type},
        )
