"""Wiring of the journey service: ``uvicorn --factory services.journey.app:create_app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import FastAPI
from faststream import FastStream
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field

from plumbing.broker import make_broker
from plumbing.database import dispose, make_engine, session_factory
from plumbing.deadletter import RETRY_POLICY, Settlement
from plumbing.http import service_app
from plumbing.logs import configure_logging
from plumbing.metrics import ServiceMetrics
from plumbing.migrations import prepare_schema
from plumbing.outbox import SWEEP_AFTER_SECONDS, OutboxRelay
from plumbing.retention import Pruner, rules
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.journey.adapters.ledger import prune_finished
from services.journey.entrypoints import (
    IDENTITY,
    Bound,
    drain_outbox,
    http,
    subscribers,
    sweep_stalls,
)
from services.journey.handlers import JOURNEY_GROUP


class JourneySettings(ServiceSettings):
    stall_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A renewal waiting longer than this for an automatic step is stalled.",
    )
    stall_sweep_seconds: float = Field(
        default=15.0, gt=0, description="How often stalled renewals are looked for."
    )


def create_app(
    settings: ServiceSettings | None = None, span_exporter: SpanExporter | None = None
) -> FastAPI:
    """The journey service; shared ``ServiceSettings`` get the journey defaults (or RXSM_* values)."""
    if not isinstance(settings, JourneySettings):
        settings = JourneySettings.model_validate(settings.model_dump() if settings else {})
    configure_logging(IDENTITY, settings.log_level)
    tracing = tracer_provider(IDENTITY, settings.otlp_endpoint, span_exporter)
    broker = make_broker(IDENTITY, settings, tracing)
    engine = make_engine(settings.database_url_for(IDENTITY.name))
    sessions = session_factory(engine)
    metrics = ServiceMetrics(IDENTITY)
    relay = OutboxRelay(
        sessions,
        broker,
        set_aside_gauge=metrics.outbox_set_aside,
        sweep_after_seconds=SWEEP_AFTER_SECONDS,
    )
    pruner = Pruner(
        sessions,
        rules(settings, ("journey_steps", "renewals"), prune_finished),
        metrics.pruned_rows,
        settings.retention_sweep_seconds,
    )
    broker.context.set_global("sessions", sessions)
    broker.context.set_global("relay", relay)
    broker.context.set_global("metrics", metrics)
    settlement = Settlement(
        IDENTITY, broker.context.get(RETRY_POLICY), JOURNEY_GROUP, broker, metrics
    )
    broker.include_router(subscribers(Bound(sessions, metrics, relay, tracing, settlement)))
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
            await dispose(engine)

    app = service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="rxsm journey service",
        description=(
            "Follows each renewal through both tools (Meds and SM) and says where it is, which "
            "tool failed it or holds it up, and when it closed. It belongs to neither tool."
        ),
        resources=resources,
        metrics=metrics,
        background=[sweep, relay.run, pruner.run],
        drain=[partial(drain_outbox, relay)],
        database=engine,
    )
    app.state.sessions = sessions
    app.state.relay = relay
    app.include_router(http)
    return app


def asyncapi_app() -> FastStream:
    """The service for FastStream's CLI (``faststream docs gen`` / ``run --factory``; see
    rxsm.asyncapi)."""
    from rxsm.asyncapi import application

    return application(IDENTITY.name)
