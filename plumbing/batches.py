"""Consuming a batch of records as one unit of work, while each record keeps its own trace and fate.

A batch subscriber (``broker.subscribe(..., batch_handler=...)``) hands its records to ``Batch``:

1. each record gets its one ``process`` span, a child of the span that produced it, so every renewal's
   trace runs through the batch unbroken (no span for the batch itself; no exception's message is
   recorded on a span, and a batch that fails leaves its records' spans unmarked, as each is then
   processed alone);
2. a record that is not a valid event is dead-lettered on its own (``Settlement``);
3. the valid events are processed together (``process``: one transaction for the batch), each
   event's own work in its record's span;
4. if that fails, each event is processed alone (``process_one``), and one that fails alone is parked
   on the group's retry topic, whose consumer takes it record by record;
5. ``report`` runs in each valid record's span with its result; a result that is a
   ``PermanentError`` dead-letters its record instead (the rest of the batch stands).

``Group`` gathers HTTP requests of the same moment into one unit of work the same way (group
commit): each caller awaits its own result, and each request's own work runs in its own context.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import TypeAdapter

from plumbing.deadletter import PERMANENT, PermanentError, Settlement
from plumbing.telemetry import annotate, record_span

E = TypeVar("E")
R = TypeVar("R")
T = TypeVar("T")
Records = tuple[ConsumerRecord, ...]
"""What a batch subscriber takes: its records as Kafka gave them (``broker.subscribe`` has FastStream
decode nothing, since ``Batch`` reads each record itself)."""
Within = Callable[[int], AbstractContextManager[object]]
"""``within(i)``: the context the i-th event of a batch is processed in."""


@contextmanager
def current(span: trace.Span, end: bool = False) -> Iterator[trace.Span]:
    """``span`` current within, recording no exception (a failure is marked where it is settled,
    by its type: ``Settlement.refuse``); ended on leaving if ``end``."""
    with trace.use_span(
        span, end_on_exit=end, record_exception=False, set_status_on_exception=False
    ) as entered:
        yield entered


def alone(_: int) -> AbstractContextManager[object]:
    """``within`` for events processed outside a batch: their own context is current already."""
    return nullcontext()


@dataclass(frozen=True)
class Batch(Generic[E, R]):
    events: TypeAdapter[E]
    step: str
    """The flow step every record's span is labelled with (``rxsm.step``)."""
    tracing: TracerProvider
    settlement: Settlement
    process: Callable[[Sequence[E], Within], Awaitable[Sequence[R | None]]]
    """One result per event, in order (None: nothing to report). It enters ``within(i)`` around
    the i-th event's own work, which makes that record's span current: what it publishes then joins
    the record's trace."""
    process_one: Callable[[E], Awaitable[R | None]]
    report: Callable[[E, R | None], None]
    """Runs in each valid record's span once it is processed (None: there was nothing to do); not
    for an event that failed alone (it was settled: parked or dead-lettered)."""
    read: Callable[[ConsumerRecord], E] | None = None
    """How a record becomes an event (``events`` validating its value, if None); a
    ``PERMANENT`` error dead-letters it."""

    async def consume(self, records: Sequence[ConsumerRecord]) -> int:
        """Handle ``records``; returns how many were valid events (the rest were dead-lettered)."""
        valid: list[tuple[ConsumerRecord, trace.Span, E]] = []
        for record in records:
            span = record_span(self.tracing, record, self.settlement.group)
            with current(span):
                annotate(self.step)
                try:
                    event = (
                        self.read(record)
                        if self.read is not None
                        else self.events.validate_json(record.value or b"")
                    )
                    valid.append((record, span, event))
                except PERMANENT as error:
                    await self.settlement.refuse(record, error)
                    span.end()
        if not valid:
            return 0
        results: Sequence[R | None]
        settled: set[int] = set()
        try:
            results = await self.process(
                [event for _, _, event in valid],
                lambda index: current(valid[index][1]),
            )
        except Exception as error:
            self.settlement.log.warning(
                "batch failed; processing its events one by one",
                step=self.step,
                events=len(valid),
                error_type=type(error).__name__,
            )
            results = [await self._alone(index, *item, settled) for index, item in enumerate(valid)]
        for index, ((record, span, event), result) in enumerate(zip(valid, results, strict=True)):
            with current(span, end=True):
                if isinstance(result, PermanentError):
                    await self.settlement.refuse(record, result)
                elif index not in settled:
                    self.report(event, result)
        return len(valid)

    async def _alone(
        self, index: int, record: ConsumerRecord, span: trace.Span, event: E, settled: set[int]
    ) -> R | None:
        with current(span):
            try:
                return await self.process_one(event)
            except Exception as error:
                await self.settlement.refuse(record, error)
                settled.add(index)
                return None


@contextmanager
def attached(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


class Group(Generic[T, R]):
    """Group commit: ``await group(item)`` from many requests at once; the items waiting when the
    previous unit of work ends (at most ``most``) go through ``work`` together, the i-th in its
    caller's context (``within(i)``: its span current), and each caller gets its own result once
    the unit of work is done (committed). A unit of work that fails fails each of its callers."""

    def __init__(
        self, work: Callable[[Sequence[T], Within], Awaitable[Sequence[R]]], most: int = 200
    ) -> None:
        self._work = work
        self._most = most
        self._waiting: list[tuple[T, otel_context.Context, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, otel_context.get_current(), future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            contexts = [context for _, context, _ in group]
            try:
                results = await self._work([item for item, _, _ in group], _within(contexts))
            except Exception as error:
                _settle(group, error=error)
            else:
                _settle(group, results=results)


def _within(contexts: Sequence[otel_context.Context]) -> Within:
    return lambda index: attached(contexts[index])


def _settle(
    group: Sequence[tuple[Any, Any, "asyncio.Future[R]"]],
    *,
    results: Sequence[R] | None = None,
    error: Exception | None = None,
) -> None:
    for index, (_, _, future) in enumerate(group):
        if future.done():  # its caller went away
            continue
        if results is not None:
            future.set_result(results[index])
        else:
            future.set_exception(error or RuntimeError("no result"))
