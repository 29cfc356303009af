"""The one Kafka broker object each service builds, with its delivery guarantees chosen on purpose.

- Producers: ``acks="all"`` and idempotence, so an acknowledged event is on every in-sync replica and a
  producer retry never writes it twice.
- Consumers: one consumer group per service, offsets committed only after the handler (or the dead-letter
  publish) succeeded; an unexpected failure seeks back so the record is consumed again.
- Telemetry: FastStream's OpenTelemetry middleware carries W3C trace context in Kafka headers.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.middlewares import AckPolicy
from opentelemetry.sdk.trace import TracerProvider

from plumbing.deadletter import RETRY_GROUP_SUFFIX, DeadLetterMiddleware, RetryPolicy
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
        security=settings.kafka_security.for_faststream(),
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracing),
            DeadLetterMiddleware(identity, retry),
        ],
        logger=get_logger(identity),
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
    )


def subscribe(
    router: KafkaRouter,
    source: str | Sequence[str],
    handler: Callable[..., Awaitable[Any]],
    identity: ServiceIdentity,
    group: str | None = None,
) -> None:
    """Consume ``source`` topic(s) with ``handler`` in ``group``, and their retry topics beside.

    One consumer reads the topics themselves; another, in a group of its own, reads the group's retry
    topics, so a record waiting there for its due time never holds up the main topics, and neither
    consumer's joins rebalance the other.
    """
    group = group or identity.consumer_group
    main = [source] if isinstance(source, str) else list(source)
    retry = [topics.retry_topic(topic, group) for topic in main]
    for subscribed, group_id in ((main, group), (retry, group + RETRY_GROUP_SUFFIX)):
        router.subscriber(
            *subscribed,
            group_id=group_id,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            heartbeat_interval_ms=1000,
        )(handler)


def consumer_options(identity: ServiceIdentity) -> dict[str, Any]:
    """Subscriber keywords every rxsm consumer uses: ``@broker.subscriber(topic, **options)``."""
    return {
        "group_id": identity.consumer_group,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
    }
