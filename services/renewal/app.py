"""Wiring of the renewal service: ``uvicorn --factory services.renewal.app:create_app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import FastAPI
from faststream import FastStream
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field

from plumbing.batches import Group
from plumbing.broker import make_broker
from plumbing.database import dispose, make_engine, session_factory
from plumbing.deadletter import RETRY_POLICY, Settlement
from plumbing.flags import FeatureFlags
from plumbing.http import service_app
from plumbing.logs import configure_logging
from plumbing.metrics import ServiceMetrics
from plumbing.migrations import prepare_schema
from plumbing.outbox import SWEEP_AFTER_SECONDS, OutboxRelay
from plumbing.retention import Pruner, rules
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.renewal.adapters.ledger import prune_finished
from services.renewal.entrypoints import (
    CLOSED_GROUP,
    IDENTITY,
    Intake,
    drain_outbox,
    fail_unpublished,
    http,
    subscribers,
    sweep_stalls,
)


class RenewalSettings(ServiceSettings):
    stall_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="An accepted renewal whose event has not reached Kafka within this is stalled.",
    )
    stall_sweep_seconds: float = Field(
        default=15.0, gt=0, description="How often stalled requests are looked for."
    )


def create_app(
    settings: ServiceSettings | None = None, span_exporter: SpanExporter | None = None
) -> FastAPI:
    """The renewal service; shared ``ServiceSettings`` get the renewal defaults (or RXSM_* values)."""
    if not isinstance(settings, RenewalSettings):
        settings = RenewalSettings.model_validate(settings.model_dump() if settings else {})
    configure_logging(IDENTITY, settings.log_level)
    tracing = tracer_provider(IDENTITY, settings.otlp_endpoint, span_exporter)
    broker = make_broker(IDENTITY, settings, tracing)
    engine = make_engine(settings.database_url_for(IDENTITY.name))
    sessions = session_factory(engine)
    flags = FeatureFlags(settings.flags_file)
    metrics = ServiceMetrics(IDENTITY)
    relay = OutboxRelay(
        sessions,
        broker,
        on_set_aside=fail_unpublished(metrics),
        set_aside_gauge=metrics.outbox_set_aside,
        sweep_after_seconds=SWEEP_AFTER_SECONDS,
    )
    retry = broker.context.get(RETRY_POLICY)
    intake = Intake(
        sessions,
        flags,
        relay,
        tracing,
        Settlement(IDENTITY, retry, IDENTITY.consumer_group, broker, metrics),
        Settlement(IDENTITY, retry, CLOSED_GROUP, broker, metrics),
    )
    broker.include_router(subscribers(intake))
    pruner = Pruner(
        sessions,
        rules(settings, ("renewals",), prune_finished),
        metrics.pruned_rows,
        settings.retention_sweep_seconds,
    )
    broker.context.set_global("sessions", sessions)
    broker.context.set_global("flags", flags)
    broker.context.set_global("relay", relay)
    broker.context.set_global("metrics", metrics)
    sweep = partial(
        sweep_stalls,
        sessions,
        metrics,
        timedelta(seconds=settings.stall_after_seconds),
        settings.stall_sweep_seconds,
    )

    @asynccontextmanager
    async def resources() -> AsyncIterator[None]:
        await prepare_schema(engine, IDENTITY.name, settings.db_migrate)
        try:
            yield
        finally:
            flags.close()
            await dispose(engine)

    app = service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="rxsm renewal service (Medications)",
        description=(
            "Takes a Veteran's prescription renewal request, decides whether it may be renewed, "
            "and starts the flow to SM. The journey service follows each renewal from there."
        ),
        resources=resources,
        metrics=metrics,
        background=[sweep, relay.run, pruner.run],
        drain=[partial(drain_outbox, relay)],
        database=engine,
        flags=flags,
    )
    app.state.sessions = sessions
    app.state.flags = flags
    app.state.relay = relay
    app.state.intake = Group(intake.take)
    app.include_router(http)
    return app


def asyncapi_app() -> FastStream:
    """The service for FastStream's CLI (``faststream docs gen`` / ``run --factory``; see
    rxsm.asyncapi)."""
    from rxsm.asyncapi import application

    return application(IDENTITY.name)
