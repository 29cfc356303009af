"""The journey rules: a renewal's status, failing tool and awaited step from its steps, in any order;
which step each event records and whose it is (a dead letter: the refusing consumer's, never the
journey ledger's own bookkeeping)."""

import base64
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from schemas import topics
from schemas.events import (
    CareTeamsResolved,
    CareTeamUnavailable,
    DeadLetter,
    DraftCreated,
    DraftDeleted,
    MessageSendFailed,
    MessageSent,
    RenewalRefused,
    RenewalRequested,
)
from schemas.records import Prescription
from schemas.vocabulary import Category, Ehr, PickerKind, Tool, UnavailableReason
from services.journey.domain import (
    FAILED,
    Failure,
    JourneyEvent,
    JourneyState,
    Status,
    Step,
    StepRecord,
    Waiting,
    journey,
    observed_step,
    outcome_of,
    since_named,
    stalled,
    statuses_named,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MEDS, SM = Tool.MEDS, Tool.SM


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


REQUESTED = StepRecord(Step.REQUESTED, MEDS, at(1))
RESOLVED = StepRecord(Step.CARE_TEAM_RESOLVED, SM, at(2))
UNAVAILABLE = StepRecord(Step.CARE_TEAM_UNAVAILABLE, SM, at(2), error_code="no_associations")
DRAFTED = StepRecord(Step.DRAFT_CREATED, SM, at(3))
EDITED = StepRecord(Step.DRAFT_UPDATED, SM, at(4))
SEND_FAILED = StepRecord(Step.MESSAGE_SEND_FAILED, SM, at(5), error_code="SM98", retryable=True)
SEND_REFUSED = StepRecord(Step.MESSAGE_SEND_FAILED, SM, at(5), error_code="SM119", retryable=False)
SENT = StepRecord(Step.MESSAGE_SENT, SM, at(6))
DELETED = StepRecord(Step.DRAFT_DELETED, SM, at(7))
REFUSED = StepRecord(Step.REFUSED, MEDS, at(0), error_code="non_va")


def letter(topic: str, tool: Tool = SM, seconds: int = 8) -> StepRecord:
    return StepRecord(
        Step.DEAD_LETTERED, tool, at(seconds), error_code="ValidationError", source_topic=topic
    )


JOURNEYS: list[tuple[str, list[StepRecord], JourneyState]] = [
    ("no step places it yet", [], JourneyState(Status.UNKNOWN, None, closed=False)),
    ("requested", [REQUESTED], JourneyState(Status.REQUESTED, None, closed=False)),
    (
        "care team resolved",
        [REQUESTED, RESOLVED],
        JourneyState(Status.CARE_TEAM_RESOLVED, None, closed=False),
    ),
    ("drafted", [REQUESTED, RESOLVED, DRAFTED], JourneyState(Status.DRAFTED, None, False)),
    (
        "edited",
        [REQUESTED, RESOLVED, DRAFTED, EDITED],
        JourneyState(Status.DRAFTED, None, False),
    ),
    (
        "draft arrived before the care team and the request",
        [DRAFTED, RESOLVED, REQUESTED],
        JourneyState(Status.DRAFTED, None, closed=False),
    ),
    (
        "every step twice",
        [REQUESTED, REQUESTED, RESOLVED, RESOLVED, DRAFTED, DRAFTED],
        JourneyState(Status.DRAFTED, None, closed=False),
    ),
    (
        "no care team",
        [REQUESTED, UNAVAILABLE],
        JourneyState(
            Status.CARE_TEAM_UNAVAILABLE,
            Failure(SM, Step.CARE_TEAM_UNAVAILABLE, "no_associations"),
            closed=True,
        ),
    ),
    (
        "send failed, may be retried",
        [REQUESTED, RESOLVED, DRAFTED, SEND_FAILED],
        JourneyState(
            Status.SEND_FAILED, Failure(SM, Step.MESSAGE_SEND_FAILED, "SM98"), closed=False
        ),
    ),
    (
        "send failed for good: the draft stays, it may be sent again",
        [REQUESTED, RESOLVED, DRAFTED, SEND_REFUSED],
        JourneyState(
            Status.SEND_FAILED, Failure(SM, Step.MESSAGE_SEND_FAILED, "SM119"), closed=False
        ),
    ),
    (
        "sent after a failed try",
        [REQUESTED, RESOLVED, DRAFTED, SEND_FAILED, SENT],
        JourneyState(Status.SENT, None, closed=True),
    ),
    (
        "the draft's deletion after its send",
        [REQUESTED, RESOLVED, DRAFTED, DELETED, SENT],
        JourneyState(Status.SENT, None, closed=True),
    ),
    (
        "draft deleted by the Veteran",
        [REQUESTED, RESOLVED, DRAFTED, DELETED],
        JourneyState(Status.DRAFT_DELETED, None, closed=True),
    ),
    (
        "refused by meds",
        [REFUSED],
        JourneyState(Status.REFUSED, Failure(MEDS, Step.REFUSED, "non_va"), closed=True),
    ),
    (
        "the request was dead-lettered by the care-team consumer",
        [REQUESTED, letter(topics.RENEWAL_REQUESTED)],
        JourneyState(
            Status.DEAD_LETTERED,
            Failure(SM, Step.DEAD_LETTERED, "ValidationError"),
            closed=True,
        ),
    ),
    (
        "a dead letter of a step already passed",
        [REQUESTED, RESOLVED, letter(topics.RENEWAL_REQUESTED)],
        JourneyState(Status.CARE_TEAM_RESOLVED, None, closed=False),
    ),
    (
        "a dead letter no journey step waits for",
        [REQUESTED, RESOLVED, letter(topics.DRAFTS, tool=MEDS)],
        JourneyState(Status.CARE_TEAM_RESOLVED, None, closed=False),
    ),
]


@pytest.mark.parametrize(
    ("steps", "expected"), [row[1:] for row in JOURNEYS], ids=[row[0] for row in JOURNEYS]
)
def test_journey(steps: list[StepRecord], expected: JourneyState) -> None:
    assert journey(steps) == expected


STALLS: list[tuple[Status, int, Waiting | None]] = [
    (Status.UNKNOWN, 86_400, None),
    (Status.REQUESTED, 301, Waiting(Step.CARE_TEAM_RESOLVED, SM)),
    (Status.CARE_TEAM_RESOLVED, 301, Waiting(Step.DRAFT_CREATED, SM)),
    (Status.REQUESTED, 300, None),
    (Status.DRAFTED, 86_400 * 30, None),
    (Status.SEND_FAILED, 86_400, None),
    (Status.SENT, 86_400, None),
    (Status.CARE_TEAM_UNAVAILABLE, 86_400, None),
]


@pytest.mark.parametrize(("status", "waited", "waiting"), STALLS)
def test_only_automatic_steps_stall(status: Status, waited: int, waiting: Waiting | None) -> None:
    """A step no person takes is stalled after the timeout; one waiting on the Veteran never is."""
    assert stalled(status, T0, at(waited), timedelta(seconds=300)) == waiting


RENEWAL = uuid4()
PRESCRIPTION = Prescription(prescriptionId="22045678")
DRAFT = {
    "renewal_id": RENEWAL,
    "draft_id": uuid4(),
    "veteran_id": "1012845331V153043",
    "ehr": Ehr.VISTA,
    "category": Category.MEDICATIONS,
    "recipient_id": 1013155,
}


def dead_letter(
    key: bytes | None,
    tool: Tool = SM,
    service: str = "careteam",
    group: str = "rxsm-careteam",
    topic: str = topics.RENEWAL_REQUESTED,
) -> DeadLetter:
    return DeadLetter(
        tool=tool,
        service=service,
        consumer_group=group,
        topic=topic,
        partition=0,
        offset=7,
        key=base64.b64encode(key).decode() if key is not None else None,
        value="",
        error_type="ValidationError",
        reason="invalid event: prescription: missing",
        attempts=1,
    )


OBSERVED: list[tuple[str, JourneyEvent, tuple[Step, Tool, str | None]]] = [
    (
        "the renewal's request, once meds' event is on Kafka",
        RenewalRequested(
            renewal_id=RENEWAL, veteran_id="v", ehr=Ehr.VISTA, prescription=PRESCRIPTION
        ),
        (Step.REQUESTED, MEDS, None),
    ),
    (
        "the request refused by meds",
        RenewalRefused(
            renewal_id=RENEWAL, veteran_id="v", ehr=Ehr.VISTA, code="on_hold", source="kafka"
        ),
        (Step.REFUSED, MEDS, "on_hold"),
    ),
    (
        "care teams resolved",
        CareTeamsResolved(
            renewal_id=RENEWAL,
            veteran_id="v",
            ehr=Ehr.VISTA,
            prescription=PRESCRIPTION,
            care_systems=[],
            suggested_team_id=None,
            picker=PickerKind.AUTO,
        ),
        (Step.CARE_TEAM_RESOLVED, SM, None),
    ),
    (
        "no care team",
        CareTeamUnavailable(
            renewal_id=RENEWAL,
            veteran_id="v",
            ehr=Ehr.VISTA,
            reason=UnavailableReason.ALL_BLOCKED,
        ),
        (Step.CARE_TEAM_UNAVAILABLE, SM, "all_blocked"),
    ),
    ("draft created", DraftCreated(**DRAFT), (Step.DRAFT_CREATED, SM, None)),
    ("draft deleted", DraftDeleted(**DRAFT), (Step.DRAFT_DELETED, SM, None)),
    (
        "message sent",
        MessageSent(
            renewal_id=RENEWAL,
            message_id="m1",
            draft_id=uuid4(),
            veteran_id="v",
            recipient_id=1,
            station_number="442",
            ehr=Ehr.VISTA,
            category=Category.MEDICATIONS,
        ),
        (Step.MESSAGE_SENT, SM, None),
    ),
    (
        "send failed",
        MessageSendFailed(
            renewal_id=RENEWAL,
            draft_id=uuid4(),
            veteran_id="v",
            recipient_id=1,
            ehr=Ehr.ORACLE_HEALTH,
            error_code="SM98",
            retryable=True,
        ),
        (Step.MESSAGE_SEND_FAILED, SM, "SM98"),
    ),
    (
        "a dead letter keyed by the renewal",
        dead_letter(str(RENEWAL).encode()),
        (Step.DEAD_LETTERED, SM, "ValidationError"),
    ),
]


@pytest.mark.parametrize(
    ("event", "expected"), [row[1:] for row in OBSERVED], ids=[row[0] for row in OBSERVED]
)
def test_each_event_is_a_step_of_its_renewal(
    event: JourneyEvent, expected: tuple[Step, Tool, str | None]
) -> None:
    observed = observed_step(event)
    assert observed is not None
    assert observed.renewal_id == RENEWAL
    assert observed.event_id == event.event_id
    assert (observed.record.step, observed.record.tool, observed.record.error_code) == expected
    assert observed.record.at == event.occurred_at


@pytest.mark.parametrize(
    "event",
    [
        DraftCreated(**{**DRAFT, "renewal_id": None}),
        dead_letter(b"junk"),
        dead_letter(None),
    ],
    ids=["a general message's draft", "a dead letter keyed by something else", "unkeyed letter"],
)
def test_events_about_no_renewal_are_not_steps(event: JourneyEvent) -> None:
    assert observed_step(event) is None


def test_the_request_and_its_refusal_open_the_renewal_with_what_meds_decided() -> None:
    requested = RenewalRequested(
        renewal_id=RENEWAL,
        veteran_id="v",
        ehr=Ehr.ORACLE_HEALTH,
        cohort="new",
        prescription=PRESCRIPTION,
        source="http",
        idempotency_key="k-1",
    )
    refused = RenewalRefused(
        renewal_id=RENEWAL, veteran_id="v", ehr=Ehr.VISTA, code="non_va", source="kafka"
    )
    observed = [observed_step(requested), observed_step(refused)]
    openings = [o.opening for o in observed if o is not None and o.opening is not None]
    assert [(o.ehr, o.source, o.idempotency_key) for o in openings] == [
        ("oracle_health", "http", "k-1"),
        ("vista", "kafka", None),
    ]
    assert [o.requested_at for o in openings] == [requested.occurred_at, refused.occurred_at]
    draft = observed_step(DraftCreated(**DRAFT))
    assert draft is not None and draft.opening is None, "an SM step opens no renewal"


def test_a_dead_letter_is_the_refusing_consumers_and_names_whose_topic_it_was_on() -> None:
    """A care-teams record (SM's topic) refused by the messaging consumer (SM), and a request
    (meds' topic) refused by the care-team consumer (SM): each is a failure of the tool whose
    consumer refused it, with the topic's owner and the consumer group beside it."""
    on_sm_topic = observed_step(
        dead_letter(
            str(RENEWAL).encode(),
            service="messaging",
            group="rxsm-messaging",
            topic=topics.CARE_TEAMS,
        )
    )
    on_meds_topic = observed_step(dead_letter(str(RENEWAL).encode()))
    assert on_sm_topic is not None and on_meds_topic is not None
    assert (
        on_sm_topic.record.tool,
        on_sm_topic.record.topic_owner,
        on_sm_topic.record.refused_by,
    ) == (SM, SM, "rxsm-messaging")
    assert (
        on_meds_topic.record.tool,
        on_meds_topic.record.topic_owner,
        on_meds_topic.record.refused_by,
    ) == (SM, MEDS, "rxsm-careteam")
    assert on_sm_topic.record.detail == "messaging: invalid event: prescription: missing"


@pytest.mark.parametrize(
    ("tool", "service", "group"),
    [
        (Tool.JOURNEY, "journey", "rxsm-journey"),
        (MEDS, "renewal", "rxsm-renewal-ledger"),
    ],
    ids=["the journey service's own refusal", "the ledger's when it ran in the renewal service"],
)
def test_the_ledgers_own_refusal_of_a_record_is_bookkeeping_never_a_step(
    tool: Tool, service: str, group: str
) -> None:
    """The same poison on SM's care-teams topic, refused by the journey ledger as well as by SM: only
    SM's refusal is a step of the renewal's journey, so an SRE is sent to SM alone. The letters the
    ledger wrote while it ran inside the renewal service (stamped meds) stay on the dead-letter topic
    for a month: they are bookkeeping too."""
    own = dead_letter(
        str(RENEWAL).encode(), tool=tool, service=service, group=group, topic=topics.CARE_TEAMS
    )
    assert observed_step(own) is None


@pytest.mark.parametrize("retryable", [True, False])
def test_a_send_failure_keeps_whether_it_may_be_retried(retryable: bool) -> None:
    failed = MessageSendFailed(
        renewal_id=RENEWAL,
        draft_id=uuid4(),
        veteran_id="v",
        recipient_id=1,
        ehr=Ehr.VISTA,
        error_code="SM119",
        retryable=retryable,
    )
    observed = observed_step(failed)
    assert observed is not None
    assert observed.record.retryable is retryable


@pytest.mark.parametrize(
    ("step", "outcome"),
    [
        (Step.REQUESTED, "success"),
        (Step.CARE_TEAM_RESOLVED, "success"),
        (Step.DRAFT_CREATED, "success"),
        (Step.DRAFT_DELETED, "success"),
        (Step.MESSAGE_SENT, "success"),
        (Step.REFUSED, "failure"),
        (Step.CARE_TEAM_UNAVAILABLE, "failure"),
        (Step.MESSAGE_SEND_FAILED, "failure"),
        (Step.DEAD_LETTERED, "failure"),
    ],
)
def test_a_step_that_fails_the_renewal_is_a_failure_of_its_tool(step: Step, outcome: str) -> None:
    assert outcome_of(step) == outcome


def test_failed_names_every_status_a_tool_failed_the_renewal_in() -> None:
    failed = {
        Status.REFUSED,
        Status.CARE_TEAM_UNAVAILABLE,
        Status.SEND_FAILED,
        Status.DEAD_LETTERED,
    }
    assert statuses_named("failed") == failed == FAILED
    assert statuses_named("failed,stalled") == failed | {Status.STALLED}
    assert statuses_named("sent, drafted") == {Status.SENT, Status.DRAFTED}
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        statuses_named("failed,lost")
    with pytest.raises(ValueError, match="unknown status 'unknown'"):
        statuses_named("unknown")


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("90s", T0 - timedelta(seconds=90)),
        ("30m", T0 - timedelta(minutes=30)),
        ("1h", T0 - timedelta(hours=1)),
        ("7d", T0 - timedelta(days=7)),
        ("2w", T0 - timedelta(weeks=2)),
        ("2026-05-31T08:00:00Z", datetime(2026, 5, 31, 8, tzinfo=UTC)),
        ("2026-05-31T08:00:00-05:00", datetime(2026, 5, 31, 13, tzinfo=UTC)),
        ("2026-05-31T08:00:00", datetime(2026, 5, 31, 8, tzinfo=UTC)),
        ("2026-05-31", datetime(2026, 5, 31, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_back_from_now_or_a_time(since: str, expected: datetime) -> None:
    assert since_named(since, T0) == expected


@pytest.mark.parametrize("since", ["1 hour", "-1h", "1y", "yesterday", ""])
def test_an_unreadable_since_is_refused(since: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        since_named(since, T0)
