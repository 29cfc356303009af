"""Measuring the rxsm flow: the three services as processes on a private broker, driven over Kafka."""

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from bench.harness import (
    CORES,
    CpuWindow,
    Latency,
    Proc,
    collect,
    feed,
    spawn,
    wait_until_healthy,
)
from bench.ingress_bench import rxsm_ingress
from bench.profiling import profiled
from demo.requests import VETERAN, renewal_request
from localkafka import free_port
from plumbing.auth import AuthSettings, issue_token
from rxsm.serve import PORT_ENV, SERVICES
from schemas import topics
from schemas.events import RenewalRequested
from schemas.records import RenewalRequest


def renewal_record(index: int) -> tuple[bytes, bytes]:
    """A renewal request for the ingress topic, keyed by its (unique) prescription id."""
    request = RenewalRequest.model_validate(
        renewal_request(f"bench-{uuid4().hex}", prescriptionNumber=str(3600000 + index))
    )
    return request.prescription.prescriptionId.encode(), request.model_dump_json().encode()


STAGES = ("renewal.requested", "careteams.resolved", "draft.created")
"""The events a renewal passes on its way to its draft, one per hop: renewal, care team, messaging."""


@dataclass
class Journeys:
    """Correlates fed requests with their events (prescription -> renewal -> draft -> message) and
    times each stage from the request being fed.

    The sink reads several topics at once, so a renewal's later events can arrive before its
    ``renewal.requested``; those wait in ``early`` until their renewal is known.
    """

    fed_at: dict[str, float] = field(default_factory=dict)
    renewal_of: dict[str, str] = field(default_factory=dict)
    drafts: dict[str, str] = field(default_factory=dict)
    early: dict[str, list[tuple[dict[str, Any], float]]] = field(default_factory=dict)
    stages: dict[str, Latency] = field(default_factory=lambda: {s: Latency() for s in STAGES})

    @property
    def to_draft(self) -> Latency:
        return self.stages["draft.created"]

    def on_event(self, topic: str, event: dict[str, Any], now: float) -> list[str]:
        """The renewals fed here this event sees drafted (``drafted``, once each)."""
        kind, renewal_id = event.get("event_type"), event.get("renewal_id")
        if kind not in STAGES or not renewal_id:
            return []
        if kind == "renewal.requested":
            opened = RenewalRequested.opened(event)  # its prescription travels sealed
            self.renewal_of[renewal_id] = opened["prescription"]["prescriptionId"]
        fed = self.fed_at.get(self.renewal_of.get(renewal_id, ""))
        if renewal_id not in self.renewal_of:
            self.early.setdefault(renewal_id, []).append((event, now))
            return []
        if fed is None:
            return []
        self.stages[kind].samples.append((now - fed) * 1000)
        if kind == "renewal.requested":
            waiting = self.early.pop(renewal_id, [])
            return [o for e, seen in waiting for o in self.on_event(topic, e, seen)]
        if kind == "draft.created":
            self.drafts[renewal_id] = event["draft_id"]
            return ["drafted"]
        return []


@dataclass
class Sends:
    """Times each send from its ``POST /v1/drafts/{id}/send`` going out: to the answer (what the
    Veteran waits for) and to its ``message.sent`` on Kafka."""

    posted_at: dict[str, float] = field(default_factory=dict)
    to_answer: Latency = field(default_factory=Latency)
    to_event: Latency = field(default_factory=Latency)

    def on_event(self, topic: str, event: dict[str, Any], now: float) -> int:
        """1 when this is the ``message.sent`` of a draft sent here, else 0."""
        draft_id = event.get("draft_id")
        if event.get("event_type") != "message.sent" or not isinstance(draft_id, str):
            return 0
        posted = self.posted_at.get(draft_id)
        if posted is None:
            return 0
        self.to_event.samples.append((now - posted) * 1000)
        return 1


@dataclass
class Services:
    procs: list[Proc]
    ports: dict[str, list[int]]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


async def start_services(
    bootstrap: str,
    data_dir: Path,
    otlp: str | None,
    instances: int,
    logs: Path,
    scaled_services: tuple[str, ...] = ("careteam",),
    database_urls: dict[str, str] | None = None,
) -> Services:
    """The services as processes, tracing on (spans exported to ``otlp``) or off (not sampled; the
    metrics stay on). ``instances`` apply to ``scaled_services``: the stateless care-team service by
    default, since the renewal and messaging services' SQLite files take one writer at a time; with
    ``database_urls`` (a PostgreSQL database per stateful service) all of them can be scaled."""
    procs: list[Proc] = []
    ports: dict[str, list[int]] = {}
    for name in SERVICES:
        ports[name] = []
        for instance in range(instances if name in scaled_services else 1):
            port = free_port()
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "RXSM_DATA_DIR": str(data_dir),
                "RXSM_LOG_LEVEL": "WARNING",
                "RXSM_ENV": "development",
                PORT_ENV: str(port),
            }
            if database_urls and name in database_urls:
                env["RXSM_DATABASE_URL"] = database_urls[name]
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            if otlp:
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
            else:
                env["OTEL_TRACES_SAMPLER"] = "always_off"
            procs.append(
                spawn(
                    f"{name}-{instance}",
                    ["-m", "rxsm", "serve", name],
                    env,
                    logs / f"{name}-{instance}.log",
                )
            )
            ports[name].append(port)
    services = Services(procs, ports)
    try:
        await wait_healthy(services)
    except RuntimeError:
        services.stop()
        _print_tails(logs)
        raise
    return services


