"""The flow's metrics (OpenTelemetry), served in Prometheus text on each service's ``/metrics``.

Counters follow the SM dashboard (domain.md section 6): drafts created / updated / deleted and messages sent,
each by status; latency histograms for drafts and sends; renewals by outcome and owning tool; the care-system
picker shown; dead letters; and consumer lag per topic. Labels carry ``ehr`` (vista / oracle_health) and the
rollout ``cohort`` (new / base) where they are known.

Every counter starts at zero for the label sets the service is known to count (``FLOW_SERIES``), so a
dashboard panel shows 0 rather than "No data" before the first event, and ``rate``/``increase`` count
that first event. HTTP requests are timed by OpenTelemetry's stable ``http.server.request.duration``, in
seconds. The text passes ``promtool check metrics`` (tests/test_promtool.py).
"""

import asyncio
import contextlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Counter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from plumbing.identity import ServiceIdentity
from plumbing.telemetry import span_drops, use_stable_http_semconv
from schemas.vocabulary import Cohort, Ehr, PickerKind, Tool, UnavailableReason

Labels = Mapping[str, str | int | bool]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def every(**values: Iterable[str]) -> list[dict[str, str]]:
    """Each combination of the given label values: ``every(a=("1", "2"), b=("x",))``."""
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


JOURNEY = {"ehr": [str(ehr) for ehr in Ehr], "cohort": [str(cohort) for cohort in Cohort]}
"""Every journey is on one EHR and in one rollout cohort."""


def _steps(*steps: tuple[str, Tool]) -> list[dict[str, str]]:
    return [
        labels
        for step, tool in steps
        for labels in every(step=(step,), tool=(str(tool),), outcome=("success",), **JOURNEY)
    ]


UNAVAILABLE = every(
    step=("care_team_unavailable",),
    tool=(str(Tool.SM),),
    outcome=("failure",),
    reason=[str(reason) for reason in UnavailableReason],
    **JOURNEY,
)
"""The care-team service's failure, whose reasons are a closed set."""

FLOW_SERIES: Mapping[str, Mapping[str, list[dict[str, str]]]] = {
    "renewal": {
        "renewals": every(
            step=("stalled",),
            tool=(str(Tool.MEDS),),
            outcome=("failure",),
            waiting_for=("requested",),
            **JOURNEY,
        ),
    },
    "journey": {
        "renewals": [
            *_steps(
                ("requested", Tool.MEDS),
                ("care_team_resolved", Tool.SM),
                ("draft_created", Tool.SM),
                ("message_sent", Tool.SM),
            ),
            *UNAVAILABLE,
        ],
    },
    "careteam": {
        "renewals": [*_steps(("care_team_resolved", Tool.SM)), *UNAVAILABLE],
        "picker_shown": every(
            kind=[str(kind) for kind in PickerKind],
            cohort=JOURNEY["cohort"],
            flow=("renewal", "new_message"),
        ),
    },
    "messaging": {
        "drafts_created": every(status=("success", "201"), **JOURNEY),
        "drafts_updated": every(status=("200",), **JOURNEY),
        "drafts_deleted": every(status=("204",), **JOURNEY),
        "messages_sent": every(status=("200",), **JOURNEY),
    },
}
"""Per service, the counters' label sets exported at zero from start: the renewal funnel's steps (the
journey service's), meds' intake stalls (the renewal service's), the care-team outcomes and the
picker, and SM's draft and send calls by their success status (``success`` for the renewal's draft
made from its event, else the HTTP status).
Failures with open-ended labels (an SM error code, an exception's type) appear on their first count."""


@dataclass
class ConsumerLag:
    """Lag per (topic, partition) of the service's consumers, refreshed by a background task."""

    values: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def observe(self, _: CallbackOptions) -> Iterable[Observation]:
        for (group, topic, partition), lag in self.values.items():
            yield Observation(
                lag, {"consumer_group": group, "topic": topic, "partition": partition}
            )

    async def refresh(self, group: str, consumer: AIOKafkaConsumer) -> None:
        for partition in consumer.assignment():
            tp: TopicPartition = partition
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await consumer.position(tp)
            self.values[(group, tp.topic, tp.partition)] = max(highwater - position, 0)


@dataclass
class SetAsideGauge:
    """How many outbox events Kafka refused for good and the outbox set aside (the relay counts
    them in the database: at start, after setting one aside, and every minute)."""

    value: int = 0

    def observe(self, _: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.value)


class ServiceMetrics:
    """One service's meter provider, its Prometheus registry, and the flow's instruments."""

    def __init__(self, identity: ServiceIdentity, extra_reader: MetricReader | None = None) -> None:
        use_stable_http_semconv()
        self.identity = identity
        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [
            PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        ]
        if extra_reader is not None:
            readers.append(extra_reader)
        self.provider = MeterProvider(
            metric_readers=readers,
            resource=Resource.create({"service.name": f"rxsm-{identity.name}"}),
        )
        meter = self.provider.get_meter("rxsm")
        self.drafts_created = meter.create_counter(
            "rxsm.drafts.created", description="Drafts created, by status"
        )
        self.drafts_updated = meter.create_counter(
            "rxsm.drafts.updated", description="Draft updates, by status"
        )
        self.drafts_deleted = meter.create_counter(
            "rxsm.drafts.deleted", description="Draft deletions, by status"
        )
        self.messages_sent = meter.create_counter(
            "rxsm.messages.sent", description="Message sends, by status"
        )
        self.draft_latency = meter.create_histogram(
            "rxsm.draft.duration",
            unit="s",
            description="Time to create or update a draft",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.send_latency = meter.create_histogram(
            "rxsm.send.duration",
            unit="s",
            description="Time to send a message",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.renewals = meter.create_counter(
            "rxsm.renewals", description="Renewal steps reached, by outcome and owning tool"
        )
        self.picker_shown = meter.create_counter(
            "rxsm.care_system_picker.shown", description="Care-system picker kind offered"
        )
        self.dead_letters = meter.create_counter(
            "rxsm.dead_letters", description="Records sent to the dead-letter topic"
        )
        self.pruned_rows = meter.create_counter(
            "rxsm.pruned_rows", description="Rows deleted by retention, by table"
        )
        self.outbox_set_aside = SetAsideGauge()
        meter.create_observable_gauge(
            "rxsm.outbox.set_aside",
            callbacks=[self.outbox_set_aside.observe],
            description="Events Kafka refused for good, set aside in the outbox (rxsm outbox)",
        )
        drops = span_drops(identity.name)
        meter.create_observable_counter(
            "rxsm.spans.dropped",
            callbacks=[
                lambda _: [
                    Observation(count, {"reason": reason})
                    for reason, count in drops.counts().items()
                ]
            ],
            description="Spans lost before export, by reason (queue_full, export_failed)",
        )
        self.lag = ConsumerLag()
        meter.create_observable_gauge(
            "rxsm.consumer.lag", callbacks=[self.lag.observe], description="Records behind"
        )
        for counter, label_sets in FLOW_SERIES.get(identity.name, {}).items():
            instrument: Counter = getattr(self, counter)
            for labels in label_sets:
                instrument.add(0, labels)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    async def track_lag(self, broker: KafkaBroker, every: float = 5.0) -> None:
        """Refresh consumer lag until cancelled (run as a task in the app's lifespan)."""
        while True:
            for subscriber in broker.subscribers:
                consumer = getattr(subscriber, "consumer", None)
                group = getattr(subscriber, "group_id", None) or self.identity.consumer_group
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await self.lag.refresh(str(group), consumer)
            await asyncio.sleep(every)

    def shutdown(self) -> None:
        self.provider.shutdown()
