"""Wiring of the care-team service: ``uvicorn --factory services.careteam.app:create_app``."""

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from plumbing.broker import make_broker
from plumbing.http import service_app
from plumbing.logs import configure_logging
from plumbing.publishing import KafkaPublisher
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.careteam.adapters.directory import DemoDirectory
from services.careteam.entrypoints import IDENTITY, subscribers


def create_app(
    settings: ServiceSettings | None = None, span_exporter: SpanExporter | None = None
) -> FastAPI:
    settings = settings or ServiceSettings()
    configure_logging(IDENTITY, settings.log_level)
    tracing = tracer_provider(IDENTITY, settings.otlp_endpoint, span_exporter)
    broker = make_broker(IDENTITY, settings, tracing)
    broker.include_router(subscribers())
    broker.context.set_global("directory", DemoDirectory())
    broker.context.set_global("publish", KafkaPublisher(broker))
    return service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="rxsm care-team service (SM)",
        description="Resolves the care teams (triage groups) a renewal request can be sent to.",
    )