def _print_tails(logs: Path) -> None:
    """The last lines of each service's log, for a service that did not start."""
    for log in sorted(logs.glob("*.log")):
        print(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]))


async def wait_healthy(services: Services, within: float = 120) -> None:
    """Each service answering /health within ``within`` s; a service that exits meanwhile ends
    the wait at once."""
    deadline = time.monotonic() + within
    ports = [port for each in services.ports.values() for port in each]
    for proc, port in zip(services.procs, ports, strict=True):
        await wait_until_healthy(proc, port, deadline)


def spans_dropped(services: Services) -> dict[str, float]:
    """``rxsm_spans_dropped_total`` of each service (all reasons), read from its /metrics."""
    dropped: dict[str, float] = {}
    for name, ports in services.ports.items():
        for index, port in enumerate(ports):
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            except httpx.HTTPError:
                dropped[f"{name}-{index}"] = float("nan")
                continue
            dropped[f"{name}-{index}"] = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("rxsm_spans_dropped_total")
            )
    return dropped


def feeder(journeys: Journeys) -> Callable[[int], tuple[bytes, bytes]]:
    """Renewal requests that remember when each was fed."""

    def make(index: int) -> tuple[bytes, bytes]:
        key, value = renewal_record(index)
        journeys.fed_at[key.decode()] = time.time()
        return key, value

    return make


async def drive(
    bootstrap: str,
    count: int,
    rate: float | None,
    journeys: Journeys,
    feeding: Callable[[], None] = lambda: None,
) -> tuple[float, float]:
    """Feed ``count`` renewal requests; returns (start, time the last draft was created).
    ``feeding`` is called once the sink listens, right before the first request goes out."""

    def seen(topic: str, event: dict[str, Any], now: float) -> int:
        return journeys.on_event(topic, event, now).count("drafted")

    sink = asyncio.create_task(
        collect(
            bootstrap, [topics.RENEWAL_REQUESTED, topics.CARE_TEAMS, topics.DRAFTS], count, seen
        )
    )
    await asyncio.sleep(2)
    feeding()
    started = await feed(bootstrap, topics.RENEWAL_REQUESTS, count, feeder(journeys), rate=rate)
    finished = await sink
    return started, finished


async def send_all(
    services: Services, drafts: list[str], concurrency: int = 16
) -> tuple[float, int]:
    """POST every draft's send (spread over the messaging instances); returns (seconds, failures)."""
    token = {"Authorization": f"Bearer {issue_token(VETERAN, AuthSettings())}"}
    ports = services.ports["messaging"]
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def send(index: int, draft_id: str, http: httpx.AsyncClient) -> None:
        nonlocal failures
        async with gate:
            port = ports[index % len(ports)]
            response = await http.post(
                f"http://127.0.0.1:{port}/v1/drafts/{draft_id}/send", headers=token
            )
            failures += response.status_code != 200

    started = time.time()
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(send(i, d, http) for i, d in enumerate(drafts)))
    return time.time() - started, failures


