"""`rxsm report` answers the release plan's post-launch questions from hand-made events."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from rxsm.report import Reported, parse, summarize
from schemas.events import (
    CareTeamsResolved,
    CareTeamUnavailable,
    DeadLetter,
    MessageSendFailed,
    MessageSent,
    Platform,
    RenewalRequested,
    TeamSelection,
)
from schemas.records import Prescription
from schemas.vocabulary import Category, Cohort, Ehr, PickerKind, Tool, UnavailableReason

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)


def requested(cohort: Cohort = Cohort.BASE, at: datetime = NOW) -> RenewalRequested:
    return RenewalRequested(
        renewal_id=uuid4(),
        veteran_id="v-1",
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId="rx-1"),
        cohort=cohort,
        occurred_at=at,
    )


def resolved(cohort: Cohort = Cohort.BASE) -> CareTeamsResolved:
    return CareTeamsResolved(
        renewal_id=uuid4(),
        veteran_id="v-1",
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId="rx-1"),
        care_systems=[],
        suggested_team_id=None,
        picker=PickerKind.AUTO,
        cohort=cohort,
        occurred_at=NOW,
    )


def unavailable(cohort: Cohort = Cohort.BASE) -> CareTeamUnavailable:
    return CareTeamUnavailable(
        renewal_id=uuid4(),
        veteran_id="v-1",
        ehr=Ehr.ORACLE_HEALTH,
        reason=UnavailableReason.NO_ASSOCIATIONS,
        cohort=cohort,
        occurred_at=NOW,
    )


def sent(
    veteran: str,
    ehr: Ehr = Ehr.VISTA,
    platform: Platform | None = Platform.WEB,
    selection: TeamSelection | None = TeamSelection.SUGGESTED,
    cohort: Cohort | None = Cohort.BASE,
    at: datetime = NOW,
) -> MessageSent:
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
        cohort=cohort,
        occurred_at=at,
    )


def send_failed(code: str, cohort: Cohort = Cohort.NEW) -> MessageSendFailed:
    return MessageSendFailed(
        renewal_id=uuid4(),
        draft_id=uuid4(),
        veteran_id="v-9",
        recipient_id=3075701,
        ehr=Ehr.ORACLE_HEALTH,
        error_code=code,
        retryable=False,
        cohort=cohort,
        occurred_at=NOW,
    )


def dead_letter() -> DeadLetter:
    return DeadLetter(
        tool=Tool.SM,
        service="careteam",
        consumer_group="rxsm-careteam",
        topic="rxsm.meds.renewal-requested.v1",
        partition=0,
        offset=7,
        key=None,
        value="",
        error_type="ValidationError",
        reason="invalid event: veteran_id: missing",
        attempts=1,
        occurred_at=NOW,
    )


def test_messages_sent_are_counted_per_platform_per_ehr_and_per_veteran() -> None:
    events: list[Reported] = [
        sent("v-1", Ehr.VISTA, Platform.WEB),
        sent("v-1", Ehr.VISTA, Platform.MOBILE),
        sent("v-2", Ehr.ORACLE_HEALTH, Platform.WEB),
        sent("v-3", Ehr.ORACLE_HEALTH, None),
    ]

    messages = summarize(events, SINCE, NOW).messages_sent

    assert messages.total == 4
    assert messages.by_platform == {"web": 2, "mobile": 1, "unknown": 1}
    assert messages.by_ehr == {"vista": 2, "oracle_health": 2}
    assert (messages.veterans, messages.per_veteran) == (3, 4 / 3)


def test_the_report_names_no_veteran() -> None:
    report = summarize([sent("1012845331V153043"), send_failed("SM98")], SINCE, NOW)

    assert "1012845331V153043" not in report.model_dump_json()
    assert "v-9" not in report.model_dump_json()


def test_shares_of_sent_messages_by_how_their_care_team_was_chosen() -> None:
    events: list[Reported] = [
        sent("v-1", selection=TeamSelection.RECENT),
        sent("v-2", selection=TeamSelection.RECENT),
        sent("v-3", selection=TeamSelection.RECENT),
        sent("v-4", selection=TeamSelection.CARE_SYSTEM_PICKER),
        sent("v-5", selection=TeamSelection.SUGGESTED),
        sent("v-6", selection=TeamSelection.SUGGESTED),
        sent("v-7", selection=None),
    ]

    chosen = summarize(events, SINCE, NOW).team_selection

    assert chosen.messages == 6, "a message that doesn't say how its team was chosen is left out"
    assert chosen.counts == {"suggested": 2, "recent": 3, "care_system_picker": 1}
    assert chosen.shares == {"suggested": 2 / 6, "recent": 3 / 6, "care_system_picker": 1 / 6}


def test_failed_sends_and_the_step_and_tool_of_every_failure() -> None:
    events: list[Reported] = [
        sent("v-1"),
        sent("v-2"),
        send_failed("SM98"),
        send_failed("SM98"),
        send_failed("SM119"),
        unavailable(),
        dead_letter(),
    ]

    report = summarize(events, SINCE, NOW)

    assert (report.sends.attempts, report.sends.failed, report.sends.failure_rate) == (5, 3, 3 / 5)
    assert report.sends.by_error_code == {"SM98": 2, "SM119": 1}
    failures = [(f.step, f.tool, f.error, f.count, f.share) for f in report.failures]
    assert failures == [
        ("message_send_failed", "sm", "SM98", 2, 2 / 5),
        ("care_team_unavailable", "sm", "no_associations", 1, 1 / 5),
        ("dead_lettered", "sm", "careteam: ValidationError", 1, 1 / 5),
        ("message_send_failed", "sm", "SM119", 1, 1 / 5),
    ]


def test_the_new_flow_against_the_base() -> None:
    events: list[Reported] = [
        requested(Cohort.NEW),
        requested(Cohort.NEW),
        requested(Cohort.BASE),
        resolved(Cohort.NEW),
        unavailable(Cohort.NEW),
        resolved(Cohort.BASE),
        sent("v-1", cohort=Cohort.NEW, selection=TeamSelection.CARE_SYSTEM_PICKER),
        send_failed("SM98", cohort=Cohort.NEW),
        sent("v-2", cohort=Cohort.BASE, selection=TeamSelection.RECENT),
        sent("v-3", cohort=None),
    ]

    cohorts = summarize(events, SINCE, NOW).cohorts

    assert set(cohorts) == {"new", "base", "unknown"}
    new, base = cohorts["new"], cohorts["base"]
    assert (new.renewals_requested, new.care_team_unavailable, new.unavailable_rate) == (2, 1, 0.5)
    assert (new.messages_sent, new.send_failures, new.send_failure_rate) == (1, 1, 0.5)
    assert new.team_selection.counts["care_system_picker"] == 1
    assert (base.renewals_requested, base.unavailable_rate, base.send_failure_rate) == (1, 0.0, 0.0)
    assert base.team_selection.shares["recent"] == 1.0
    assert cohorts["unknown"].messages_sent == 1


def test_only_events_in_the_window_count_and_each_counts_once() -> None:
    old = sent("v-1", at=SINCE - timedelta(seconds=1))
    recent = sent("v-2")
    events: list[Reported] = [old, recent, recent, requested(at=SINCE - timedelta(days=1))]

    report = summarize(events, SINCE, NOW)

    assert report.messages_sent.total == 1
    assert report.renewals_requested == 0


def test_an_empty_window_has_no_rates() -> None:
    report = summarize([], SINCE, NOW)

    assert report.messages_sent.per_veteran is None
    assert report.sends.failure_rate is None
    assert report.team_selection.shares == {}
    assert report.failures == [] and report.cohorts == {}


@pytest.mark.parametrize(
    "value",
    [
        {"event_type": "something.else", "renewal_id": None},
        {"event_type": "message.sent", "message_id": "m-1"},
        {"hello": "world"},
    ],
)
def test_records_that_are_not_reported_events_are_skipped(value: dict[str, object]) -> None:
    event = sent("v-1")

    parsed = parse([value, event.model_dump(mode="json"), dead_letter().model_dump(mode="json")])

    assert [found.event_type for found in parsed] == ["message.sent", "dead_letter"]
    assert parsed[0].event_id == event.event_id
