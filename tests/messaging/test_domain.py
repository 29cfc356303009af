"""Draft rules, recipient choice, SM error codes and the Oracle Health polling bound."""

from dataclasses import replace

import pytest

from schemas.events import Platform, TeamSelection
from schemas.records import CareTeam
from schemas.vocabulary import Category, Ehr
from services.messaging import domain
from services.messaging.domain import (
    DeliveryStatus,
    DraftContent,
    DraftEdit,
    PollSchedule,
    SendState,
    SmError,
)

PRIMARY = CareTeam(
    triageTeamId=1013155,
    name="CHY PCMM RED TEAM 1",
    displayName="Primary care - Red team 1",
    stationNumber="442",
    careSystemName="VA Cheyenne health care",
    ehr=Ehr.VISTA,
)
OH_PRIMARY = CareTeam(
    triageTeamId=3075701,
    name="COL Primary Care",
    displayName="Primary care",
    stationNumber="757",
    careSystemName="VA Central Ohio health care",
    ehr=Ehr.ORACLE_HEALTH,
)
BLOCKED_ID = 1554003
OFFERED = [PRIMARY, OH_PRIMARY]

RENEWAL = DraftContent(
    renewal=True,
    category=Category.MEDICATIONS,
    subject="Renewal Needed",
    body="Medication name, strength, and form: LISINOPRIL 10MG TAB",
    recipient_id=PRIMARY.triageTeamId,
    station_number="442",
    ehr=Ehr.VISTA,
    team_selection=TeamSelection.SUGGESTED,
)
GENERAL = replace(RENEWAL, renewal=False, category=Category.OTHER, subject="Question")


@pytest.mark.parametrize(
    ("draft", "edit", "code"),
    [
        (RENEWAL, DraftEdit(subject="x" * 51), "subject_too_long"),
        (RENEWAL, DraftEdit(subject="   "), "subject_required"),
        (RENEWAL, DraftEdit(body=""), "body_required"),
        (RENEWAL, DraftEdit(body=" \n\t "), "body_required"),
        (RENEWAL, DraftEdit(category=Category.OTHER), "category_locked"),
        (RENEWAL, DraftEdit(recipient_id=OH_PRIMARY.triageTeamId), "team_selection_required"),
        (RENEWAL, DraftEdit(recipient_id=999, team_selection=TeamSelection.RECENT), "SM119"),
        (RENEWAL, DraftEdit(recipient_id=BLOCKED_ID, team_selection=TeamSelection.RECENT), "SM151"),
        (GENERAL, DraftEdit(recipient_id=999, team_selection=TeamSelection.RECENT), "SM119"),
    ],
    ids=[
        "subject of 51",
        "blank subject",
        "empty body",
        "blank body",
        "renewal category",
        "team without how",
        "unknown team",
        "blocked team",
        "unknown team, general",
    ],
)
def test_an_edit_the_veteran_must_fix_is_refused_with_its_code(
    draft: DraftContent, edit: DraftEdit, code: str
) -> None:
    with pytest.raises(SmError) as refused:
        domain.revise(draft, edit, OFFERED, {BLOCKED_ID})
    assert refused.value.code == code
    assert refused.value.status == 422
    assert refused.value.message


@pytest.mark.parametrize(
    ("draft", "edit", "changed"),
    [
        (RENEWAL, DraftEdit(subject="x" * 50), ["subject"]),
        (RENEWAL, DraftEdit(subject="Renewal Needed", body=RENEWAL.body), []),
        (RENEWAL, DraftEdit(category=Category.MEDICATIONS, body="Please renew"), ["body"]),
        (
            RENEWAL,
            DraftEdit(recipient_id=OH_PRIMARY.triageTeamId, team_selection=TeamSelection.RECENT),
            ["recipient_id"],
        ),
        (GENERAL, DraftEdit(category=Category.MEDICATIONS), ["category"]),
        (RENEWAL, DraftEdit(platform=Platform.MOBILE), []),
    ],
    ids=["subject of 50", "same words", "locked category kept", "new team", "category", "platform"],
)
def test_an_edit_changes_what_it_names(
    draft: DraftContent, edit: DraftEdit, changed: list[str]
) -> None:
    revised, names = domain.revise(draft, edit, OFFERED, {BLOCKED_ID})
    assert names == changed
    for field in ("subject", "body", "category", "recipient_id", "platform"):
        wanted = getattr(edit, field)
        assert getattr(revised, field) == (getattr(draft, field) if wanted is None else wanted)


