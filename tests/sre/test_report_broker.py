"""`rxsm report` on the real broker: events put on the flow's topics show up in the answers."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from typer.testing import CliRunner

from plumbing.topics import ensure_topics
from rxsm.cli import app, console, print_report
from rxsm.kafka_reads import kept_from
from rxsm.report import REPORTED_TOPICS, summarize
from schemas import topics
from schemas.events import (
    CareTeamUnavailable,
    Event,
    MessageSendFailed,
    MessageSent,
    Platform,
    RenewalRequested,
    TeamSelection,
)
from schemas.records import Prescription
from schemas.topics import TOPIC_OF_EVENT
from schemas.vocabulary import Category, Cohort, Ehr, UnavailableReason

pytestmark = pytest.mark.kafka


async def report(bootstrap: str) -> dict[str, Any]:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["report", "--since", "1d", "--json"],
        env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap},
    )
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


async def publish(bootstrap: str, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                TOPIC_OF_EVENT[event.event_type], event.model_dump_json().encode(), key=event.key
            )
    finally:
        await producer.stop()


def sent(veteran: str, ehr: Ehr, platform: Platform, selection: TeamSelection) -> MessageSent:
    return MessageSent(
        renewal_id=uuid4(),
        message_id=str(uuid4()),
        draft_id=uuid4(),
        veteran_id=veteran,
        recipient_id=1013155,
        station_number="442",
        ehr=ehr,
        category=Category.MEDICATIONS,
        team_selection=selection,
        platform=platform,
        cohort=Cohort.NEW,
    )


def count(answer: dict[str, Any], *path: str) -> int:
    value: Any = answer
    for part in path:
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, int) else 0


def failures_of(answer: dict[str, Any], step: str, error: str) -> int:
    return sum(
        failure["count"]
        for failure in answer["failures"]
        if (failure["step"], failure["error"]) == (step, error)
    )


async def test_the_report_counts_what_the_flow_published(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, 3, list(REPORTED_TOPICS))
    first, second = f"{uuid4().hex[:10]}V1", f"{uuid4().hex[:10]}V2"
    events: list[Event] = [
        RenewalRequested(
            renewal_id=uuid4(),
            veteran_id=first,
            ehr=Ehr.ORACLE_HEALTH,
            prescription=Prescription(prescriptionId="rx-1"),
            cohort=Cohort.NEW,
        ),
        CareTeamUnavailable(
            renewal_id=uuid4(),
            veteran_id=second,
            ehr=Ehr.ORACLE_HEALTH,
            reason=UnavailableReason.FACILITY_MIGRATING,
            cohort=Cohort.NEW,
        ),
        sent(first, Ehr.VISTA, Platform.WEB, TeamSelection.RECENT),
        sent(first, Ehr.ORACLE_HEALTH, Platform.MOBILE, TeamSelection.CARE_SYSTEM_PICKER),
        sent(second, Ehr.ORACLE_HEALTH, Platform.MOBILE, TeamSelection.RECENT),
        MessageSendFailed(
            renewal_id=uuid4(),
            draft_id=uuid4(),
            veteran_id=second,
            recipient_id=3075701,
            ehr=Ehr.ORACLE_HEALTH,
            error_code="SM98",
            retryable=False,
            cohort=Cohort.NEW,
        ),
    ]
    before = await report(kafka_bootstrap)

    await publish(kafka_bootstrap, events)
    after = await report(kafka_bootstrap)

    def grew(*path: str) -> int:
        return count(after, *path) - count(before, *path)

    assert grew("renewals_requested") == 1
    assert (grew("messages_sent", "total"), grew("messages_sent", "veterans")) == (3, 2)
    assert (
        grew("messages_sent", "by_platform", "web"),
        grew("messages_sent", "by_platform", "mobile"),
    ) == (1, 2)
    assert (
        grew("messages_sent", "by_ehr", "vista"),
        grew("messages_sent", "by_ehr", "oracle_health"),
    ) == (1, 2)
    assert grew("team_selection", "counts", "recent") == 2
    assert grew("team_selection", "counts", "care_system_picker") == 1
    assert (grew("sends", "attempts"), grew("sends", "failed")) == (4, 1)
    assert (
        failures_of(after, "message_send_failed", "SM98")
        - failures_of(before, "message_send_failed", "SM98")
        == 1
    )
    assert (
        failures_of(after, "care_team_unavailable", "facility_migrating")
        - failures_of(before, "care_team_unavailable", "facility_migrating")
        == 1
    )
    assert grew("cohorts", "new", "renewals_requested") == 1
    assert grew("cohorts", "new", "send_failures") == 1
    assert first not in json.dumps(after) and second not in json.dumps(after)


async def test_a_topic_cut_short_by_retention_is_named_with_the_time_it_is_kept_from(
    kafka_bootstrap: str,
) -> None:
    """Kafka deletes a topic's oldest records after its retention: the report then says from when it
    saw the topic, never counting silently over a window it could not see."""
    topic = f"rxsm.test.report-window.{uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, 1, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, b"{}") for _ in range(3)]
    finally:
        await producer.stop()
    assert await kept_from(kafka_bootstrap, topic) is None, "nothing deleted: all of it is seen"

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=2)})
    finally:
        await admin.close()

    kept = await kept_from(kafka_bootstrap, topic)
    assert kept is not None
    assert int(kept.timestamp() * 1000) == sent[2].timestamp


def test_the_report_says_which_topics_it_saw_only_from_later() -> None:
    until = datetime.now(UTC)
    kept = until - timedelta(days=7)
    found = summarize([], until - timedelta(days=30), until, {topics.MESSAGES: kept})
    assert found.unseen == {topics.MESSAGES: kept}
    with console.capture() as captured:
        print_report(found)
    assert f"Kafka keeps {topics.MESSAGES} from {kept:%Y-%m-%d %H:%M}" in captured.get()