async def run_flow(
    bootstrap: str,
    root: Path,
    *,
    count: int,
    tracing_endpoint: str | None,
    instances: int = 1,
    scaled_services: tuple[str, ...] = ("careteam",),
    database_urls: dict[str, str] | None = None,
    rate: float | None = None,
    seconds: float = 0,
    sends: bool = False,
    profile_dir: Path | None = None,
    ingress: int = 0,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """The flow's throughput and CPU; with ``sends``, half its drafts sent flat out (the send path's
    capacity) and the other half at half that rate (its latency); with ``rate``, latency at that
    offered rate and at 50% and 80% of the measured capacity; with ``ingress``, that many HTTP requests to the renewal
    service's ingress (bench/ingress_bench.py); the spans each service dropped, from /metrics.
    With ``broker_pid``, the broker's CPU per renewal beside the services' and the machine's."""
    data_dir = root / f"flow-{uuid4().hex[:6]}"
    logs = data_dir / "logs"
    logs.mkdir(parents=True)
    services = await start_services(
        bootstrap, data_dir, tracing_endpoint, instances, logs, scaled_services, database_urls
    )
    try:
        warm = Journeys()
        await drive(bootstrap, 50, None, warm)
        journeys = Journeys()
        idle = CpuWindow(services.procs)
        await asyncio.sleep(2)
        idle_used = idle.used()
        window = CpuWindow(services.procs, broker_pid)
        with profiled(services.procs, profile_dir) if profile_dir else nullcontext():
            started, finished = await drive(bootstrap, count, None, journeys, window.start)
        used = window.used()
        result: dict[str, Any] = {
            "idle_cpu_ms_per_s_by_service": {
                name: round(cpu / idle_used.seconds * 1000, 1)
                for name, cpu in idle_used.by_process.items()
            },
            "renewals": count,
            "throughput_renewals_s": round(count / (finished - started), 1),
            "cpu_s_per_1000": round(sum(used.by_process.values()) / count * 1000, 2),
            "cpu_s_per_1000_by_service": {
                name: round(cpu / count * 1000, 2) for name, cpu in used.by_process.items()
            },
            "machine_cpu_ms_per_renewal": round(used.machine / count * 1000, 2),
            "machine_busy_share": round(used.machine / (used.seconds * CORES), 3),
        }
        if used.broker is not None:
            result["broker_cpu_ms_per_renewal"] = round(used.broker / count * 1000, 2)
        if sends:
            drafts = list(journeys.drafts.values())
            flat_out, paced = drafts[: len(drafts) // 2], drafts[len(drafts) // 2 :]
            seconds_taken, failures = await send_all(services, flat_out)
            result["send_throughput_s"] = round(len(flat_out) / seconds_taken, 1)
            result["send_failures"] = failures
            result["sends_at_half_capacity"] = await sends_at(
                bootstrap, services, paced, result["send_throughput_s"] / 2
            )
        if rate:
            result["latency_at_offered_rate"] = await latency_at(bootstrap, services, rate, seconds)
            capacity = result["throughput_renewals_s"]
            result["latency_at_half_capacity"] = await latency_at(
                bootstrap, services, capacity / 2, seconds
            )
            result["latency_at_80pct_capacity"] = await latency_at(
                bootstrap, services, capacity * 0.8, seconds
            )
        if ingress:
            renewal = next(p for p in services.procs if p.name == "renewal-0")
            result["http_ingress"] = await rxsm_ingress(
                renewal, services.ports["renewal"][0], ingress
            )
        result["peak_rss_mb"] = {p.name: p.peak_rss_mb() for p in services.procs}
        result["spans_dropped"] = spans_dropped(services)
        return result
    finally:
        services.stop()


async def latency_at(
    bootstrap: str, services: Services, rate: float, seconds: float
) -> dict[str, Any]:
    """Renewals offered at ``rate``/s for ``seconds``, the same work whose capacity the throughput
    run measured: latency from request to each hop's event, and to the draft."""
    count = max(int(rate * seconds), 20)
    journeys = Journeys()
    window = CpuWindow([])
    await drive(bootstrap, count, rate, journeys, window.start)
    used = window.used()
    return {
        "offered_per_s": round(rate, 1),
        "renewals": count,
        "machine_busy_share": round(used.machine / (used.seconds * CORES), 3),
        "request_to_draft": journeys.to_draft.summary(),
        "request_to_stage_p50_ms": {
            stage: latency.summary()["p50_ms"] for stage, latency in journeys.stages.items()
        },
        "request_to_stage_p99_ms": {
            stage: latency.summary()["p99_ms"] for stage, latency in journeys.stages.items()
        },
    }


async def sends_at(
    bootstrap: str, services: Services, drafts: list[str], rate: float
) -> dict[str, Any]:
    """The Veteran sending drafts at ``rate``/s (each ``POST`` when due, none waiting for another):
    latency from the ``POST`` to its answer and to its ``message.sent`` on Kafka."""
    token = {"Authorization": f"Bearer {issue_token(VETERAN, AuthSettings())}"}
    port = services.ports["messaging"][0]
    sends = Sends()
    failures = 0

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:

        async def send(draft_id: str) -> None:
            nonlocal failures
            posted = sends.posted_at[draft_id] = time.time()
            try:
                url = f"http://127.0.0.1:{port}/v1/drafts/{draft_id}/send"
                response = await http.post(url, headers=token)
                failures += response.status_code != 200
            except httpx.HTTPError:
                failures += 1
            else:
                sends.to_answer.samples.append((time.time() - posted) * 1000)

        sink = asyncio.create_task(
            collect(
                bootstrap, [topics.MESSAGES], len(drafts), sends.on_event, settled=lambda: failures
            )
        )
        await asyncio.sleep(2)
        started, tasks = time.time(), []
        for index, draft_id in enumerate(drafts):
            if (delay := started + index / rate - time.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(draft_id)))
        await asyncio.gather(*tasks)
        await sink
    return {
        "offered_per_s": round(rate, 1),
        "sends": len(drafts),
        "send_to_answer": sends.to_answer.summary(),
        "send_to_message_sent": sends.to_event.summary(),
        "send_failures": failures,
    }