def test_a_new_care_team_brings_its_station_ehr_and_how_it_was_chosen() -> None:
    edit = DraftEdit(recipient_id=OH_PRIMARY.triageTeamId, team_selection=TeamSelection.RECENT)
    revised, _ = domain.revise(RENEWAL, edit, OFFERED, set())
    assert (revised.station_number, revised.ehr, revised.team_selection) == (
        "757",
        Ehr.ORACLE_HEALTH,
        TeamSelection.RECENT,
    )


@pytest.mark.parametrize(
    ("draft", "code"),
    [
        (replace(RENEWAL, recipient_id=None, station_number=None), "recipient_required"),
        (replace(RENEWAL, body="  "), "body_required"),
        (replace(GENERAL, subject=""), "subject_required"),
    ],
    ids=["no care team", "blank body", "no subject"],
)
def test_a_draft_is_sent_only_when_complete(draft: DraftContent, code: str) -> None:
    with pytest.raises(SmError) as refused:
        domain.check_sendable(draft)
    assert refused.value.code == code


def test_a_general_message_takes_any_category_and_the_picked_team() -> None:
    draft = domain.new_message(
        Category.APPOINTMENTS,
        "Appointment",
        "Can I move it?",
        OH_PRIMARY,
        TeamSelection.CARE_SYSTEM_PICKER,
        Platform.WEB,
    )
    assert not draft.renewal
    assert (draft.category, draft.recipient_id, draft.ehr) == (
        Category.APPOINTMENTS,
        3075701,
        Ehr.ORACLE_HEALTH,
    )


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("SM119", 422, False),
        ("SM129", 422, False),
        ("SM151", 422, False),
        ("SM98", 502, False),
        ("SM901", 503, True),
        ("SM903", 503, True),
        ("SM904", 404, False),
        ("SM99", 502, True),
        ("SM12345", 502, True),
    ],
)
def test_sm_error_codes_map_to_http_status_and_retryability(
    code: str, status: int, retryable: bool
) -> None:
    error = domain.sm_error(code)
    assert (error.status, error.retryable) == (status, retryable)
    assert error.code == (code if code in domain.SM_ERRORS else "SM99")


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (DeliveryStatus.SENT, None),
        (DeliveryStatus.PENDING, None),
        (DeliveryStatus.FAILED, "SM98"),
        (DeliveryStatus.INVALID, "SM98"),
    ],
)
def test_an_oracle_health_failed_or_invalid_status_is_sm98(
    status: DeliveryStatus, failure: str | None
) -> None:
    error = domain.delivery_failure(status)
    assert (error.code if error else None) == failure


@pytest.mark.parametrize(
    ("error", "before", "after"),
    [
        ("SM901", SendState.SUBMITTING, SendState.SUBMITTING),
        ("SM903", SendState.ACCEPTED, SendState.ACCEPTED),
        ("SM98", SendState.ACCEPTED, SendState.FAILED),
        ("SM151", SendState.SUBMITTING, SendState.FAILED),
    ],
)
def test_only_a_final_error_ends_a_send_attempt(
    error: str, before: SendState, after: SendState
) -> None:
    assert domain.state_after(domain.sm_error(error), before) is after


def test_polling_is_bounded_and_backs_off_to_a_cap() -> None:
    assert PollSchedule(attempts=6, first_delay=0.5, max_delay=4).delays() == (
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    )


@pytest.mark.parametrize(
    ("send", "editable"),
    [
        (None, True),
        (SendState.FAILED, True),
        (SendState.SUBMITTING, False),
        (SendState.ACCEPTED, False),
    ],
)
def test_a_draft_whose_send_is_unsettled_cannot_change(
    send: SendState | None, editable: bool
) -> None:
    if editable:
        domain.check_editable(send)
        return
    with pytest.raises(SmError) as refused:
        domain.check_editable(send)
    assert (refused.value.code, refused.value.status) == ("send_pending", 409)
