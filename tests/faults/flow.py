"""Traffic for a fault test, and the invariant it must keep, read from Kafka and the services' state.

Modelled on Kafka's own system tests: seed N renewal requests with unique ids, break things while they
flow, then check that every accepted request reached exactly one final outcome (its draft, or "care
team unavailable") and that nothing happened twice: one renewal per request, one outcome per renewal,
one draft per resolved renewal, and, when the drafts are sent, one message per draft on Kafka and in
SM's mailbox. Records that Kafka delivered more than once (the same event id) are counted as
redelivered: at-least-once delivery allows them, as long as they have no second effect.
"""

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from plumbing.auth import AuthSettings, issue_service_token
from rxsm.kafka_reads import partitions_of, read_all
from schemas import topics
from schemas.events import DeadLetter, DraftCreated, RenewalRequested
from schemas.records import RenewalRequest
from tests.faults.cluster import Cluster
from tests.faults.kafka_tools import until_caught_up
from tests.support import bearer

VISTA_VETERAN = "1012845331V153043"
"""Demo Veteran at Cheyenne (VistA 442) with a suggested team: the draft is sent at once."""
OH_VETERAN = "1013062086V794840"
"""Demo Veteran at Spokane (Oracle Health 668, pilot on): the draft goes to the pharmacy pool and its
send is polled until SM confirms it."""
NO_TEAMS_VETERAN = "1013599370V295311"
"""Demo Veteran without care teams: the renewal ends in "care team unavailable"."""

PROVIDER_FIRST_NAME = "Zebulon"
PROVIDER_LAST_NAME = "Quartermaine"
INSTRUCTIONS = "TAKE ONE TABLET BY MOUTH AT BEDTIME FOR TREMOR"
REASON_FOR_USE = "Essential tremor, DOB 03/14/1952, SSN 123-45-6789"
PHI_MARKERS = (PROVIDER_FIRST_NAME, PROVIDER_LAST_NAME, INSTRUCTIONS, "03/14/1952", "123-45-6789")
"""PHI every seeded request carries (names, instructions, a date of birth, an SSN): none of it may
leave the services except in event values and SM's mailbox."""

FLOW_TOPICS = (
    topics.RENEWAL_REQUESTED,
    topics.CARE_TEAMS,
    topics.DRAFTS,
    topics.MESSAGES,
    topics.DEAD_LETTER,
)
RESOLVED = "careteams.resolved"
UNAVAILABLE = "careteams.unavailable"
IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass(frozen=True)
class Request:
    """One renewal request, under its own Idempotency-Key and prescription id."""

    key: str
    veteran_id: str
    body: dict[str, Any]
    resolves: bool
    """The Veteran has a care team: the renewal gets a draft, else "care team unavailable"."""

    @property
    def prescription_id(self) -> str:
        return str(self.body["prescription"]["prescriptionId"])

    @property
    def value(self) -> bytes:
        """The record the Medications app puts on the ingress topic: PHI sealed."""
        return RenewalRequest.sealed_record(self.body)


def _request(veteran_id: str, station: str, ehr: str, resolves: bool) -> Request:
    prescription: dict[str, Any] = {
        "prescriptionId": f"fault-{uuid4()}",
        "prescriptionName": "PROPRANOLOL HCL 20MG TAB",
        "prescriptionNumber": "3620113",
        "dispStatus": "Active",
        "refillRemaining": 0,
        "expirationDate": (date.today() + timedelta(days=45)).isoformat(),
        "isRefillable": False,
        "isRenewable": True,
        "prescriptionSource": "VA",
        "stationNumber": station,
        "sig": INSTRUCTIONS,
        "reason": REASON_FOR_USE,
        "providerFirstName": PROVIDER_FIRST_NAME,
        "providerLastName": PROVIDER_LAST_NAME,
        "quantity": 30,
        "sortedDispensedDate": (date.today() - timedelta(days=40)).isoformat(),
    }
    if ehr == "oracle_health":
        prescription |= {
            "medicationRequestStatus": "active",
            "medicationCategory": "va_prescription",
            "dispenseCount": 1,
            "completedDispenseCount": 1,
            "numberOfRepeatsAllowed": 0,
            "refillRequested": False,
            "dispenseInProgress": False,
        }
    body = {
        "veteranId": veteran_id,
        "prescription": prescription,
        "facilities": [{"stationNumber": station, "ehr": ehr}],
    }
    return Request(f"fault-{uuid4()}", veteran_id, body, resolves)


