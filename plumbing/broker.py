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

from plumbing.deadletter import (
    RETRY_GROUP_SUFFIX,
    RETRY_POLICY,
    DeadLetterMiddleware,
    RetryPolicy,
)
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.settings import ServiceSettings
from plumbing.telemetry import TRACING
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
    broker = KafkaBroker(
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
    broker.context.set_global(RETRY_POLICY, retry)
    broker.context.set_global(TRACING, tracing)
    return broker


BATCH_RECORDS = 200
"""The most records a batch subscriber takes at once (fewer when fewer are waiting)."""


def subscribe(
    router: KafkaRouter,
    source: str | Sequence[str],
    handler: Callable[..., Awaitable[Any]],
    identity: ServiceIdentity,
    group: str | None = None,
    batch_handler: Callable[..., Awaitable[Any]] | None = None,
) -> None:
    """Consume ``source`` topic(s) with ``handler`` in ``group``, and their retry topics beside.

    One consumer reads the topics themselves; another, in a group of its own, reads the group's retry
    topics, so a record waiting there for its due time never holds up the main topics, and neither
    consumer's joins rebalance the other. With ``batch_handler``, the topics themselves are consumed
    in batches of up to ``BATCH_RECORDS`` (offsets committed once per batch; the handler settles each
    record, see ``deadletter.Settlement``); the retry topics stay record by record.
    """
    group = group or identity.consumer_group
    main = [source] if isinstance(source, str) else list(source)
    retry = [topics.retry_topic(topic, group) for topic in main]
    options: dict[str, Any] = {
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
        "heartbeat_interval_ms": 1000,
    }
    if batch_handler is None:
        router.subscriber(*main, group_id=group, **options)(handler)
    else:
        router.subscriber(*main, group_id=group, batch=True, max_records=BATCH_RECORDS, **options)(
            batch_handler
        )
    router.subscriber(*retry, group_id=group + RETRY_GROUP_SUFFIX, **options)(handler)


def consumer_options(identity: ServiceIdentity) -> dict[str, Any]:
    """Subscriber keywords every rxsm consumer uses: ``@broker.subscriber(topic, **options)``."""
    return {
        "group_id": identity.consumer_group,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
    }
