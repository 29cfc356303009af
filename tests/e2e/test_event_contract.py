"""The events on Kafka against their exported JSON Schemas (schemas/json), checked by check-jsonschema.

Renewals go through the flow, and the records they leave on each topic are read back as Kafka holds
them, their PHI sealed (schemas/sealing.py); each is validated by ``check-jsonschema --schemafile``
against the schema of its type, and the schema files against JSON Schema's metaschema. The same
record with its PHI opened in clear is refused: the schemas describe the wire, not the model.
"""

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.events import EVENT_MODELS, RenewalRequested
from schemas.export import JSON_DIR
from tests.contracts.schemathesis_hooks import renewable_request
from tests.e2e.conftest import Flow
from tests.support import bearer, eventually, read_topic

pytestmark = pytest.mark.kafka

CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

VETERAN = "1012845331V153043"
"""A demo Veteran with one care team at Cheyenne (442), where the requests' prescriptions are."""
NO_CARE_TEAM = "1013599370V295311"
"""A demo Veteran SM knows no care team for."""

NOT_CAPTURED = {
    "message.send_failed": "needs SM to fail a send",
    "dead_letter.replayed": "rxsm dlq",
}
"""Event types this run does not produce, and what would."""


def check_jsonschema(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHECK_JSONSCHEMA, *map(str, arguments)], capture_output=True, text=True, timeout=120
    )


def schema_file(event_type: str) -> Path:
    return JSON_DIR / f"{event_type}.v1.json"


async def first(flow: Flow, topic: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return (await read_topic(flow.bootstrap, topic, match))[0]


async def draft_of(flow: Flow, renewal_id: str) -> dict[str, Any]:
    async def prefilled() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(VETERAN)
        )
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 else None

    return await eventually(prefilled)


async def request(flow: Flow, veteran_id: str = VETERAN, **changes: Any) -> str:
    body = renewable_request(veteran_id, {"test": str(uuid4())})
    body["prescription"].update(changes)
    response = await flow.renewal.post("/v1/renewals", json=body)
    assert response.status_code in {202, 422}, response.text
    renewal_id: str = response.json()["renewal_id"]
    return renewal_id


@pytest.fixture(scope="module")
async def captured(flow: Flow) -> list[dict[str, Any]]:
    """Records of every type the flow writes, as Kafka holds them."""
    veteran = bearer(VETERAN)
    sent = await request(flow)
    draft = await draft_of(flow, sent)
    edited = await flow.messaging.put(
        f"/v1/drafts/{draft['id']}", json={"body": "Please renew it."}, headers=veteran
    )
    assert edited.status_code == 200, edited.text
    sending = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=veteran)
    assert sending.status_code == 200, sending.text

    deleted = await request(flow)
    removed = await draft_of(flow, deleted)
    gone = await flow.messaging.delete(f"/v1/drafts/{removed['id']}", headers=veteran)
    assert gone.status_code == 204, gone.text

    unavailable = await request(flow, NO_CARE_TEAM)
    refused = await request(flow, dispStatus="Discontinued")

    poison_key = f"contract-{uuid4()}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.RENEWAL_REQUESTS, b"{not json", key=poison_key)
    finally:
        await producer.stop()

    def of(renewal_id: str, event_type: str) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e.get("renewal_id") == renewal_id and e.get("event_type") == event_type

    return [
        await first(flow, topics.RENEWAL_REQUESTED, of(sent, "renewal.requested")),
        await first(flow, topics.RENEWAL_REFUSED, of(refused, "renewal.refused")),
        await first(flow, topics.CARE_TEAMS, of(sent, "careteams.resolved")),
        await first(flow, topics.CARE_TEAMS, of(unavailable, "careteams.unavailable")),
        await first(flow, topics.DRAFTS, of(sent, "draft.created")),
        await first(flow, topics.DRAFTS, of(sent, "draft.updated")),
        await first(flow, topics.DRAFTS, of(deleted, "draft.deleted")),
        await first(flow, topics.MESSAGES, of(sent, "message.sent")),
        await first(flow, topics.RENEWALS_CLOSED, of(sent, "renewal.closed")),
        await first(
            flow,
            topics.DEAD_LETTER,
            lambda e: e.get("key") == base64.b64encode(poison_key).decode(),
        ),
    ]


def test_the_schema_files_are_valid_json_schemas() -> None:
    files = sorted(JSON_DIR.glob("*.json"))
    assert files
    checked = check_jsonschema("--check-metaschema", *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_event_type_is_captured_but_those_this_run_cannot_make(
    captured: list[dict[str, Any]],
) -> None:
    types = {model.model_fields["event_type"].default for model in EVENT_MODELS}
    assert {record["event_type"] for record in captured} == types - set(NOT_CAPTURED)


def test_each_record_on_kafka_is_valid_for_its_types_schema(
    captured: list[dict[str, Any]], tmp_path: Path
) -> None:
    for record in captured:
        instance = tmp_path / f"{record['event_type']}.json"
        instance.write_text(json.dumps(record))
        checked = check_jsonschema("--schemafile", schema_file(record["event_type"]), instance)
        assert checked.returncode == 0, (record["event_type"], checked.stdout + checked.stderr)


def test_an_event_with_its_phi_in_clear_is_refused(
    captured: list[dict[str, Any]], tmp_path: Path
) -> None:
    (requested,) = [r for r in captured if r["event_type"] == "renewal.requested"]
    clear = RenewalRequested.opened(requested)
    assert clear["veteran_id"] == VETERAN
    instance = tmp_path / "clear.json"
    instance.write_text(json.dumps(clear))
    checked = check_jsonschema("--schemafile", schema_file("renewal.requested"), instance)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "veteran_id" in checked.stdout
