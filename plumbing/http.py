"""The FastAPI app each service serves: its broker's lifecycle, health and readiness, clear 422s, and
tracing."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.kafka import KafkaBroker
from openfeature.provider import ProviderStatus
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plumbing.flags import FeatureFlags
from plumbing.identity import ServiceIdentity
from plumbing.metrics import ServiceMetrics
from plumbing.settings import ServiceSettings, service_auth
from plumbing.topics import ensure_topics

Resources = Callable[[], AbstractAsyncContextManager[None]]


class FieldProblem(BaseModel):
    field: str = Field(description="The offending field, dotted (prescription.refillRemaining).")
    problem: str


class Problem(BaseModel):
    """Every error answer of every rxsm service: a machine-readable ``code`` and a ``message`` that
    says what to fix; for an invalid request, each offending field."""

    code: str
    message: str
    errors: list[FieldProblem] | None = None


def problem(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The ``Problem`` answer; ``extra`` adds a service's own fields (a renewal's id)."""
    content = {"code": code, "message": message, **extra}
    return JSONResponse(status_code=status, content=jsonable_encoder(content))


MAX_BODY_BYTES = 256 * 1024
"""The largest request body an rxsm service reads: 256 KiB, rxsm's own limit. VA's prescription
records run to a few KB (the largest of VA's fixtures in tests/fixtures/va is 5.5 KB), a renewal
request's text fields are bounded far below it (schemas/records.py), and a draft of the longest body
(20,000 characters, services/messaging) fits even when every character is JSON-escaped."""


def body_too_large(limit: int) -> str:
    return f"The request body is over {limit} bytes ({limit // 1024} KiB): send a smaller one."


class BodyTooLarge(HTTPException):
    """A streamed body passed the limit while it was read; answered 413 ``too_large``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail={"code": "too_large", "message": body_too_large(limit)})


DRAIN_BYTES = 16 * 1024 * 1024
"""How much of a refused body is read and thrown away so that the client, still sending it, reads the
413 and keeps its connection (HTTP clients read the answer only once they have sent the body)."""


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is refused with 413 ``too_large`` and never
    held in memory. A body without a Content-Length (chunked) is counted as it streams in, and the
    read that passes the limit fails. The rest of a refused body is read and dropped, up to
    ``drain_bytes``, so the client gets the 413 on a connection it may keep; a body declared larger
    than that is answered at once and the connection closed."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, drain_bytes: int = DRAIN_BYTES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, read=0, declared=declared)
            return
        received = 0
        started = False

        finished = False

        async def counted() -> Message:
            nonlocal received, finished
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                finished = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked(message: Message) -> None:
            """The answer to a body refused mid-stream (FastAPI answers ``BodyTooLarge`` itself)
            waits until the rest of the body is drained, or closes the connection."""
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                refused = received > self.max_bytes and not finished
                if refused and not await self._drain(receive, received):
                    message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, read=received, finished=finished)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        read: int,
        declared: int | None = None,
        finished: bool = False,
    ) -> None:
        drained = finished or (
            (declared is None or declared <= self.drain_bytes) and await self._drain(receive, read)
        )
        answer = problem(413, "too_large", body_too_large(self.max_bytes))
        if not drained:
            answer.headers["Connection"] = "close"
        await answer(scope, receive, send)

    async def _drain(self, receive: Receive, read: int) -> bool:
        """Read and drop the rest of the body; False when it runs past ``drain_bytes``."""
        while read <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return False
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


CLOSE = (b"connection", b"close")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON (malformed_json)."},
    401: {"model": Problem, "description": "No valid bearer token (unauthorized)."},
    413: {"model": Problem, "description": "The body is over 256 KiB (too_large)."},
    422: {"model": Problem, "description": "The request is invalid: each field and what to fix."},
}
"""The error answers every authenticated route can give, for its OpenAPI ``responses``."""

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def describe_validation_errors(errors: Any) -> list[dict[str, str]]:
    """Each problem as ``{"field", "problem"}``, without echoing the submitted values back."""
    described = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        described.append({"field": ".".join(location) or "body", "problem": str(error.get("msg"))})
    return described


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    malformed = [e for e in error.errors() if e.get("type") == "json_invalid"]
    if malformed:
        reason = malformed[0].get("ctx", {}).get("error", "it does not parse")
        return problem(400, "malformed_json", f"Send a JSON body: {reason}.")
    problems = describe_validation_errors(error.errors())
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return problem(422, "invalid_request", f"Fix the request: {summary}", errors=problems)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's and Starlette's own errors (401, 404, 405, ...) in the one ``Problem`` shape."""
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail
    if isinstance(detail, dict) and {"code", "message"} <= detail.keys():
        code, message = str(detail["code"]), str(detail["message"])
    else:
        code, message = STATUS_CODES.get(error.status_code, "error"), str(detail)
    answer = problem(error.status_code, code, message)
    answer.headers.update(error.headers or {})
    return answer


