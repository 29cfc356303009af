"""Property: whatever a record on a topic holds, the type its consumer reads either validates it or
refuses it with a ValidationError: the dead-letter path, whose reason never echoes the payload.

Any other exception would be taken for a transient failure and retried. The records are arbitrary
JSON, arbitrary bytes, and well-formed records with one field replaced or removed; their strings
include PHI, which no reason may carry.
"""

import json
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from plumbing.deadletter import safe_reason
from schemas import topics
from schemas.events import EVENT_MODELS, AnyEvent, CareTeamsOutcome
from schemas.records import RenewalRequest
from services.journey.domain import JourneyEvent
from tests.faults.flow import PHI_MARKERS
from tests.faults.poison import well_formed

CONSUMED_TYPES: dict[str, TypeAdapter[Any]] = {
    "renewal request (ingress)": TypeAdapter(RenewalRequest),
    "care-teams outcome (messaging)": TypeAdapter(CareTeamsOutcome),
    "journey event (journey)": TypeAdapter(JourneyEvent),
    "any event": TypeAdapter(AnyEvent),
    **{model.__name__: TypeAdapter(model) for model in EVENT_MODELS},
}
WELL_FORMED = [
    well_formed(topic)
    for topic in (
        topics.RENEWAL_REQUESTS,
        topics.RENEWAL_REQUESTED,
        topics.RENEWAL_REFUSED,
        topics.CARE_TEAMS,
        topics.DRAFTS,
        topics.MESSAGES,
        topics.DEAD_LETTER,
    )
]

keys = st.text(alphabet=string.ascii_lowercase + "_", max_size=12)
"""Keys cannot spell a PHI marker, so a reason that names an unexpected key shows none."""
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(PHI_MARKERS),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A well-formed record with one (nested) field replaced by arbitrary JSON, or removed."""
    document = json.loads(json.dumps(draw(st.sampled_from(WELL_FORMED))))
    holder = document
    while True:
        key = draw(st.sampled_from(sorted(holder)))
        if isinstance(holder[key], dict) and holder[key] and draw(st.booleans()):
            holder = holder[key]
            continue
        if draw(st.booleans()):
            del holder[key]
        else:
            holder[key] = draw(json_values)
        return document


records = st.one_of(json_values, mutated(), st.dictionaries(keys, json_values))


def refused_or_valid(validate: Any, record: Any) -> None:
    try:
        validate(record)
    except ValidationError as error:
        reason = safe_reason(error)
        assert reason.startswith(("invalid event: ", "malformed JSON: "))
        assert not any(marker in reason for marker in PHI_MARKERS), reason


@settings(max_examples=300)
@given(consumer=st.sampled_from(sorted(CONSUMED_TYPES)), record=records)
def test_any_json_record_validates_or_is_refused_with_a_validation_error(
    consumer: str, record: Any
) -> None:
    refused_or_valid(CONSUMED_TYPES[consumer].validate_python, record)


@settings(max_examples=200)
@given(
    consumer=st.sampled_from(sorted(CONSUMED_TYPES)),
    raw=st.binary(max_size=300) | records.map(lambda record: json.dumps(record).encode()),
)
def test_any_bytes_validate_or_are_refused_with_a_validation_error(
    consumer: str, raw: bytes
) -> None:
    refused_or_valid(CONSUMED_TYPES[consumer].validate_json, raw)


def test_well_formed_records_validate() -> None:
    """The mutations start from records their consumers accept."""
    ingress, *events = WELL_FORMED
    CONSUMED_TYPES["renewal request (ingress)"].validate_python(ingress)
    for event in events:
        CONSUMED_TYPES["journey event (journey)"].validate_python(event)
