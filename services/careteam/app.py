"""Wiring of the care-team service: ``uvicorn --factory services.careteam.app:create_app``."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from faststream import FastStream
from opentelemetry.sdk.trace.export import SpanExporter

from plumbing.broker import make_broker
from plumbing.deadletter import RETRY_POLICY, Settlement
from plumbing.flags import FeatureFlags
from plumbing.http import Resources, service_app
from plumbing.logs import configure_logging
from plumbing.metrics import ServiceMetrics
from plumbing.publishing import KafkaPublisher
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.careteam.adapters.demo import DemoDirectory
from services.careteam.adapters.directory import BoundedDirectory, CareTeamDirectory
from services.careteam.adapters.flags import FlagsOhPilot
from services.careteam.adapters.sm_api import SmApiDirectory, directory_client
from services.careteam.config import IDENTITY, CareTeamSettings
from services.careteam.entrypoints import Bound, http, subscribers
from services.careteam.handlers import Dependencies


def careteam_settings(settings: ServiceSettings | None) -> CareTeamSettings:
    """The care-team settings: shared ``settings`` as given, the service's own from the environment."""
    if isinstance(settings, CareTeamSettings):
        return settings
    return CareTeamSettings(**settings.model_dump()) if settings else CareTeamSettings()


def directory_of(
    settings: CareTeamSettings,
) -> tuple[CareTeamDirectory, httpx.AsyncClient | None]:
    """The SM API when a URL is set, else the demo directory; and the client to open and close."""
    if settings.careteam_directory_url is None:
        return DemoDirectory(), None
    client = directory_client(
        settings.careteam_directory_url, settings.careteam_directory_timeout_seconds
    )
    return SmApiDirectory(client), client


def resources_of(client: httpx.AsyncClient | None, flags: FeatureFlags) -> Resources:
    """Open the directory's client while the service runs; close it and the flags on shutdown."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(flags.close)
            if client is not None:
                await stack.enter_async_context(client)
            yield

    return opened


def create_app(
    settings: ServiceSettings | None = None, span_exporter: SpanExporter | None = None
) -> FastAPI:
    config = careteam_settings(settings)
    configure_logging(IDENTITY, config.log_level)
    tracing = tracer_provider(IDENTITY, config.otlp_endpoint, span_exporter)
    broker = make_broker(IDENTITY, config, tracing)
    directory, client = directory_of(config)
    flags = FeatureFlags(config.flags_file)
    deps = Dependencies(
        directory=BoundedDirectory(directory, config.directory_budget),
        oh_pilot=FlagsOhPilot(flags),
        publish=KafkaPublisher(broker),
    )
    metrics = ServiceMetrics(IDENTITY)
    broker.context.set_global("careteam", deps)
    broker.context.set_global("metrics", metrics)
    settlement = Settlement(
        IDENTITY, broker.context.get(RETRY_POLICY), IDENTITY.consumer_group, broker, metrics
    )
    broker.include_router(subscribers(Bound(deps, metrics, tracing, settlement)))
    app = service_app(
        IDENTITY,
        config,
        broker,
        tracing,
        title="rxsm care-team service (SM)",
        description="Resolves the care teams (triage groups) a renewal or new message can go to.",
        resources=resources_of(client, flags),
        metrics=metrics,
        flags=flags,
    )
    app.state.careteam = deps
    app.state.flags = flags
    app.include_router(http)
    return app


def asyncapi_app() -> FastStream:
    """The service for FastStream's CLI (``faststream docs gen`` / ``run --factory``; see
    rxsm.asyncapi)."""
    from rxsm.asyncapi import application

    return application(IDENTITY.name)
