"""The FastAPI app each service serves: its broker's lifecycle, health, clear 422s, and tracing."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST

from plumbing.auth import AuthSettings
from plumbing.identity import ServiceIdentity
from plumbing.metrics import ServiceMetrics
from plumbing.settings import ServiceSettings
from plumbing.topics import ensure_topics

Resources = Callable[[], AbstractAsyncContextManager[None]]


def describe_validation_errors(errors: Any) -> list[dict[str, str]]:
    """Each problem as ``{"field", "problem"}``, without echoing the submitted values back."""
    described = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        described.append({"field": ".".join(location) or "body", "problem": str(error.get("msg"))})
    return described


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = describe_validation_errors(error.errors())
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return JSONResponse(
        status_code=422,
        content={
            "code": "invalid_request",
            "message": f"Fix the request: {summary}",
            "errors": problems,
        },
    )


log = structlog.get_logger("rxsm.http")

Background = Callable[[], Coroutine[Any, Any, None]]


def service_app(
    identity: ServiceIdentity,
    settings: ServiceSettings,
    broker: KafkaBroker,
    tracing: TracerProvider,
    *,
    title: str,
    description: str,
    resources: Resources | None = None,
    metrics: ServiceMetrics | None = None,
    background: Sequence[Background] = (),
    drain: Sequence[Background] = (),
) -> FastAPI:
    """A FastAPI app whose lifespan opens ``resources`` (e.g. the database), then runs the broker.

    Every answer carries its trace in a W3C ``traceresponse`` header, so a client (or an SRE holding a
    response) can find the request's trace.

    ``background`` tasks (an outbox relay, a sweep) run while the app serves. On shutdown (SIGTERM):
    the consumers stop first (in-flight handlers finish and commit), then ``drain`` runs (e.g. a last
    outbox relay) while the producer is still open, then the broker closes and spans are flushed.
    """
    metrics = metrics or ServiceMetrics(identity)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with resources() if resources else _nothing():
            subscribed = [
                topic for sub in broker.subscribers for topic in getattr(sub, "topics", ())
            ]
            groups = {getattr(sub, "group_id", None) for sub in broker.subscribers} - {None}
            await ensure_topics(
                settings.kafka_bootstrap_servers,
                settings.topic_partitions,
                subscribed,
                security=settings.kafka_security,
                groups=sorted(str(group) for group in groups),
            )
            await broker.start()
            tasks = [asyncio.create_task(run()) for run in background]
            tasks.append(asyncio.create_task(metrics.track_lag(broker)))
            try:
                yield
            finally:
                for subscriber in broker.subscribers:
                    await subscriber.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for step in drain:
                    try:
                        await step()
                    except Exception as error:  # what is not drained stays for the next start
                        log.warning("shutdown drain step failed", error_type=type(error).__name__)
                await broker.stop()
                tracing.force_flush()
                metrics.shutdown()

    app = FastAPI(title=title, description=description, version="1", lifespan=lifespan)
    app.state.auth = AuthSettings()
    app.state.metrics = metrics
    app.state.broker = broker
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process is up and serving."""
        return {"status": "ok", "service": identity.name, "tool": str(identity.tool)}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def prometheus_metrics() -> PlainTextResponse:
        """The flow's metrics in Prometheus text format."""
        return PlainTextResponse(metrics.prometheus_text(), media_type=CONTENT_TYPE_LATEST)

    set_global_response_propagator(TraceResponsePropagator())  # type: ignore[no-untyped-call]
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing,
        meter_provider=metrics.provider,
        exclude_spans=["receive", "send"],
    )
    return app


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
