"""The event contracts: envelope, topics, and committed JSON Schema exports."""

import json
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel, ValidationError

from schemas import export, topics
from schemas.events import EVENT_MODELS, Event, RenewalRequested, any_event
from schemas.vocabulary import Tool

ENVELOPE = {"event_id", "event_type", "schema_version", "occurred_at", "renewal_id", "tool"}


def test_the_committed_json_schema_exports_match_the_models() -> None:
    assert export.stale_files() == [], "run `make schemas` and commit schemas/json"


@pytest.mark.parametrize("model", [m for m in EVENT_MODELS if issubclass(m, Event)])
def test_every_event_carries_the_envelope_and_has_a_topic(model: type[BaseModel]) -> None:
    assert set(model.model_fields) >= ENVELOPE
    event_type = model.model_fields["event_type"].default
    assert topics.TOPIC_OF_EVENT[event_type] in topics.ALL


def renewal_requested(**changes: Any) -> dict[str, Any]:
    event = RenewalRequested(
        renewal_id=uuid4(),
        veteran_id="1012845331V153043",
        ehr="vista",
        prescription={"prescriptionId": "123"},
    )
    return {**json.loads(event.model_dump_json()), **changes}


def test_an_event_round_trips_through_json_by_its_type() -> None:
    wire = renewal_requested()
    parsed = any_event.validate_json(json.dumps(wire))
    assert isinstance(parsed, RenewalRequested)
    assert parsed.tool is Tool.MEDS
    assert parsed.key == str(parsed.renewal_id).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 2},
        {"tool": "sm"},
        {"occurred_at": "2026-11-23T10:00:00"},
        {"event_type": "renewal.unknown"},
        {"surprise": True},
    ],
    ids=["future version", "wrong owner", "naive time", "unknown type", "unknown field"],
)
def test_a_malformed_event_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        any_event.validate_json(json.dumps(renewal_requested(**change)))
