"""The one Kafka broker object each service builds, with its delivery guarantees chosen on purpose.

- Producers: ``acks="all"`` and idempotence, so an acknowledged event is on every in-sync replica and a
  producer retry never writes it twice.
- Consumers: one consumer group per service, offsets committed only after the handler (or the dead-letter
  publish) succeeded; an unexpected failure seeks back so the record is consumed again.
- Telemetry: one span per record per hop (``KafkaTracing``): a ``publish`` span per record sent, whose
  W3C trace context goes in the record's headers, and a ``process`` span per record consumed, its child.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream import BaseMiddleware, ContextRepo, StreamMessage
from faststream.exceptions import HandlerException
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.response import KafkaPublishCommand
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from plumbing.batches import Records
from plumbing.deadletter import (
    RETRY_GROUP_SUFFIX,
    RETRY_POLICY,
    DeadLetterMiddleware,
    RetryPolicy,
)
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.settings import ServiceSettings
from plumbing.telemetry import TRACING, failed, producer_span, record_span
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
            KafkaTracing(identity, tracing),
            DeadLetterMiddleware(identity, retry),
        ],
        logger=get_logger(identity),
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
    )
    broker.context.set_global(RETRY_POLICY, retry)
    broker.context.set_global(TRACING, tracing)
    return broker


class KafkaTracing:
    """FastStream middleware factory: ``KafkaBroker(middlewares=[KafkaTracing(...), ...])``.

    Each record published gets one ``publish`` span, its W3C context in the record's headers; each
    record consumed one by one gets one ``process`` span, a child of its producer's (a batch
    subscriber's ``plumbing.batches.Batch`` gives each record of a batch its own). No exception's
    message is recorded: a failure is marked by its type.
    """

    def __init__(self, identity: ServiceIdentity, tracing: TracerProvider) -> None:
        self.identity = identity
        self.tracing = tracing

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> "_TracingScope":
        return _TracingScope(msg, context=context, tracing=self)


class _TracingScope(BaseMiddleware[KafkaPublishCommand, Any]):
    def __init__(self, msg: Any, /, *, context: ContextRepo, tracing: KafkaTracing) -> None:
        super().__init__(msg, context=context)
        self.tracing = tracing

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        record = msg.raw_message
        if isinstance(record, tuple):
            return await call_next(msg)
        span = record_span(self.tracing.tracing, record, self._group())
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                return await call_next(msg)
            except (HandlerException, asyncio.CancelledError):
                raise
            except Exception as error:
                failed(span, error)
                raise

    async def publish_scope(self, call_next: Any, cmd: KafkaPublishCommand) -> Any:
        with producer_span(self.tracing.tracing, cmd.destination, cmd.key, cmd.headers):
            return await call_next(cmd)

    def _group(self) -> str:
        subscriber = self.context.get("handler_")
        group = getattr(subscriber, "group_id", None) or self.tracing.identity.consumer_group
        return str(group).removesuffix(RETRY_GROUP_SUFFIX)


BATCH_RECORDS = 200
"""The most records a batch subscriber takes at once (fewer when fewer are waiting)."""
BATCH_WAIT_MS = 20
"""How long a batch subscriber waits for a record when none is there (FastStream then sleeps as
long again before asking anew): the most an idle consumer adds to a record's way (its default,
200, added up to 400 ms per hop)."""
FETCH_WAIT_MS = 100
"""How long the broker holds a consumer's fetch when it has nothing new (aiokafka's default is 500).
A consumer has one fetch in flight per broker, so a record arriving on a partition that fetch did
not ask for waits for it to come back: up to this long per hop. Shorter costs idle CPU (at 20 ms, an
idle service spent two to four times as much on fetches; at 100, no more than at 500)."""


async def _undecoded(message: StreamMessage[Records]) -> Records:
    """A batch's records as they came: ``Batch`` validates each record's value itself, where
    FastStream's own decoder would parse every record's JSON once more for nothing."""
    return message.raw_message


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
        router.subscriber(*main, group_id=group, fetch_max_wait_ms=FETCH_WAIT_MS, **options)(
            handler
        )
    else:
        router.subscriber(
            *main,
            group_id=group,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            batch=True,
            max_records=BATCH_RECORDS,
            batch_timeout_ms=BATCH_WAIT_MS,
            decoder=_undecoded,
            **options,
        )(batch_handler)
    router.subscriber(*retry, group_id=group + RETRY_GROUP_SUFFIX, **options)(handler)
