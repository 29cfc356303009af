"""Wiring of the messaging service: ``uvicorn --factory services.messaging.app:create_app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from faststream import FastStream
from opentelemetry.sdk.trace.export import SpanExporter

from plumbing.broker import make_broker
from plumbing.database import dispose, make_engine, session_factory
from plumbing.deadletter import RETRY_POLICY, Settlement
from plumbing.flags import FeatureFlags
from plumbing.http import service_app
from plumbing.logs import configure_logging
from plumbing.metrics import ServiceMetrics
from plumbing.migrations import prepare_schema
from plumbing.outbox import SWEEP_AFTER_SECONDS, OutboxRelay
from plumbing.retention import Pruner, Rule, rules
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from services.messaging.adapters.storage import prune_closed, prune_no_care_team
from services.messaging.adapters.upstream import (
    BuiltinSecureMessaging,
    HttpSecureMessaging,
    SecureMessaging,
)
from services.messaging.domain import SmError
from services.messaging.entrypoints import Bound, http, sm_error_response, subscribers
from services.messaging.handlers import Messaging, Sessions
from services.messaging.settings import IDENTITY, MessagingSettings


def upstream_for(settings: MessagingSettings, sessions: Sessions) -> SecureMessaging:
    """The SM-compatible API when ``RXSM_SM_API_URL`` is set, else the built-in SM stand-in."""
    if settings.sm_api_url:
        return HttpSecureMessaging(settings.sm_api_url, settings.sm_api_timeout_seconds)
    return BuiltinSecureMessaging(sessions, settings.sm_recipients_file)


def create_app(
    settings: ServiceSettings | None = None,
    span_exporter: SpanExporter | None = None,
    messaging_settings: MessagingSettings | None = None,
) -> FastAPI:
    settings = settings or ServiceSettings()
    own = messaging_settings or MessagingSettings()
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
        set_aside_gauge=metrics.outbox_set_aside,
        sweep_after_seconds=SWEEP_AFTER_SECONDS,
    )
    pruner = Pruner(
        sessions,
        [
            *rules(settings, ("message_sends", "message_drafts"), prune_closed),
            Rule(
                ("renewals_without_care_team",),
                timedelta(days=settings.retention_finished_days),
                prune_no_care_team,
            ),
        ],
        metrics.pruned_rows,
        settings.retention_sweep_seconds,
    )
    deps = Messaging(
        sessions=sessions,
        upstream=upstream_for(own, sessions),
        polling=own.poll_schedule(),
        cohorts=flags,
        notify=relay.notify,
        publish=relay.publish_soon,
    )
    broker.context.set_global("messaging", deps)
    broker.context.set_global("metrics", metrics)
    settlement = Settlement(
        IDENTITY, broker.context.get(RETRY_POLICY), IDENTITY.consumer_group, broker, metrics
    )
    broker.include_router(subscribers(Bound(deps, metrics, tracing, settlement)))

    @asynccontextmanager
    async def resources() -> AsyncIterator[None]:
        await prepare_schema(engine, IDENTITY.name, settings.db_migrate)
        try:
            yield
        finally:
            flags.close()
            await deps.upstream.close()
            await dispose(engine)

    async def drain_outbox() -> None:
        """Publish what the outbox still holds while the producer is open (on shutdown)."""
        await relay.flush()
        while await relay.relay_once(everything=True):
            continue

    app = service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="rxsm messaging service (SM)",
        description=(
            "Prefilled renewal drafts and general new messages: edits, deletes and sends to the "
            "Veteran's care team."
        ),
        resources=resources,
        metrics=metrics,
        background=[relay.run, pruner.run],
        drain=[drain_outbox],
        database=engine,
        flags=flags,
    )
    app.state.messaging = deps
    app.state.flags = flags
    app.add_exception_handler(SmError, sm_error_response)
    app.include_router(http)
    return app


def asyncapi_app() -> FastStream:
    """The service for FastStream's CLI (``faststream docs gen`` / ``run --factory``; see
    rxsm.asyncapi)."""
    from rxsm.asyncapi import application

    return application(IDENTITY.name)
