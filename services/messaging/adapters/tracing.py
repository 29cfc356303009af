"""The trace context a draft keeps: the W3C ``traceparent`` of the span that created it, so a later
request on the draft (the Veteran's send, maybe hours later) joins the journey's trace by a span link."""

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
LINKED_STEP = "rxsm.linked_step"

_W3C = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent``; None outside a recording span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def link_to(traceparent: str | None, step: str) -> None:
    """Link the current span to the span ``traceparent`` names (it did ``step``)."""
    if traceparent is None:
        return
    linked = trace.get_current_span(_W3C.extract({TRACEPARENT: traceparent})).get_span_context()
    if linked.is_valid:
        trace.get_current_span().add_link(linked, {LINKED_STEP: step})
