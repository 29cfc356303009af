"""After a run, no PHI is anywhere it may not be: Kafka records (keys, headers and values, on every
topic), log lines, span attributes and dead-letter reasons.

The services run as processes on a broker of their own and export their spans over OTLP to this test.
Every request carries PHI (a provider's name, instructions, a date of birth and an SSN in the reason
for use), drafts are prefilled and sent, poison records carrying the same PHI are dead-lettered. PHI
travels on Kafka only sealed (schemas/sealing.py), and in clear only to SM's mailbox; the Veteran's id
(and a bearer token, which holds it) nowhere else.
"""

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from rxsm.kafka_reads import read_all
from schemas import topics
from schemas.events import DeadLetter
from tests.faults.cluster import SERVICES, Cluster
from tests.faults.flow import (
    NO_TEAMS_VETERAN,
    OH_VETERAN,
    PHI_MARKERS,
    VISTA_VETERAN,
    Traffic,
    post_requests,
    publish_requests,
    renewal_requests,
    verify,
)
from tests.faults.kafka_tools import consumers_of_topics
from tests.faults.poison import POISONS
from tests.faults.test_poison import dead_lettered
from tests.security.otlp import SpanSink

pytestmark = pytest.mark.faults

FORBIDDEN = [
    *(re.escape(marker) for marker in PHI_MARKERS),
    *(re.escape(veteran) for veteran in (VISTA_VETERAN, OH_VETERAN, NO_TEAMS_VETERAN)),
    r"\b\d{3}-\d{2}-\d{4}\b",
    r"\b\d{2}/\d{2}/\d{4}\b",
    r"\beyJ[\w-]{10,}\.[\w-]{10,}",
]
"""The seeded PHI, the Veterans' ids, anything SSN- or date-of-birth-like, and JWTs."""
PHI = re.compile("|".join(FORBIDDEN))


def leaks(texts: Iterable[str]) -> list[str]:
    return [text[:300] for text in texts if PHI.search(text)]


async def every_record(bootstrap: str) -> AsyncIterator[tuple[str, ConsumerRecord]]:
    """Every record of every topic, with its topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if not name.startswith("__")]
    finally:
        await admin.close()
    for name in names:
        async for record in read_all(bootstrap, name):
            yield name, record


async def kafka_keys_and_headers(bootstrap: str) -> list[str]:
    """The key and every header (name and value) of every record on every topic."""
    found = []
    async for name, record in every_record(bootstrap):
        found.append(f"{name} key {(record.key or b'').decode('utf-8', 'replace')}")
        found += [
            f"{name} header {header}={value.decode('utf-8', 'replace')}"
            for header, value in record.headers or ()
        ]
    return found


async def kafka_values(bootstrap: str, placed_by_test: set[tuple[str, int, int]]) -> list[str]:
    """The value of every record on every topic, but the poison this test put there itself (a broken
    producer's records, PHI in clear included, which rxsm keeps sealed in their dead letters)."""
    return [
        f"{name} value {(record.value or b'').decode('utf-8', 'replace')}"
        async for name, record in every_record(bootstrap)
        if (name, record.partition, record.offset) not in placed_by_test
    ]


async def dead_letter_reasons(bootstrap: str) -> list[str]:
    """Each dead letter's error, reason and the headers it kept (its value is the original bytes)."""
    found = []
    async for record in read_all(bootstrap, topics.DEAD_LETTER):
        try:
            letter = DeadLetter.model_validate_json(record.value)
        except ValidationError:
            continue
        found.append(f"{letter.error_type}: {letter.reason} {letter.headers}")
    return found


async def test_no_phi_in_kafka_keys_headers_logs_spans_or_dead_letter_reasons(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with SpanSink() as sink:
        cluster = Cluster(
            tmp_path / "cluster",
            otlp_endpoint=sink.endpoint,
            pycache=tmp_path_factory.getbasetemp() / "pycache",
        )
        try:
            await cluster.start()
            requests = renewal_requests(40)
            async with Traffic(cluster, requests) as traffic:
                await asyncio.gather(
                    publish_requests(cluster.bootstrap, requests[::2]),
                    post_requests(cluster, requests[1::2]),
                )
                await traffic.until_finished(len(requests))
            (await verify(cluster, traffic)).assert_exactly_once()
            poisons = tuple(poison for poison in POISONS if poison.kind != "huge payload")
            letters = await dead_lettered(cluster, poisons)
            assert len(letters) == len(poisons) * sum(map(len, consumers_of_topics().values()))
            carried = [letter.value for _, letter in letters.values()]
            kafka = await kafka_keys_and_headers(cluster.bootstrap)
            poison_records = {(p.topic, p.partition, p.offset) for p, _ in letters.values()}
            values = await kafka_values(cluster.bootstrap, poison_records)
            reasons = await dead_letter_reasons(cluster.bootstrap)
        finally:
            await cluster.close()
        spans = [f"{key}={value}" for key, value in sink.attributes()]
        exporters = sink.services()
        span_count = sink.span_count()
    logs = cluster.log_lines()

    print(
        f"scanned {len(kafka)} Kafka keys and headers, {len(values)} record values, "
        f"{len(logs)} log lines, "
        f"{len(spans)} span attributes of {span_count} spans, {len(reasons)} dead-letter reasons"
    )
    assert leaks(base64.b64decode(value).decode("utf-8", "replace") for value in carried), (
        "the scan finds the PHI the dead letters' original bytes do carry"
    )
    assert exporters == {f"rxsm-{service}" for service in SERVICES}
    assert logs and spans and reasons
    assert leaks(kafka) == []
    assert len(values) > len(requests) and leaks(values) == [], "no PHI in clear in any record"
    assert leaks(reasons) == []
    assert leaks(logs) == []
    assert leaks(spans) == []
