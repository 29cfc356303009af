"""Every Kafka topic rxsm uses, in one place, and whose each one is (``OWNER``).

Events flow one way: renewal (meds) -> careteam (sm) -> messaging (sm). The journey service reads them
all, and tells meds when a renewal's journey has closed. Every record is keyed by the renewal id (or
the draft id for a general new message), so one journey keeps its order on one partition.
"""

from typing import Final

from schemas.vocabulary import Tool

RENEWAL_REQUESTS: Final = "rxsm.meds.renewal-requests.v1"
"""Ingress: the Medications app publishes a Veteran's renewal request here (same body as the HTTP API)."""

RENEWAL_REQUESTED: Final = "rxsm.meds.renewal-requested.v1"
"""A renewable prescription was accepted; owned by meds."""

RENEWAL_REFUSED: Final = "rxsm.meds.renewal-refused.v1"
"""A renewal request was refused at intake (not renewable, or the flow closed); owned by meds. Only
the journey service reads it."""

CARE_TEAMS: Final = "rxsm.sm.care-teams.v1"
"""Care teams resolved for a renewal, or no care team available; owned by sm."""

DRAFTS: Final = "rxsm.sm.drafts.v1"
"""Draft created, updated, deleted; owned by sm."""

MESSAGES: Final = "rxsm.sm.messages.v1"
"""Message sent or send failed: what SM consumers receive; owned by sm."""

RENEWALS_CLOSED: Final = "rxsm.journey.renewals-closed.v1"
"""A renewal's journey closed (sent, draft deleted, no care team, dead-lettered); owned by the journey
service. Meds reads it to let the prescription be requested anew."""

DEAD_LETTER: Final = "rxsm.dead-letter.v1"
"""Records no consumer could process, with the reason and the original bytes."""

ALL: Final = (
    RENEWAL_REQUESTS,
    RENEWAL_REQUESTED,
    RENEWAL_REFUSED,
    CARE_TEAMS,
    DRAFTS,
    MESSAGES,
    RENEWALS_CLOSED,
    DEAD_LETTER,
)

OWNER: Final = {
    RENEWAL_REQUESTS: Tool.MEDS,
    RENEWAL_REQUESTED: Tool.MEDS,
    RENEWAL_REFUSED: Tool.MEDS,
    CARE_TEAMS: Tool.SM,
    DRAFTS: Tool.SM,
    MESSAGES: Tool.SM,
    RENEWALS_CLOSED: Tool.JOURNEY,
}
"""Whose each topic is: the tool whose service publishes it. The dead-letter topic is everyone's."""


def owner_of(topic: str) -> Tool | None:
    """The tool that owns ``topic`` (a retry topic is its topic's), None for the dead-letter topic
    and topics rxsm does not know."""
    return OWNER.get(topic.split(".retry.", 1)[0])


TOPIC_OF_EVENT: Final = {
    "renewal.requested": RENEWAL_REQUESTED,
    "renewal.refused": RENEWAL_REFUSED,
    "careteams.resolved": CARE_TEAMS,
    "careteams.unavailable": CARE_TEAMS,
    "draft.created": DRAFTS,
    "draft.updated": DRAFTS,
    "draft.deleted": DRAFTS,
    "message.sent": MESSAGES,
    "message.send_failed": MESSAGES,
    "renewal.closed": RENEWALS_CLOSED,
    "dead_letter": DEAD_LETTER,
}
"""Where each event type is published."""


DAY_MS: Final = 24 * 60 * 60 * 1000

RETENTION_DAYS: Final = {
    RENEWAL_REQUESTS: 7,
    RENEWAL_REQUESTED: 7,
    RENEWAL_REFUSED: 7,
    CARE_TEAMS: 7,
    DRAFTS: 7,
    MESSAGES: 7,
    RENEWALS_CLOSED: 7,
    DEAD_LETTER: 30,
}
"""How long Kafka keeps each topic's records. Dead letters the longest: an SRE may replay one weeks
later. A consumer can be redelivered a record for at most its topic's retention, which is the floor of
how long a service must remember the ids it processed (its inbox)."""

RETRY_RETENTION_DAYS: Final = 7
"""Retry topics: a parked record is due within minutes; a week covers a long outage."""


def retention_days(topic: str) -> int:
    """How long Kafka keeps ``topic``'s records (retry topics included)."""
    return RETENTION_DAYS.get(topic, RETRY_RETENTION_DAYS)


def retry_topic(topic: str, consumer_group: str) -> str:
    """Where ``consumer_group`` parks a record of ``topic`` to try again later (only it reads it)."""
    return f"{topic}.retry.{consumer_group}"
