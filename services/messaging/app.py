"""Wiring of the messaging service: ``uvicorn --factory services.messaging.app:create_app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from plumbing.broker import make_broker
from plumbing.database import create_tables, make_engine, session_factory
from plumbing.http import service_app
from plumbing.logs import configure_logging
from plumbing.publishing import KafkaPublisher
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.messaging.adapters.storage import Base
from services.messaging.adapters.upstream import BuiltinSecureMessaging
from services.messaging.entrypoints import IDENTITY, http, subscribers


def create_app(
    settings: ServiceSettings | None = None, span_exporter: SpanExporter | None = None
) -> FastAPI:
    settings = settings or ServiceSettings()
    configure_logging(IDENTITY, settings.log_level)
    tracing = tracer_provider(IDENTITY, settings.otlp_endpoint, span_exporter)
    broker = make_broker(IDENTITY, settings, tracing)
    broker.include_router(subscribers())
    engine = make_engine(settings.database_url_for(IDENTITY.name))
    sessions = session_factory(engine)
    publish = KafkaPublisher(broker)
    broker.context.set_global("sessions", sessions)
    broker.context.set_global("publish", publish)

    @asynccontextmanager
    async def database() -> AsyncIterator[None]:
        await create_tables(engine, Base)
        try:
            yield
        finally:
            await engine.dispose()

    app = service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="rxsm messaging service (SM)",
        description="Prefilled renewal drafts, edits and sends to the Veteran's care team.",
        resources=database,
    )
    app.state.sessions = sessions
    app.state.publish = publish
    app.state.upstream = BuiltinSecureMessaging(sessions)
    app.include_router(http)
    return app
