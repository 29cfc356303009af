"""The one Kafka broker object each service builds, with its delivery guarantees chosen on purpose.

- Producers: ``acks="all"`` and idempotence, so an acknowledged event is on every in-sync replica and a
  producer retry never writes it twice.
- Consumers: one consumer group per service, offsets committed only after the handler (or the dead-letter
  publish) succeeded; an unexpected failure seeks back so the record is consumed again.
- Telemetry: FastStream's OpenTelemetry middleware carries W3C trace context in Kafka headers.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.middlewares import AckPolicy
from opentelemetry.sdk.trace import TracerProvider

from plumbing.deadletter import DeadLetterMiddleware, RetryPolicy
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.settings import ServiceSettings
from schemas import topics


def make_broker(
    identity: ServiceIdentity, settings: ServiceSettings, tracing: TracerProvider
) -> KafkaBroker:
    retry = RetryPolicy(
        attempts=settings.retry_attempts,
        backoff_seconds=settings.retry_backoff_seconds,
        redeliveries=settings.redeliveries,
        redelivery_delay_seconds=settings.redelivery_delay_seconds,
    )
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"rxsm-{identity.name}",
        acks="all",
        enable_idempotence=True,
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracing),
            DeadLetterMiddleware(identity, retry),
        ],
        logger=get_logger(identity),
        graceful_timeout=15.0,
    )


def subscribe(
    router: KafkaRouter,
    topic: str,
    handler: Callable[..., Awaitable[Any]],
    identity: ServiceIdentity,
    group: str | None = None,
) -> None:
    """Consume ``topic`` with ``handler`` in ``group``, and the group's own retry topic beside it.

    The retry topic has a consumer of its own, so a record waiting for its due time there never
    holds up the main topic.
    """
    group = group or identity.consumer_group
    for source in (topic, topics.retry_topic(topic, group)):
        router.subscriber(
            source,
            group_id=group,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
        )(handler)


def consumer_options(identity: ServiceIdentity) -> dict[str, Any]:
    """Subscriber keywords every rxsm consumer uses: ``@broker.subscriber(topic, **options)``."""
    return {
        "group_id": identity.consumer_group,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
    }
