"""Poison records: what a broken or hostile producer can put on a topic the services consume.

Each is built from a well-formed record of the topic (about no renewal of ours, carrying PHI so a
reason that echoed the payload would show it), then broken one way.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from schemas import topics
from schemas.events import (
    CareTeamUnavailable,
    DeadLetter,
    DraftDeleted,
    MessageSendFailed,
    RenewalClosed,
    RenewalRefused,
    RenewalRequested,
)
from schemas.records import Prescription
from schemas.vocabulary import Category, Ehr, Tool, UnavailableReason
from tests.faults.flow import (
    INSTRUCTIONS,
    NO_TEAMS_VETERAN,
    PROVIDER_LAST_NAME,
    REASON_FOR_USE,
    renewal_requests,
)

HUGE = 900_000
"""Bytes of a huge record: most of what the broker accepts (message.max.bytes, about 1 MB)."""


def well_formed(topic: str) -> dict[str, Any]:
    """A valid record of ``topic``, about a renewal no service knows."""
    renewal_id = uuid4()
    prescription = Prescription(
        prescriptionId=f"poison-{uuid4()}",
        sig=INSTRUCTIONS,
        reason=REASON_FOR_USE,
        providerLastName=PROVIDER_LAST_NAME,
    )
    common: dict[str, Any] = {"renewal_id": renewal_id, "veteran_id": NO_TEAMS_VETERAN}
    event: Any
    if topic == topics.RENEWAL_REQUESTS:
        return renewal_requests(1)[0].body
    if topic == topics.RENEWAL_REQUESTED:
        event = RenewalRequested(**common, ehr=Ehr.VISTA, prescription=prescription)
    elif topic == topics.RENEWAL_REFUSED:
        event = RenewalRefused(**common, ehr=Ehr.VISTA, code="refillable", source="kafka")
    elif topic == topics.RENEWALS_CLOSED:
        event = RenewalClosed(renewal_id=renewal_id, status="sent")
    elif topic == topics.CARE_TEAMS:
        event = CareTeamUnavailable(
            **common, ehr=Ehr.VISTA, reason=UnavailableReason.NO_ASSOCIATIONS
        )
    elif topic == topics.DRAFTS:
        event = DraftDeleted(
            **common, draft_id=uuid4(), ehr=None, category=Category.OTHER, recipient_id=None
        )
    elif topic == topics.MESSAGES:
        event = MessageSendFailed(
            **common,
            draft_id=uuid4(),
            recipient_id=None,
            ehr=None,
            error_code="SM901",
            retryable=True,
        )
    elif topic == topics.DEAD_LETTER:
        event = DeadLetter(
            tool=Tool.SM,
            service="messaging",
            consumer_group="rxsm-messaging",
            topic=topics.CARE_TEAMS,
            partition=0,
            offset=0,
            key=None,
            value="",
            error_type="ValidationError",
            reason="invalid event: reason: missing",
            attempts=1,
        )
    else:
        raise ValueError(topic)
    document: dict[str, Any] = event.model_dump(mode="json")
    return document


REQUIRED = {
    topics.RENEWAL_REQUESTS: "prescription",
    topics.RENEWAL_REQUESTED: "ehr",
    topics.RENEWAL_REFUSED: "code",
    topics.RENEWALS_CLOSED: "status",
    topics.CARE_TEAMS: "reason",
    topics.DRAFTS: "draft_id",
    topics.MESSAGES: "error_code",
    topics.DEAD_LETTER: "reason",
}
"""A field each topic's records cannot do without."""


def _encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _malformed(document: dict[str, Any]) -> bytes:
    return _encoded(document)[:-9]


def _wrong_schema_version(document: dict[str, Any]) -> bytes:
    return _encoded({**document, "schema_version": 2})


def _unknown_event_type(document: dict[str, Any]) -> bytes:
    return _encoded({**document, "event_type": "renewal.cancelled"})


def _huge(document: dict[str, Any]) -> bytes:
    return _encoded({**document, "attachment": "A" * HUGE})


def _invalid_utf8(document: dict[str, Any]) -> bytes:
    return _encoded(document).replace(b"{", b'{"note": "\xc3\x28\xff", ', 1)


@dataclass(frozen=True)
class Poison:
    kind: str
    value: Callable[[str], bytes]
    """The record for a topic."""


def _missing(topic: str) -> bytes:
    document = well_formed(topic)
    del document[REQUIRED[topic]]
    return _encoded(document)


POISONS = (
    Poison("malformed JSON", lambda topic: _malformed(well_formed(topic))),
    Poison("wrong schema version", lambda topic: _wrong_schema_version(well_formed(topic))),
    Poison("missing fields", _missing),
    Poison("huge payload", lambda topic: _huge(well_formed(topic))),
    Poison("unknown event type", lambda topic: _unknown_event_type(well_formed(topic))),
    Poison("invalid UTF-8", lambda topic: _invalid_utf8(well_formed(topic))),
)