log = structlog.get_logger("rxsm.http")

READY_TIMEOUT_SECONDS = 2.0
"""How long ``/ready`` waits for each dependency (they are asked at once) before calling it down."""

OK = "ok"


class Readiness(BaseModel):
    status: str = Field(description="ready")
    service: str
    checks: dict[str, str] = Field(
        description="Each dependency checked (database, kafka, flags) and its state: ok."
    )


class NotReady(Problem):
    checks: dict[str, str] = Field(
        description="Each dependency checked: ok, or why it is not (never a URL or a secret)."
    )


class Unready(Exception):
    """A dependency answered, and the answer is no; the message says why (no URL, no secret)."""


Check = Callable[[], Awaitable[None]]


def database_check(engine: AsyncEngine) -> Check:
    """``SELECT 1`` on a connection of the service's own engine (its pool, its URL)."""

    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check


def kafka_check(broker: KafkaBroker) -> Check:
    """The service's broker is connected and the cluster answers a metadata request."""

    async def check() -> None:
        if not await broker.ping(timeout=READY_TIMEOUT_SECONDS):
            raise Unready("the broker is not connected or the cluster does not answer")

    return check


def flags_check(flags: FeatureFlags) -> Check:
    """The flag provider is READY: the flag file was read and is valid."""

    async def check() -> None:
        status = flags.provider_status()
        if status != ProviderStatus.READY:
            raise Unready(
                f"the flag provider is {status.value}: the flag file is missing or invalid"
            )

    return check


async def readiness(checks: Mapping[str, Check]) -> dict[str, str]:
    """Every check at once, each within ``READY_TIMEOUT_SECONDS``: ``ok`` or why not."""

    async def run(name: str, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            reason = f"no answer within {READY_TIMEOUT_SECONDS:g} s"
        except Unready as error:
            reason = str(error)
        except Exception as error:  # the type only: a driver's message may carry a URL
            reason = f"failed ({type(error).__name__})"
        else:
            return OK
        log.warning("not ready", dependency=name, reason=reason)
        return reason

    results = await asyncio.gather(*(run(name, check) for name, check in checks.items()))
    return dict(zip(checks, results, strict=True))


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
    database: AsyncEngine | None = None,
    flags: FeatureFlags | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """A FastAPI app whose lifespan opens ``resources`` (e.g. the database), then runs the broker.

    Every answer carries its trace in a W3C ``traceresponse`` header, so a client (or an SRE holding a
    response) can find the request's trace.

    ``background`` tasks (an outbox relay, a sweep) run while the app serves. On shutdown (SIGTERM):
    the consumers stop first (in-flight handlers finish and commit), then ``drain`` runs (e.g. a last
    outbox relay) while the producer is still open, then the broker closes and spans are flushed.

    ``/health`` is liveness (the process serves); ``/ready`` checks Kafka, and the ``database`` and
    the ``flags`` provider when given.

    A request body over ``max_body_bytes`` is refused with 413 ``too_large`` before it is read
    (``BodyLimit``).
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
                replication=settings.topic_replication,
                min_insync_replicas=settings.topic_min_insync_replicas,
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
    app.state.auth = service_auth(settings)
    app.state.metrics = metrics
    app.state.broker = broker
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process is up and serving."""
        return {"status": "ok", "service": identity.name, "tool": str(identity.tool)}

    checks: dict[str, Check] = {}
    if database is not None:
        checks["database"] = database_check(database)
    checks["kafka"] = kafka_check(broker)
    if flags is not None:
        checks["flags"] = flags_check(flags)

    @app.get(
        "/ready",
        tags=["operations"],
        response_model=Readiness,
        responses={503: {"model": NotReady, "description": "A dependency is down (not_ready)."}},
    )
    async def ready() -> Readiness | JSONResponse:
        """Readiness: the database answers ``SELECT 1``, the broker is connected and the cluster
        answers, the flag provider is READY. 503 names each check that failed."""
        results = await readiness(checks)
        failed = {name: reason for name, reason in results.items() if reason != OK}
        if failed:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
            return problem(503, "not_ready", f"Not ready: {reasons}.", checks=results)
        return Readiness(status="ready", service=identity.name, checks=results)

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
