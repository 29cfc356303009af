"""Wiring of the renewal service: ``uvicorn --factory services.renewal.app:create_app``."""

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from plumbing.broker import make_broker
from plumbing.http import service_app
from plumbing.logs import configure_logging
from plumbing.publishing import KafkaPublisher
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.renewal.entrypoints import IDENTITY, http


def create_app(
    settings: ServiceSettings | None = None, span_exporter: SpanExporter | None = None
) -> FastAPI:
    settings = settings or ServiceSettings()
    configure_logging(IDENTITY, settings.log_level)
    tracing = tracer_provider(IDENTITY, settings.otlp_endpoint, span_exporter)
    broker = make_broker(IDENTITY, settings, tracing)
    app = service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="rxsm renewal service (Medications)",
        description="Takes a Veteran's prescription renewal request and starts the flow to SM.",
    )
    app.state.publish = KafkaPublisher(broker)
    app.include_router(http)
    return app