def renewal_requests(count: int) -> list[Request]:
    """``count`` renewable requests: 3 in 5 VistA, 1 in 5 Oracle Health, 1 in 5 without a care team."""
    kinds = (
        (VISTA_VETERAN, "442", "vista", True),
        (VISTA_VETERAN, "442", "vista", True),
        (VISTA_VETERAN, "442", "vista", True),
        (OH_VETERAN, "668", "oracle_health", True),
        (NO_TEAMS_VETERAN, "442", "vista", False),
    )
    return [_request(*kinds[index % len(kinds)]) for index in range(count)]


async def _paced(items: list[Request], per_second: float | None) -> Any:
    started = time.monotonic()
    for index, item in enumerate(items):
        if per_second and (delay := started + index / per_second - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        yield item


async def publish_requests(
    bootstrap: str,
    requests: list[Request],
    *,
    per_second: float | None = None,
    copies: int = 1,
    within: float = 180.0,
) -> None:
    """Put each request on the ingress topic ``copies`` times, as the Medications app does, retrying
    a record until the broker acknowledges it (so a broker restart only delays the seeding)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10000
    )
    await producer.start()
    deadline = time.monotonic() + within
    try:
        async for request in _paced(requests, per_second):
            for _ in range(copies):
                while True:
                    try:
                        await producer.send_and_wait(
                            topics.RENEWAL_REQUESTS,
                            request.value,
                            key=request.key.encode(),
                            headers=[(IDEMPOTENCY_KEY, request.key.encode())],
                        )
                        break
                    except KafkaError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.5)
    finally:
        await producer.stop()


async def post_requests(
    cluster: Cluster,
    requests: list[Request],
    *,
    per_second: float | None = None,
    within: float = 180.0,
) -> dict[str, str]:
    """POST each request as the Medications app (its service token, an Idempotency-Key), again on a
    connection error or a 5xx until a 202; returns the renewal id answered for each key."""
    headers = {"Authorization": f"Bearer {issue_service_token(AuthSettings())}"}
    answered: dict[str, str] = {}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=30) as client:
        async for request in _paced(requests, per_second):
            attempt = len(answered)
            while request.key not in answered:
                urls = cluster.urls("renewal")
                response = None
                if urls:
                    with contextlib.suppress(httpx.TransportError):
                        response = await client.post(
                            f"{urls[attempt % len(urls)]}/v1/renewals",
                            json=request.body,
                            headers={**headers, IDEMPOTENCY_KEY: request.key},
                        )
                if response is not None and response.status_code == 202:
                    answered[request.key] = response.json()["renewal_id"]
                elif response is not None and response.status_code < 500:
                    raise AssertionError(f"renewal refused: {response.status_code} {response.text}")
                elif time.monotonic() > deadline:
                    raise AssertionError(f"no 202 for {request.key} within {within:.0f} s")
                else:
                    attempt += 1
                    await asyncio.sleep(0.3)
    return answered


@dataclass
class Observed:
    """What the flow's topics say happened, by journey."""

    renewals: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """prescription id -> renewal ids requested for it."""
    outcomes: defaultdict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    """renewal id -> {care-teams event id: event type}."""
    drafts: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """renewal id -> draft ids created for it."""
    owners: dict[str, str] = field(default_factory=dict)
    """draft id -> the Veteran whose draft it is."""
    messages: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """draft id -> SM message ids of ``message.sent``."""
    copies: Counter[str] = field(default_factory=Counter)
    """event id -> records carrying it."""
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def add(self, topic: str, value: bytes | None) -> str | None:
        """Take in one record; returns the draft id of a draft seen for the first time."""
        try:
            event = json.loads(value or b"")
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        kind = event.get("event_type")
        if topic == topics.DEAD_LETTER:
            with contextlib.suppress(ValidationError):
                self.dead_letters.append(DeadLetter.model_validate(event))
            return None
        self.copies[str(event.get("event_id"))] += 1
        try:
            if kind == "renewal.requested":
                requested = RenewalRequested.model_validate(event)  # opens the sealed fields
                prescription_id = requested.prescription.prescriptionId
                self.renewals[prescription_id].add(event["renewal_id"])
            elif kind in (RESOLVED, UNAVAILABLE):
                self.outcomes[event["renewal_id"]][event["event_id"]] = kind
            elif kind == "draft.created" and event.get("renewal_id"):
                draft_id = event["draft_id"]
                first = draft_id not in self.owners
                self.drafts[event["renewal_id"]].add(draft_id)
                self.owners[draft_id] = DraftCreated.model_validate(event).veteran_id
                return draft_id if first else None
            elif kind == "message.sent":
                self.messages[event["draft_id"]].add(event["message_id"])
        except (KeyError, TypeError, ValueError):  # a poison record: not a step of any journey
            return None
        return None

    def renewal_of(self, request: Request) -> str | None:
        found = self.renewals.get(request.prescription_id)
        return min(found) if found else None

    def finished(self, request: Request) -> bool:
        """The request's renewal reached its final outcome."""
        renewal = self.renewal_of(request)
        if renewal is None or not self.outcomes.get(renewal):
            return False
        return bool(self.drafts.get(renewal)) or not request.resolves


async def read_flow(bootstrap: str, names: Iterable[str] = FLOW_TOPICS) -> Observed:
    """Every record on the flow's topics from offset 0 to their current end."""
    observed = Observed()
    for topic in names:
        async for record in read_all(bootstrap, topic):
            observed.add(topic, record.value)
    return observed


@dataclass(frozen=True)
class Counts:
    seeded: int
    accepted: int
    outcomes: int
    duplicates: int
    drafts: int
    sent: int
    redelivered: int
    problems: tuple[str, ...]

    def line(self) -> str:
        return (
            f"accepted={self.accepted} outcomes={self.outcomes} duplicates={self.duplicates} "
            f"drafts={self.drafts} sent={self.sent} redelivered={self.redelivered} "
            f"(seeded={self.seeded})"
        )

    def assert_exactly_once(self) -> None:
        assert self.problems == (), "\n".join(self.problems[:20])
        assert (self.accepted, self.outcomes, self.duplicates) == (self.seeded, self.seeded, 0)


def tally(
    observed: Observed,
    requests: list[Request],
    mailbox: Counter[str],
    ledger: dict[str, dict[str, Any]],
) -> Counts:
    """Each request's journey against the invariant; ``mailbox``: SM messages per draft id;
    ``ledger``: each renewal's journey in the journey service's ledger."""
    problems: list[str] = []
    accepted = outcomes = duplicates = drafts = messages = 0
    for request in requests:
        renewals = observed.renewals.get(request.prescription_id, set())
        if not renewals:
            problems.append(f"{request.key}: no renewal requested")
            continue
        accepted += 1
        if len(renewals) > 1:
            duplicates += len(renewals) - 1
            problems.append(f"{request.key}: {len(renewals)} renewals")
        renewal = min(renewals)
        kinds = list(observed.outcomes.get(renewal, {}).values())
        created = observed.drafts.get(renewal, set())
        duplicates += max(len(kinds) - 1, 0) + max(len(created) - 1, 0)
        expected = RESOLVED if request.resolves else UNAVAILABLE
        if kinds == [expected] and len(created) == (1 if request.resolves else 0):
            outcomes += 1
        else:
            problems.append(f"renewal {renewal}: outcomes {kinds}, {len(created)} draft(s)")
        drafts += len(created)
        for draft in created:
            sent_ids = observed.messages.get(draft, set())
            delivered = mailbox.get(draft, 0)
            duplicates += max(len(sent_ids) - 1, 0) + max(delivered - 1, 0)
            if (len(sent_ids), delivered) != (1, 1):
                problems.append(
                    f"draft {draft}: {len(sent_ids)} message.sent, {delivered} in SM's mailbox"
                )
            messages += bool(sent_ids)
        journey = ledger.get(renewal, {})
        if journey.get("status") != ("sent" if request.resolves else "care_team_unavailable"):
            steps = [step["step"] for step in journey.get("steps", [])]
            problems.append(f"renewal {renewal}: ledger says {journey.get('status')} after {steps}")
    redelivered = sum(count - 1 for count in observed.copies.values() if count > 1)
    return Counts(
        seeded=len(requests),
        accepted=accepted,
        outcomes=outcomes,
        duplicates=duplicates,
        drafts=drafts,
        sent=messages,
        redelivered=redelivered,
        problems=tuple(problems),
    )


async def sm_mailbox(database_url: str) -> Counter[str]:
    """Messages per draft id in the built-in SM's mailbox (the messaging service's database)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT draft_id, count(*) FROM builtin_sm_messages GROUP BY draft_id")
            )
            return Counter({str(draft): int(count) for draft, count in rows})
    finally:
        await engine.dispose()


async def ledger_journeys(
    cluster: Cluster, renewal_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Each renewal's journey (status, steps) in the journey service's ledger."""
    journeys: dict[str, dict[str, Any]] = {}
    gate = asyncio.Semaphore(8)
    sre = {"Authorization": f"Bearer {issue_service_token(AuthSettings(), subject='rxsm-cli')}"}
    async with httpx.AsyncClient(timeout=30, headers=sre) as client:

        async def status(renewal_id: str) -> None:
            async with gate:
                url = cluster.urls("journey")[0]
                response = await client.get(f"{url}/v1/renewals/{renewal_id}")
                if response.status_code == 200:
                    journeys[renewal_id] = response.json()

        await asyncio.gather(*(status(renewal_id) for renewal_id in renewal_ids))
    return journeys


class Traffic:
    """Follows the flow's topics while a scenario runs, and sends every renewal draft as its Veteran
    would (retrying a connection error or a 5xx on another instance until SM answers)."""

    def __init__(self, cluster: Cluster, requests: list[Request]) -> None:
        self.cluster = cluster
        self.requests = requests
        self.observed = Observed()
        self.answers: dict[str, int] = {}
        """draft id -> the final HTTP status of its send."""
        self._drafts: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()

    async def __aenter__(self) -> "Traffic":
        self._tasks.append(asyncio.create_task(self._follow()))
        self._tasks += [asyncio.create_task(self._sender()) for _ in range(4)]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def finished(self) -> int:
        """Requests whose renewal reached its final outcome and whose draft, if any, was sent."""
        return sum(
            self.observed.finished(request) and self._delivered(request)
            for request in self.requests
        )

    def _delivered(self, request: Request) -> bool:
        renewal = self.observed.renewal_of(request)
        drafts = self.observed.drafts.get(renewal or "", set())
        return all(draft in self.answers and self.observed.messages.get(draft) for draft in drafts)

    async def until(self, done: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {within:.0f} s ({self.progress()})")
            await asyncio.sleep(0.2)

    async def until_finished(self, count: int, within: float = 150.0) -> None:
        await self.until(lambda: self.finished() >= count, within, f"{count} finished")

    def progress(self) -> str:
        return f"{self.finished()} of {len(self.requests)} finished, {len(self.answers)} sent"

    def note(self, what: str) -> None:
        """Print what the scenario just did, when, and how far the flow was."""
        print(f"[{time.monotonic() - self._started:6.1f} s] {what} ({self.progress()})")

    async def _follow(self) -> None:
        partitions = [
            tp for topic in FLOW_TOPICS for tp in await partitions_of(self.cluster.bootstrap, topic)
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.cluster.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=500)
                except KafkaError:
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    for record in records:
                        draft = self.observed.add(tp.topic, record.value)
                        if draft is not None:
                            self._drafts.put_nowait(draft)
        finally:
            await consumer.stop()

    async def _sender(self) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while True:
                draft = await self._drafts.get()
                self.answers[draft] = await self._send(client, draft)

    async def _send(self, client: httpx.AsyncClient, draft: str) -> int:
        headers = bearer(self.observed.owners[draft])
        attempt = random.randrange(len(self.cluster.instances["messaging"]))
        while True:
            urls = self.cluster.urls("messaging")
            response = None
            if urls:
                with contextlib.suppress(httpx.TransportError):
                    response = await client.post(
                        f"{urls[attempt % len(urls)]}/v1/drafts/{draft}/send", headers=headers
                    )
            if response is not None and response.status_code < 500:
                return response.status_code
            attempt += 1
            await asyncio.sleep(0.3)


async def verify(cluster: Cluster, traffic: Traffic, *, within: float = 240.0) -> Counts:
    """Once every consumer group has caught up (until ``within``), read the topics from offset 0 and
    the services' state, count, print and return the counts."""
    await until_caught_up(cluster.bootstrap, within)
    observed = await read_flow(cluster.bootstrap)
    mailbox = await sm_mailbox(cluster.database_url("messaging"))
    renewals = [r for r in (observed.renewal_of(q) for q in traffic.requests) if r]
    ledger = await ledger_journeys(cluster, renewals)
    counts = tally(observed, traffic.requests, mailbox, ledger)
    refused = {draft: status for draft, status in traffic.answers.items() if status != 200}
    print(counts.line())
    assert not refused, f"sends refused: {refused}"
    return counts
