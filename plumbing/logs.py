"""structlog JSON logs on every service, each line carrying the service, its tool and the trace ids.

Everything, stdlib loggers included (uvicorn, aiokafka, FastStream), goes through one JSON formatter.
"""

import logging
import sys
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor

from plumbing.identity import ServiceIdentity
from plumbing.redaction import redact_log


def add_trace_context(_: Any, __: str, event: EventDict) -> EventDict:
    """Stamp the current span's trace and span ids (W3C hex) on the line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def flatten_extra(_: Any, __: str, event: EventDict) -> EventDict:
    """FastStream logs its context as ``extra={...}``: lift those keys onto the line."""
    extra = event.pop("extra", None)
    if isinstance(extra, dict):
        for key, value in extra.items():
            event.setdefault(key, value)
    return event


def _identity_adder(identity: ServiceIdentity) -> Processor:
    def add_identity(_: Any, __: str, event: EventDict) -> EventDict:
        event.setdefault("service", identity.name)
        event.setdefault("tool", str(identity.tool))
        return event

    return add_identity


def _shared_processors(identity: ServiceIdentity) -> list[Processor]:
    """What every line gets, whether it came from structlog or from a stdlib logger."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        flatten_extra,
        add_trace_context,
        _identity_adder(identity),
    ]


def json_formatter(identity: ServiceIdentity) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(identity),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_log,
            structlog.processors.JSONRenderer(),
        ],
    )


class RetriedKafkaErrors(logging.Filter):
    """aiokafka logs at ERROR some errors it retries by itself (a partition's leader or the group's
    coordinator not known yet, as at every start): they are WARNING lines here, so an ERROR line
    means something an SRE must look at. One that persists shows as consumer lag and stalls."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.name.startswith("aiokafka"):
            args = record.args if isinstance(record.args, tuple) else ()
            if any(getattr(arg, "retriable", False) for arg in args):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(
    identity: ServiceIdentity, level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Route structlog and stdlib logging to one JSON handler on ``stream`` (stdout by default)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(identity),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(json_formatter(identity))
    handler.addFilter(RetriedKafkaErrors())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler


def get_logger(identity: ServiceIdentity) -> structlog.stdlib.BoundLogger:
    """A logger bound to the service and its tool (so in-process tests keep them apart)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(
        f"rxsm.{identity.name}", service=identity.name, tool=str(identity.tool)
    )
    return logger
